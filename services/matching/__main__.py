"""python -m services.matching: the matching service alone (CIVIQUE_* settings)."""

from services.matching import service
from shared.runtime.app import serve

if __name__ == "__main__":
    serve([service], title="Civique — matching", prog="python -m services.matching")
