"""python -m shared.events export|check [DIR]: the catalog's JSON Schemas and AsyncAPI document."""

import argparse
import sys
from pathlib import Path

from shared.events import catalog
from shared.events.schemas import check, export

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "docs" / "events"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.events")
    parser.add_argument("command", choices=["export", "check"])
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    problems = export(catalog, args.directory) if args.command == "export" else check(catalog, args.directory)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{args.command}: {len(list(catalog))} events in {args.directory}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
