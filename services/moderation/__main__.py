"""python -m services.moderation: the moderation service alone (HTTP + consumers + relay)."""

from services.moderation import service
from shared.runtime.app import serve

if __name__ == "__main__":
    serve([service], title="Civique — moderation", prog="python -m services.moderation")
