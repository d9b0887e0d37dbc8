"""Benchmark: how long the local platform takes to bring the full stack (etcd, PostgreSQL, 3 nodes,
2 gates, inspector) to a converged shard map, and how long the `-m e2e` scenario run takes.

Why a script and not a timed test: wall-clock figures on a 2-core CI machine are noisy; they are measured
and printed here (and recorded in docs), never asserted.

    python benchmarks/bench_stack_up.py [--runs 3] [--isolated|--loopback] [--e2e]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.platforms.base import StackSpec
from harness.platforms.local.deploy import LocalPlatform


def bring_up(isolate: bool | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="gvh-bench-") as d:
        t0 = time.monotonic()
        dep = LocalPlatform().deploy(StackSpec(isolate_network=isolate), Path(d))
        total = time.monotonic() - t0
        try:
            return {**dep.timings, "deploy_call_s": round(total, 3)}
        finally:
            t1 = time.monotonic()
            dep.teardown()
            print(f"  teardown {time.monotonic() - t1:.2f}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--isolated", action="store_true", help="force network namespaces")
    g.add_argument("--loopback", action="store_true", help="force 127.0.0.1 (no namespaces)")
    ap.add_argument("--e2e", action="store_true", help="also time `goverse-harness run -m e2e`")
    args = ap.parse_args()
    isolate = True if args.isolated else False if args.loopback else None
    rows = []
    for i in range(args.runs):
        r = bring_up(isolate)
        rows.append(r)
        print(f"run {i + 1}: " + ", ".join(f"{k}={v}" for k, v in r.items()))
    for key in ("converged_s", "stack_ready_s", "total_s"):
        vals = [r[key] for r in rows if key in r]
        print(f"{key:14s} median {statistics.median(vals):.2f}s  min {min(vals):.2f}s  max {max(vals):.2f}s")
    if args.e2e:
        t0 = time.monotonic()
        code = subprocess.call([sys.executable, "-m", "harness.cli", "run", "-m", "e2e", "-q"])
        print(f"goverse-harness run -m e2e: {time.monotonic() - t0:.1f}s (exit {code})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
