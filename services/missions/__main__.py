"""python -m services.missions: the missions service alone (HTTP + consumers + relay)."""

from services.missions import service
from shared.runtime.app import serve

if __name__ == "__main__":
    serve([service], title="Civique — missions", prog="python -m services.missions")
