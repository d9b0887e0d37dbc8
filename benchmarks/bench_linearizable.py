"""Measure what the linearizability checker costs: per history, time, ops, configurations explored; and
the worst case it is bounded for (k indeterminate increments and an answer no subset explains, 2^k
configurations to refute), so the bound can be chosen from a rate instead of a guess.

Why: the checker runs in every scenario that judges L and M, so its time is part of every run's
conclusion, and its search is exponential in the worst case. Run:
``python benchmarks/bench_linearizable.py [history.jsonl ...]`` (default: tests/data/histories).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from harness.checkers.linearizable import DEFAULT_MAX_STATES, linearizable_counters
from harness.history import Event, History

ROOT = Path(__file__).resolve().parents[1]


def worst_case(k: int) -> History:
    """k concurrent indeterminate increments by 2 and an odd read within their sum."""
    evs: list[Event] = []
    for i in range(k):
        evs += [Event(0.0, "invoke", f"c{i}", "increment", key="hot", value=2, op_id=i + 1),
                Event(1.0, "info", f"c{i}", "increment", key="hot", op_id=i + 1, error="timeout")]
    evs += [Event(1.1, "invoke", "r", "read", key="hot", op_id=k + 1),
            Event(1.2, "ok", "r", "read", key="hot", value=5, op_id=k + 1)]
    return History(sorted(evs, key=lambda e: e.t))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("histories", nargs="*", type=Path)
    p.add_argument("--max-k", type=int, default=18, help="largest worst case (2^k configurations)")
    args = p.parse_args()
    paths = args.histories or sorted((ROOT / "tests" / "data" / "histories").glob("*.jsonl"))
    print(f"{'history':48} {'verdict':8} {'ops':>6} {'states':>8} {'max/key':>8} {'ms':>8}")
    for path in paths:
        h = History.load(path)
        t = time.perf_counter()
        c = linearizable_counters()(h)
        ms = (time.perf_counter() - t) * 1000
        print(f"{path.name[:48]:48} {c.verdict!s:8} {c.data.get('ops', 0):>6} {c.data.get('states_explored', 0):>8} "
              f"{c.data.get('max_states_per_key', 0):>8} {ms:>8.1f}")
    print(f"\nworst case (bound {DEFAULT_MAX_STATES} configurations per key):")
    print(f"{'k':>3} {'verdict':8} {'states':>8} {'ms':>8} {'states/s':>10}")
    for k in range(8, args.max_k + 1, 2):
        t = time.perf_counter()
        c = linearizable_counters()(worst_case(k))
        s = time.perf_counter() - t
        n = c.data["states_explored"]
        print(f"{k:>3} {c.verdict!s:8} {n:>8} {s * 1000:>8.1f} {n / s:>10.0f}")


if __name__ == "__main__":
    main()
