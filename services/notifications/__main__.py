"""python -m services.notifications: the notifications service alone (CIVIQUE_* settings)."""

from services.notifications import service
from shared.runtime.app import serve

if __name__ == "__main__":
    serve([service], title="Civique — notifications", prog="python -m services.notifications")
