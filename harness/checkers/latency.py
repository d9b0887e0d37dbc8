"""Latency per operation type and per phase, from raw samples.

Why nearest-rank on raw samples: a percentile must be a latency some operation actually had, so
p50 ≤ p95 ≤ p99 ≤ max always holds — locust's rounded buckets break this (its p99 can exceed max,
locust #255/#331/#1563/#2005). Nearest rank: the p-th percentile of n sorted samples is the sample at
rank ⌈p/100 · n⌉ (1-based).

Phases relative to the nemesis windows: ``before`` the first t_inject, ``during`` any window
[t_inject, t_heal] (an unhealed window lasts to the end), ``after`` otherwise (after a heal). An op's
phase is that of its invocation. ``all`` holds every op, and op ``*`` aggregates all op types.
``count`` is every completed op of the bucket, ``errors`` the fail + info ones; percentiles are over
the ok ops only (the latency of service actually given; a timeout's "latency" is the client's timeout).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from harness.checkers.ops import completed_op_ids
from harness.history import FaultWindow, History, Op

PHASES = ("before", "during", "after")
ALL_PHASE = "all"
ALL_OPS = "*"
PERCENTILES = (50, 95, 99)


def nearest_rank(sorted_values: Sequence[float], p: float) -> float:
    """The p-th percentile (0 < p ≤ 100) of ascending ``sorted_values`` by nearest rank."""
    if not sorted_values:
        raise ValueError("percentile of no samples")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(latencies_ms: Iterable[float], errors: int = 0) -> dict[str, Any]:
    """``{count, errors, p50, p95, p99, max}`` in ms; ``count`` = ok samples + errors; percentiles
    ``None`` when there is no ok sample."""
    xs = sorted(latencies_ms)
    out: dict[str, Any] = {"count": len(xs) + errors, "errors": errors}
    for p in PERCENTILES:
        out[f"p{p}"] = round(nearest_rank(xs, p), 3) if xs else None
    out["max"] = round(xs[-1], 3) if xs else None
    return out


def phase_of(t: float, faults: Sequence[FaultWindow]) -> str:
    if not faults:
        return "before"
    for f in faults:
        if t >= f.t_start and (f.t_stop is None or t <= f.t_stop):
            return "during"
    if t < min(f.t_start for f in faults):
        return "before"
    return "after"


def latency_table(history: History, faults: Sequence[FaultWindow] | None = None) -> dict[str, dict[str, Any]]:
    """``{phase: {op: {count, errors, p50, p95, p99, max}}}`` for every client op with a completion.

    Phases without ops are left out; ``all`` is always present when any op completed."""
    windows = history.faults() if faults is None else list(faults)
    done = completed_op_ids(history)
    ok_ms: dict[tuple[str, str], list[float]] = defaultdict(list)
    errors: dict[tuple[str, str], int] = defaultdict(int)
    seen: set[tuple[str, str]] = set()
    for op in history.ops():
        if op.op_id not in done:
            continue
        phases = (ALL_PHASE, phase_of(op.t_invoke, windows)) if windows else (ALL_PHASE,)
        for phase in phases:
            for f in (op.f, ALL_OPS):
                _add(op, (phase, f), ok_ms, errors)
                seen.add((phase, f))
    table: dict[str, dict[str, Any]] = {}
    for phase in (ALL_PHASE, *PHASES):
        ops = sorted(f for ph, f in seen if ph == phase)
        if ops:
            table[phase] = {f: summarize(ok_ms[(phase, f)], errors[(phase, f)]) for f in ops}
    return table


def _add(op: Op, key: tuple[str, str], ok_ms: dict[tuple[str, str], list[float]],
         errors: dict[tuple[str, str], int]) -> None:
    if op.type == "ok":
        ok_ms[key].append(op.latency_s * 1000.0)
    else:
        errors[key] += 1
