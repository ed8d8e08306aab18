"""`python -m bench`: the speed targets' figures on the bench's own container labs (bench3, bench12);
writes bench/results/latest.{json,png}. `python -m bench.readme` then rewrites docs/benchmarks.md's table.

Default: the 3-node figures and the 12-node scale run against its own 12-node floor
(`--scale 3` skips the scale run; `--scale 3,6,12` adds sizes). The package-cache comparison
(two more cold converges) is opt-in: `--package-cache`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

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
    parser.add_argument("--scale", default="3,12",
                        help="comma-separated node counts, e.g. 3,6,12 (default: 3,12)")
    parser.add_argument("--package-cache", action="store_true",
                        help="also compare a cold converge through an empty and a warm package cache")
    args = parser.parse_args(argv)
    scale = sorted({int(s) for s in args.scale.split(",") if s.strip()} | {3})
    start = time.monotonic()
    result = bench(scale, with_package_cache=args.package_cache)
    result["bench_s"] = round(time.monotonic() - start, 1)
    result["command"] = " ".join(["python -m bench", f"--scale {','.join(map(str, scale))}",
                                  *(["--package-cache"] if args.package_cache else [])])
    result["date"] = datetime.datetime.now(datetime.UTC).date().isoformat()
    result["machine"] = machine()
    js, png = report.write(result)
    print(report.summary(result))
    print(f"wrote {js} and {png}; `python -m bench.readme` puts the table into docs/benchmarks.md")
    return 1 if result.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
