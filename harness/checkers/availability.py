"""Availability over time and recovery from faults, exactly as docs/definitions.md states them.

A probe op is *good* when it **succeeded within the SLO** (``ok`` and latency ≤ ``slo_ms``): a call that
hung through an outage and then succeeded was not served in time, so it is no evidence of service.

Two views of the same probe stream:

- **Raw stream** (RTO, unavailability, recovery after heal): probes in invocation order; each probe
  stands for the time until the next probe was invoked. After the first bad probe at or after
  t_inject, t_recovered is the invocation time of the first good probe after which every probe
  invoked in the next W seconds is good (and the stream reaches that far without a silence longer than
  ``max_gap_s``) — timed at the midpoint between that probe and the bad one before it.
  RTO = t_recovered − t_inject. Against a known outage the error is at most half a probe period (the
  outage ends between two probe invocations), with no trailing-window overstatement.
- **Grid series** (plots, ``availability_min``): availability(t) = good probes / probes *invoked* in
  the sliding window (t − w, t], on the fixed grid t = k·step. A grid point whose window holds no probe
  invocation has no value (``None``) and counts as not available.

Why both: the raw stream is exact to the probe period, which is what RTO needs; the windowed series
is what a reader can see on a plot (a fraction per second).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from harness.checkers.ops import probe_ops
from harness.history import History

DEFAULT_SLO_MS = 1000.0  # a probe slower than this was not served in time (docs/definitions.md)


@dataclass(frozen=True)
class MeasureParams:
    """Parameters of every availability-derived measurement; recorded in run.json with the numbers."""

    window_s: float = 1.0  # w: sliding window of availability(t) (plots, availability_min)
    step_s: float = 0.1  # evaluation grid of availability(t)
    threshold: float = 0.99  # A: availability(t) at or above this is "available"
    stable_s: float = 2.0  # W: how long every probe must be good to count as recovered
    slo_ms: float = DEFAULT_SLO_MS  # a probe counts as available only if it succeeded within this
    max_gap_s: float = 1.0  # a silence between probe invocations longer than this is not evidence of service
    starved_lag_ms: float = 250.0  # harness lag above this in a judged phase: measurement invalid

    def __post_init__(self) -> None:
        if not (self.window_s > 0 and self.step_s > 0 and self.stable_s >= 0):
            raise ValueError(f"window_s and step_s must be > 0 and stable_s >= 0, got {self}")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if not self.starved_lag_ms > 0:
            raise ValueError(f"starved_lag_ms must be > 0, got {self.starved_lag_ms}")
        if not (self.slo_ms > 0 and self.max_gap_s > 0):
            raise ValueError(f"slo_ms and max_gap_s must be > 0, got slo_ms={self.slo_ms}, "
                             f"max_gap_s={self.max_gap_s}")

    @staticmethod
    def for_history(history: History, params: MeasureParams | None = None) -> MeasureParams:
        """``params`` if given, else the defaults with the SLO and starvation threshold the run recorded
        in the history's meta (``meta["slo_ms"]``, ``meta["starved_lag_ms"]``), so an offline rebuild
        judges as the run was judged."""
        if params is not None:
            return params
        meta = history.meta if isinstance(history.meta, dict) else {}
        given = {k: float(meta[k]) for k in ("slo_ms", "starved_lag_ms") if meta.get(k)}
        return MeasureParams(**given)


@dataclass(frozen=True)
class ProbeSample:
    """One completed probe: ``ok`` = succeeded within the SLO; ``succeeded`` = completed ``ok`` at all."""

    t: float  # invocation time
    ok: bool
    succeeded: bool | None = None  # None: same as ok (hand-built samples)
    latency_s: float | None = None
    key: str | None = None
    node: str | None = None  # the node that served it (``extra.node``), when the stack says


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


def probe_samples(history: History, params: MeasureParams | None = None) -> list[ProbeSample]:
    """Every completed probe op in invocation order; ``ok`` means it succeeded within the SLO."""
    slo_s = MeasureParams.for_history(history, params).slo_ms / 1000.0
    out = [ProbeSample(op.t_invoke, op.type == "ok" and op.latency_s <= slo_s, op.type == "ok",
                       round(op.latency_s, 6), op.key, (op.extra or {}).get("node"))
           for op in probe_ops(history)]
    return sorted(out, key=lambda s: s.t)


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
    params = MeasureParams.for_history(history, params)
    return series_from_samples(probe_samples(history, params), params)


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


# ---- the raw probe stream: RTO, unavailability, recovery after heal ------------------------------------
_EPS = 1e-9


def _next_bad(samples: Sequence[ProbeSample]) -> list[int]:
    """nb[k] = the first index ≥ k whose probe is not good (``len`` if none)."""
    n = len(samples)
    nb = [n] * (n + 1)
    for k in range(n - 1, -1, -1):
        nb[k] = k if not samples[k].ok else nb[k + 1]
    return nb[:-1]


def _next_gap(ts: Sequence[float], max_gap: float) -> list[int]:
    """ng[k] = the first index m ≥ k followed by a silence longer than ``max_gap`` (the last index if
    none): the stream is continuous evidence from ts[k] up to ts[ng[k]]."""
    n = len(ts)
    ng = [n - 1] * n
    for k in range(n - 2, -1, -1):
        ng[k] = k if ts[k + 1] - ts[k] > max_gap + _EPS else ng[k + 1]
    return ng


def stream_episodes(samples: Sequence[ProbeSample], params: MeasureParams, t_from: float,
                    t_until: float | None = None) -> list[Episode]:
    """Outages that start (first bad probe) in [t_from, t_until), with their recoveries (which may lie
    after t_until), from probes sorted by invocation time.

    An outage starts at a bad probe's invocation, or ``max_gap_s`` into a silence (no probe invoked
    for longer than that: no evidence of service). Recovered at the first good probe j after the dip
    such that every probe invoked in [t_j, t_j + W] is good, the stream reaches t_j + W, and no silence
    inside is longer than ``max_gap_s``. A good stretch shorter than W (flapping) does not end the
    outage. ``recovered_at`` is the midpoint between that probe's invocation and the bad probe just
    before it (the recovery happened in between), or the probe's own time after a silence."""
    n = len(samples)
    ts = [s.t for s in samples]
    nb = _next_bad(samples)
    ng = _next_gap(ts, params.max_gap_s)
    out: list[Episode] = []
    i = _first_index(ts, t_from)
    if 0 < i < n and ts[i] - ts[i - 1] > params.max_gap_s + _EPS and ts[i - 1] + params.max_gap_s >= t_from:
        i -= 1  # a silence that began before t_from and outlasted max_gap after it
    while i < n:
        silent = i + 1 < n and ts[i + 1] - ts[i] > params.max_gap_s + _EPS
        dip_at = ts[i] if not samples[i].ok else ts[i] + params.max_gap_s
        if t_until is not None and dip_at >= t_until - _EPS:
            break
        if samples[i].ok and not silent:
            i += 1
            continue
        rec: int | None = None
        j = i + 1
        while j < n:
            if not samples[j].ok:
                j += 1
                continue
            end = ts[j] + params.stable_s
            if nb[j] < n and ts[nb[j]] <= end + _EPS:
                j = nb[j] + 1  # a bad probe inside the window: the outage goes on
                continue
            g = ng[j]
            if ts[g] >= end - _EPS:
                rec = j
                break
            if g >= n - 1:
                break  # the stream ends before a whole W of good probes
            j = g + 1  # a silence inside the window: evidence starts again after it
        if rec is None:
            out.append(Episode(dip_at, None))
            break
        # the service came back between the last bad probe's invocation and the first good probe of a
        # key that was down in this outage (for a full outage: the recovering probe itself); the
        # midpoint of that bracket halves the error; after a silence, the probe's own time
        back = ts[rec]
        if not samples[rec - 1].ok:
            back = (ts[rec - 1] + ts[_first_good_of_down_group(samples, i, rec, params.stable_s)]) / 2
        out.append(Episode(dip_at, round(back, 6)))
        i = rec + 1
    return out


