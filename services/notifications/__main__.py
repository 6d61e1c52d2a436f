"""python -m services.notifications [serve | replay [--group G]]: the notifications service alone (HTTP, consumers,
relay; CIVIQUE_* settings), or its read models rebuilt from the events while it keeps serving (ADR 0011)."""

from services.notifications import service
from shared.runtime.cli import service_main

if __name__ == "__main__":
    service_main([service], title="Civique — notifications", prog="python -m services.notifications")
