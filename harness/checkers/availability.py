"""Availability over time and recovery from faults, exactly as docs/definitions.md states them.

Definitions (w = ``window_s``, A = ``threshold``, W = ``stable_s``, grid step = ``step_s``):

- availability(t) = ok probe ops / probe ops *invoked* in the sliding window (t − w, t], evaluated on
  the fixed grid t = k·step between the first and the last probe invocation. A grid point whose window
  holds no probe invocation has no value (``None``) and counts as *not available*: a silent probe is no
  evidence of service.
- A point is *good* when availability(t) ≥ A. A *dip* is a point that is not good.
- After the first dip at or after t_inject, t_recovered is the first grid point t after the dip such
  that every grid point in [t, t + W] is good (the start of the first W-second window in which
  availability stays ≥ A). RTO = t_recovered − t_inject; no dip → 0; no such window before the end of
  the probe data → never recovered (``None``).

Why a grid rather than event times: every run is judged at the same resolution, flapping is handled
by the W-window rule, and the same series is what the plots draw — a reader sees what was measured.
Because the window trails, a dip lasts up to w longer than the failing probes (see definitions.md).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from harness.checkers.ops import probe_ops
from harness.history import History


@dataclass(frozen=True)
class MeasureParams:
    """Parameters of every availability-derived measurement; recorded in run.json with the numbers."""

    window_s: float = 1.0  # w: sliding window of availability(t)
    step_s: float = 0.1  # evaluation grid
    threshold: float = 0.99  # A: availability at or above this is "available"
    stable_s: float = 2.0  # W: how long availability must stay >= A to count as recovered

    def __post_init__(self) -> None:
        if not (self.window_s > 0 and self.step_s > 0 and self.stable_s >= 0):
            raise ValueError(f"window_s and step_s must be > 0 and stable_s >= 0, got {self}")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")


@dataclass(frozen=True)
class ProbeSample:
    t: float  # invocation time
    ok: bool


@dataclass(frozen=True)
class AvailabilitySeries:
    """availability(t) on the grid: ``value[i]`` is ``None`` when no probe was invoked in the window."""

    t: tuple[float, ...]
    value: tuple[float | None, ...]
    count: tuple[int, ...]
    params: MeasureParams

    def good(self, i: int) -> bool:
        v = self.value[i]
        return v is not None and v >= self.params.threshold

    def index_at_or_after(self, t: float) -> int:
        """First grid index with time ≥ t (``len`` if none)."""
        return _first_index(self.t, t)

    @property
    def end(self) -> float | None:
        return self.t[-1] if self.t else None


@dataclass(frozen=True)
class Episode:
    """One dip and the start of the stable window that ended it (``None``: never recovered)."""

    dip_at: float
    recovered_at: float | None


def probe_samples(history: History) -> list[ProbeSample]:
    """(invocation time, ok?) of every completed probe op, in time order."""
    return sorted((ProbeSample(op.t_invoke, op.type == "ok") for op in probe_ops(history)), key=lambda s: s.t)


def series_from_samples(samples: Sequence[ProbeSample], params: MeasureParams) -> AvailabilitySeries:
    """The pure core: availability(t) on the grid from (time, ok) samples."""
    if not samples:
        return AvailabilitySeries((), (), (), params)
    ordered = sorted(samples, key=lambda s: s.t)
    times = [s.t for s in ordered]
    ok_prefix = [0]
    for s in ordered:
        ok_prefix.append(ok_prefix[-1] + (1 if s.ok else 0))
    step = params.step_s
    k0 = math.ceil(round(times[0] / step, 9))
    k1 = math.ceil(round(times[-1] / step, 9))
    grid: list[float] = []
    values: list[float | None] = []
    counts: list[int] = []
    for k in range(k0, k1 + 1):
        t = round(k * step, 9)
        hi = bisect_right(times, t)
        lo = bisect_right(times, t - params.window_s)
        n = hi - lo
        grid.append(t)
        counts.append(n)
        values.append((ok_prefix[hi] - ok_prefix[lo]) / n if n else None)
    return AvailabilitySeries(tuple(grid), tuple(values), tuple(counts), params)


def availability_series(history: History, params: MeasureParams | None = None) -> AvailabilitySeries:
    return series_from_samples(probe_samples(history), params or MeasureParams())


def _first_index(ts: Sequence[float], t: float) -> int:
    """First index with ts[i] ≥ t, tolerant of float noise at the grid resolution."""
    lo, hi = 0, len(ts)
    while lo < hi:
        mid = (lo + hi) // 2
        if ts[mid] < t - 1e-9:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _stable_runs(series: AvailabilitySeries) -> list[int]:
    """run[i] = number of consecutive good points starting at i."""
    run = [0] * (len(series.t) + 1)
    for i in range(len(series.t) - 1, -1, -1):
        run[i] = run[i + 1] + 1 if series.good(i) else 0
    return run[:-1]


def episodes(series: AvailabilitySeries, t_from: float, t_until: float | None = None) -> list[Episode]:
    """Dips starting in [t_from, t_until) and their recoveries (a recovery may lie after t_until).

    Recovery at grid index j needs every point of [t_j, t_j + W] good and that whole window inside the
    probe data; a history that ends inside a stable stretch shorter than W has not (yet) recovered."""
    n = len(series.t)
    need = round(series.params.stable_s / series.params.step_s) + 1  # points in [t, t + W]
    run = _stable_runs(series)
    out: list[Episode] = []
    i = series.index_at_or_after(t_from)
    while i < n:
        if t_until is not None and series.t[i] >= t_until - 1e-9:
            break
        if series.good(i):
            i += 1
            continue
        j = i + 1
        while j < n and run[j] < need:
            j += 1
        if j >= n:
            out.append(Episode(series.t[i], None))
            break
        out.append(Episode(series.t[i], series.t[j]))
        i = j + need
    return out


def unavailable_s(series: AvailabilitySeries, t_from: float, t_until: float | None = None) -> float:
    """Time with availability < A (or no value) on the grid in [t_from, t_until): points × step."""
    i = series.index_at_or_after(t_from)
    j = len(series.t) if t_until is None else series.index_at_or_after(t_until)
    bad = sum(1 for k in range(i, j) if not series.good(k))
    return round(bad * series.params.step_s, 6)


def min_availability(series: AvailabilitySeries, t_from: float | None = None) -> float | None:
    start = 0 if t_from is None else series.index_at_or_after(t_from)
    vals = [v for v in series.value[start:] if v is not None]
    return min(vals) if vals else None
