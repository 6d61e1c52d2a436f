"""python -m services.volunteers: the volunteers service alone (HTTP + consumers + relay)."""

from services.volunteers import service
from shared.runtime.app import serve

if __name__ == "__main__":
    serve([service], title="Civique — volunteers", prog="python -m services.volunteers")