def _first_good_of_down_group(samples: Sequence[ProbeSample], i: int, rec: int, stable_s: float) -> int:
    """The first probe from ``rec`` on (within W) whose key belongs to a *group* that was down in the
    outage that began at ``i``. A key's group is the node that last served it before the outage
    (``ProbeSample.node``), else the key itself: one node of three down fails only its keys' probes,
    and any of its keys ends the bracket, not just the few that happened to be probed while it was
    down. ``rec`` when no such probe exists (e.g. the keys moved to other nodes)."""
    owner: dict[str | None, str | None] = {}
    for s in samples[:i]:
        if s.ok and s.node is not None:
            owner[s.key] = s.node

    def group(s: ProbeSample) -> str | None:
        return owner.get(s.key, s.key)

    down = {group(samples[k]) for k in range(i, rec) if not samples[k].ok}
    end = samples[rec].t + stable_s
    for k in range(rec, len(samples)):
        if samples[k].t > end + _EPS:
            break
        if group(samples[k]) in down:
            return k
    return rec


def stream_unavailable_s(samples: Sequence[ProbeSample], params: MeasureParams, t_from: float,
                         t_until: float | None = None) -> float:
    """Unavailable time attributed to [t_from, t_until).

    Each probe stands for its *cell*: from the midpoint with the previous probe to the midpoint with
    the next (the first and last probes' cells end at their own invocation). A bad probe's cell is
    unavailable and counts where the probe was invoked (so an outage that began at t_inject is not cut
    short by half a cell). A silence longer than ``max_gap_s`` between two probes is unavailable from
    ``max_gap_s / 2`` after the first to ``max_gap_s / 2`` before the second, clipped to the range.
    Against an outage [a, b) the error is at most about half a probe period at each end."""
    n = len(samples)
    hi_cap = math.inf if t_until is None else t_until
    half = params.max_gap_s / 2
    total = 0.0
    for k, s in enumerate(samples):
        lo = s.t if k == 0 else (samples[k - 1].t + s.t) / 2
        hi = s.t if k == n - 1 else (s.t + samples[k + 1].t) / 2
        if not s.ok and t_from - _EPS <= s.t < hi_cap - _EPS:
            total += hi - lo
        if k + 1 < n and samples[k + 1].t - s.t > params.max_gap_s + _EPS:
            g_lo, g_hi = s.t + half, samples[k + 1].t - half
            if not s.ok:
                g_lo = max(g_lo, hi)
            if not samples[k + 1].ok:
                g_hi = min(g_hi, hi)
            g_lo, g_hi = max(g_lo, t_from), min(g_hi, hi_cap)
            if g_hi > g_lo:
                total += g_hi - g_lo
    return round(total, 6)
