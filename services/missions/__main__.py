"""python -m services.missions [serve | replay [--group G]]: the missions service alone (HTTP, consumers,
relay; CIVIQUE_* settings), or its read models rebuilt from the events while it keeps serving (ADR 0011)."""

from services.missions import service
from shared.runtime.cli import service_main

if __name__ == "__main__":
    service_main([service], title="Civique — missions", prog="python -m services.missions")
