"""python -m services: the whole platform in one process (embedded backend by default)."""

import uvicorn

from shared.runtime.app import create_app
from shared.runtime.settings import Settings

SERVICES: list = []  # each service issue plugs its `service` object in here


def main() -> None:
    settings = Settings()
    app = create_app(settings, SERVICES, title="Civique")
    print(f"Civique ({settings.backend}) on http://{settings.host}:{settings.port}", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
