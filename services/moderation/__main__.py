"""python -m services.moderation [serve | replay [--group G]]: the moderation service alone (HTTP, consumers,
relay; CIVIQUE_* settings), or its read models rebuilt from the events while it keeps serving (ADR 0011)."""

from services.moderation import service
from shared.runtime.cli import service_main

if __name__ == "__main__":
    service_main([service], title="Civique — moderation", prog="python -m services.moderation")
