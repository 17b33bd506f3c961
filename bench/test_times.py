"""The wall times README quotes for `make test-fast` and `make test`, measured on this machine.

Runs the make targets as a contributor does (in the repository, with .venv already set up, so the
install steps are the idempotent no-op they are on a second run), times each, keeps pytest's
summary line and the load average before and after (a shared machine is slower), and writes
bench/results/test-times.txt.

    python -m bench.test_times [--full] [--runs 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime

from bench.harness import REPO

OUT = REPO / "bench" / "results" / "test-times.txt"


def _run(target: str) -> tuple[float, str, int]:
    """Wall seconds, pytest's last summary line and the exit status of `make TARGET`."""
    started = time.monotonic()
    done = subprocess.run(["make", target], cwd=REPO, capture_output=True, text=True)
    wall = time.monotonic() - started
    lines = [line.strip("= ") for line in done.stdout.splitlines() if " in " in line and ("passed" in line or "failed" in line)]
    return wall, (lines[-1] if lines else "no pytest summary"), done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also time `make test` (all tiers, the image included)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each target")
    args = parser.parse_args()
    targets = ["test-fast"] + (["test"] if args.full else [])
    rows = []
    failed = False
    for target in targets:
        for run in range(1, args.runs + 1):
            load_before = os.getloadavg()[0]
            wall, summary, code = _run(target)
            failed |= code != 0
            rows.append(f"make {target:<9}  run {run}  {wall:6.0f} s wall  load {load_before:.1f} -> {os.getloadavg()[0]:.1f}  {summary}")
            print(rows[-1], flush=True)
    header = [
        f"# python -m bench.test_times {' '.join(sys.argv[1:])}".rstrip(),
        f"# {datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} CPUs; .venv already set up (make's install steps are no-ops)",
    ]
    OUT.write_text("\n".join(header + rows) + "\n")
    print(f"wrote {OUT.relative_to(REPO)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
