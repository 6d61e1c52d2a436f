"""python -m services.web: the website alone, calling the gateway at CIVIQUE_GATEWAY_URL."""

from services.web import service
from shared.runtime.app import serve

if __name__ == "__main__":
    serve([service], title="Civique — site", prog="python -m services.web")
