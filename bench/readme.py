"""`python -m bench.readme`: rewrite README.md's benchmark table from bench/results/latest.json
(between the bench-table markers). `--check` only says whether README is current (exit 1 if not)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import report

README = Path(__file__).resolve().parents[1] / "README.md"


def rewrite(readme: str, result: dict) -> str:
    """README text with the block between the markers replaced by the table of `result`."""
    begin, end = readme.find(report.README_BEGIN), readme.find(report.README_END)
    if begin < 0 or end < begin:
        raise ValueError("README.md has no bench-table markers")
    head = readme[:begin + len(report.README_BEGIN)]
    return f"{head}\n{report.markdown(result)}\n{readme[end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.readme", description=__doc__)
    parser.add_argument("--results", type=Path, default=report.RESULTS_DIR / "latest.json")
    parser.add_argument("--check", action="store_true", help="exit 1 if README's table is stale")
    args = parser.parse_args(argv)
    text = README.read_text()
    new = rewrite(text, json.loads(args.results.read_text()))
    if args.check:
        print("README's bench table is current" if new == text else
              "README's bench table is stale: run `python -m bench.readme`")
        return 0 if new == text else 1
    README.write_text(new)
    print(f"wrote the bench table of {args.results} into {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
