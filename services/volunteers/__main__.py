"""python -m services.volunteers [serve | replay [--group G]]: the volunteers service alone (HTTP, consumers,
relay; CIVIQUE_* settings), or its read models rebuilt from the events while it keeps serving (ADR 0011)."""

from services.volunteers import service
from shared.runtime.cli import service_main

if __name__ == "__main__":
    service_main([service], title="Civique — volunteers", prog="python -m services.volunteers")
