"""`python -m bench`: benchmark a 3-node container lab; writes bench/results/latest.{json,png}.

Scale runs are opt-in (they take long): `python -m bench --scale 3,6,12`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

from bench import report
from bench.run import bench


def machine() -> str:
    try:
        mem_kb = int(open("/proc/meminfo").read().split()[1])
        mem = f"{round(mem_kb / 1024 / 1024)} GiB"
    except (OSError, ValueError, IndexError):
        mem = "? GiB"
    return f"{os.cpu_count()} cores, {mem}, nested node containers"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--scale", default="3",
                        help="comma-separated node counts, e.g. 3,6,12 (default: 3 only)")
    args = parser.parse_args(argv)
    scale = sorted({int(s) for s in args.scale.split(",") if s.strip()})
    result = bench(scale)
    result["date"] = datetime.date.today().isoformat()
    result["machine"] = machine()
    js, png = report.write(result)
    print(report.summary(result))
    print(f"wrote {js} and {png}")
    return 1 if result.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
