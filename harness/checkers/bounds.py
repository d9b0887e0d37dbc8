"""What a counter may hold, from the increments of a history: the bounds every L-style checker compares
a value read back (a final read, a restored backup, the stored row) against.

Why one helper: the rule is the same everywhere — an acknowledged (ok) increment must be in the value,
an indeterminate (info) one may be, a definitely failed one must not — and only the window of ops that
count differs (before a backup point, after a restore, the whole run). Each checker states its window
as two predicates instead of re-summing the history its own way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from harness.checkers.ops import FINAL_READ_F, INCREMENT_F, as_int
from harness.history import History, Op


@dataclass(frozen=True)
class KeyBounds:
    """What a counter may hold: at least ``lo`` (acknowledged), at most ``hi`` (acknowledged or
    indeterminate)."""

    lo: int
    hi: int


def _always(_op: Op) -> bool:
    return True


def increment_bounds(history: History, *, acked: Callable[[Op], bool] = _always,
                     maybe: Callable[[Op], bool] = _always, base: Mapping[str, int] | None = None,
                     keys: Iterable[str] | None = None, only_counted: bool = False) -> dict[str, KeyBounds]:
    """Per counter key: ``lo`` = base + Σ ok increments with ``acked(op)``; ``hi`` = base + Σ ok or info
    increments with ``maybe(op)``. Failed increments never count. Rows: every key of ``base`` and
    ``keys``, and every key with an increment (``only_counted``: only those an op counted towards)."""
    lo: dict[str, int] = {str(k): int(v) for k, v in (base or {}).items()}
    hi: dict[str, int] = dict(lo)
    for k in keys or ():
        lo.setdefault(k, 0)
        hi.setdefault(k, 0)
    for op in history.ops(INCREMENT_F):
        amount = as_int(op.value)
        if op.key is None or amount is None:
            continue
        counted_lo = op.type == "ok" and acked(op)
        counted_hi = op.type in ("ok", "info") and maybe(op)
        if only_counted and not (counted_lo or counted_hi):
            continue
        lo.setdefault(op.key, 0)
        hi.setdefault(op.key, 0)
        if counted_lo:
            lo[op.key] += amount
        if counted_hi:
            hi[op.key] += amount
    return {k: KeyBounds(lo[k], hi[k]) for k in lo}


def final_reads(history: History) -> dict[str, int]:
    """The value of each key's last ok final read."""
    out: dict[str, int] = {}
    for op in history.ops(FINAL_READ_F):
        v = as_int(op.result)
        if op.type == "ok" and op.key is not None and v is not None:
            out[op.key] = v
    return out


def violations(bounds: Mapping[str, KeyBounds], values: Mapping[str, int | None]) -> list[dict[str, object]]:
    """Keys whose value is outside its bounds (or missing): ``lost`` (< lo), ``phantom`` (> hi) or
    ``missing`` (no value read back)."""
    out: list[dict[str, object]] = []
    for key in sorted(set(bounds) | set(values)):
        b = bounds.get(key, KeyBounds(0, 0))
        v = values.get(key)
        row: dict[str, object] = {"key": key, "restored": v, "lo": b.lo, "hi": b.hi}
        if v is None:
            out.append({**row, "problem": "missing"})
        elif v < b.lo:
            out.append({**row, "problem": "lost", "missing": b.lo - v})
        elif v > b.hi:
            out.append({**row, "problem": "phantom", "excess": v - b.hi})
    return out
