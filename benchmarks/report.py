"""docs/benchmarks.md: each benchmark script rewrites its own section and leaves the others."""

from pathlib import Path

REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nFigures from the latest runs; each script rewrites its own section.\n\n"


def write_section(section: str) -> None:
    """Replace the section whose "## " title starts like `section`'s (or append it)."""
    title = section.split("\n", 1)[0].split(":", 1)[0]
    previous = REPORT.read_text() if REPORT.exists() else HEADER
    start = previous.find(title)
    if start >= 0:
        end = previous.find("\n## ", start + 1)
        previous = previous[:start] + previous[end + 1 :] if end >= 0 else previous[:start]
    REPORT.write_text(previous.rstrip() + "\n\n" + section)
