"""python -m shared.runtime.probe [PATH]: asks this container's own process for /readyz (or PATH) and exits 0 on
a 200, 1 otherwise. For health checks where the image has no curl (Docker's HEALTHCHECK, compose)."""

import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from shared.runtime.settings import Settings

PROBED = ("/healthz", "/readyz")


def probe(path: str = "/readyz", *, timeout_s: float = 2.0) -> bool:
    """Whether the process listening on CIVIQUE_PORT answers `path` with a 200 within `timeout_s`."""
    url = f"http://127.0.0.1:{Settings().port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    path = args[0] if args else "/readyz"
    if path not in PROBED:
        print(f"chemin inconnu : {path} (choisir parmi {', '.join(PROBED)})", file=sys.stderr)
        return 2
    return 0 if probe(path) else 1


if __name__ == "__main__":
    sys.exit(main())
