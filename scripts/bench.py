"""`make bench`: every benchmark in one run, each printing ratios against a direct call measured in that run.

Prints the machine first (benchmarks are only comparable on the same machine); copy the output into
docs/benchmarks.md when you record results.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    "bench_grounded.py",
    "bench_gateway.py",
    "bench_models.py",
    "bench_query.py",
    "bench_ingest.py",
    "bench_store.py",
    "bench_governance.py",
]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} cores · {cpu} · "
        f"{mem_gib:.0f} GiB · Python {platform.python_version()} · {platform.system()} {platform.machine()}"
    )


def main() -> int:
    args = sys.argv[1:]
    print(f"machine: {machine()}\n")
    failed = 0
    for name in BENCHES:
        path = HERE / name
        if not path.exists():
            continue
        print(f"## {name}\n", flush=True)
        rc = subprocess.call([sys.executable, str(path), *args], cwd=HERE.parent)
        failed += rc != 0
        print(flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
