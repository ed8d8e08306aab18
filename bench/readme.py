"""`python -m bench.readme`: rewrite docs/benchmarks.md's table from bench/results/latest.json
(between the bench-table markers). `--check` only says whether the page is current (exit 1 if not)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import report

PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def rewrite(readme: str, result: dict) -> str:
    """The page's text with the block between the markers replaced by the table of `result`."""
    begin, end = readme.find(report.README_BEGIN), readme.find(report.README_END)
    if begin < 0 or end < begin:
        raise ValueError("docs/benchmarks.md has no bench-table markers")
    head = readme[:begin + len(report.README_BEGIN)]
    return f"{head}\n{report.markdown(result)}\n{readme[end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.readme", description=__doc__)
    parser.add_argument("--results", type=Path, default=report.RESULTS_DIR / "latest.json")
    parser.add_argument("--check", action="store_true", help="exit 1 if the page's table is stale")
    args = parser.parse_args(argv)
    text = PAGE.read_text()
    new = rewrite(text, json.loads(args.results.read_text()))
    if args.check:
        print("docs/benchmarks.md's table is current" if new == text else
              "docs/benchmarks.md's table is stale: run `python -m bench.readme`")
        return 0 if new == text else 1
    PAGE.write_text(new)
    print(f"wrote the bench table of {args.results} into {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
