"""Paste the latest result tables into ``benchmarks/README.md``.

Each benchmark writes ``results/<name>.md`` (its command line, machine and tables). The README
holds, for each name, a block between ``<!-- results:<name> -->`` and ``<!-- /results:<name> -->``
that this script replaces with that file, so the README's tables are exactly what the committed
scripts printed, never typed by hand::

    python benchmarks/readme.py            # after running the benchmarks
    python benchmarks/readme.py --check    # exit 1 if the README is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
README = BENCH_DIR / "README.md"
RESULTS = BENCH_DIR / "results"
#: Results not made by ``python benchmarks/<name>.py`` alone.
HOW_TO_RUN = {"gpu": "`make gpu-check` on a machine with an NVIDIA GPU"}
BLOCK = re.compile(r"(<!-- results:(\w+) -->\n)(.*?)(<!-- /results:\2 -->)", re.S)


def render(readme: str, results: Path) -> str:
    """``readme`` with every results block replaced by ``results/<name>.md`` (a missing file
    leaves a note that the benchmark has not been run)."""

    def fill(match: re.Match[str]) -> str:
        start, name, _, end = match.groups()
        path = results / f"{name}.md"
        how = HOW_TO_RUN.get(name, f"`python benchmarks/{name}.py`")
        body = path.read_text() if path.is_file() else f"_Not run yet: {how}._\n"
        return f"{start}{body}{end}"

    return BLOCK.sub(fill, readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args(argv)
    old = README.read_text()
    new = render(old, RESULTS)
    if args.check:
        if new != old:
            print("benchmarks/README.md is out of date: run python benchmarks/readme.py")
            return 1
        return 0
    README.write_text(new)
    print(f"updated {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
