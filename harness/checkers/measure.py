"""All numbers a scenario reports: RTO, unavailability, recovery after heal, availability, latency.

Why one function: run.json, the HTML report and the budget checkers (``rto``, ``recovery_after_heal``,
``availability_at_least``) must show the same numbers, so they all come from :func:`measure` /
:func:`measure_faults` over the same history and :class:`MeasureParams`.

All of it from the raw probe stream (``availability.stream_episodes``): a probe is good when it
succeeded within ``slo_ms``. Per fault (each nemesis window, operation windows such as scale steps
included):
- ``status``: ``no-dip`` (RTO 0), ``recovered``, ``never-recovered`` (RTO ``None``; budget checks fail)
  or ``no-data`` (no probe data covering [t_inject, t_inject + W]; budget checks are unknown).
- dips are attributed to the latest fault injected before them: the first dip of fault i is searched in
  [t_inject_i, t_inject_{i+1}); its recovery may come later.
- ``recovery_after_heal_s`` = max(0, t_recovered − t_heal); ``recovered_before_heal`` says when the clamp
  applied (the stack failed over before the fault was healed). No dip → 0.
Aggregates: ``rto_s`` is the worst fault's RTO (``None`` if any fault never recovered or had no data),
``unavailability_s`` the unavailable time after the first t_inject.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from harness.checkers.availability import (
    AvailabilitySeries,
    Episode,
    MeasureParams,
    ProbeSample,
    min_availability,
    probe_samples,
    series_from_samples,
    stream_episodes,
    stream_unavailable_s,
)
from harness.checkers.latency import latency_table, phase_of
from harness.checkers.ops import completed_op_ids, is_probe
from harness.history import FaultWindow, History

Status = Literal["no-dip", "recovered", "never-recovered", "no-data"]


@dataclass(frozen=True)
class FaultMeasurement:
    id: str
    kind: str
    target: Any
    t_inject: float
    t_heal: float | None
    status: Status
    rto_s: float | None
    t_dip: float | None
    t_recovered: float | None
    unavailability_s: float
    recovery_after_heal_s: float | None
    recovered_before_heal: bool
    availability_min: float | None
    episodes: tuple[Episode, ...] = ()

    @property
    def recovered(self) -> bool | None:
        if self.status == "no-data":
            return None
        return self.status != "never-recovered"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; episodes become ``[[dip_at, recovered_at], ...]``."""
        d = asdict(self)
        d["episodes"] = [[e.dip_at, e.recovered_at] for e in self.episodes]
        d["recovered"] = self.recovered
        return d


@dataclass(frozen=True)
class Measurements:
    rto_s: float | None
    recovered: bool | None  # None: no fault or no probe data
    unavailability_s: float | None
    recovery_after_heal_s: float | None
    availability_min: float | None
    availability: float | None  # probes that succeeded within the SLO / completed probes
    probe_count: int
    latency: dict[str, dict[str, Any]]
    faults: tuple[FaultMeasurement, ...]
    params: MeasureParams = field(default_factory=MeasureParams)
    throughput_ops_s: float | None = None  # ok workload (non-probe) ops per second of workload activity
    series: AvailabilitySeries | None = field(default=None, repr=False)  # what rto_s was computed from (plots)
    succeeded: float | None = None  # probes that completed ok (in any time) / completed probes

    def to_dict(self) -> dict[str, Any]:
        return {
            "rto_s": self.rto_s,
            "recovered": self.recovered,
            "unavailability_s": self.unavailability_s,
            "recovery_after_heal_s": self.recovery_after_heal_s,
            "availability_min": self.availability_min,
            "availability": self.availability,
            "succeeded": self.succeeded,
            "probe_count": self.probe_count,
            "latency": self.latency,
            "faults": [f.to_dict() for f in self.faults],
            "params": asdict(self.params),
            "throughput_ops_s": self.throughput_ops_s,
        }


def _status(eps: list[Episode], covered: bool) -> Status:
    if eps:
        return "recovered" if eps[0].recovered_at is not None else "never-recovered"
    return "no-dip" if covered else "no-data"


def measure_fault(samples: Sequence[ProbeSample], params: MeasureParams, fault: FaultWindow,
                  next_inject: float | None) -> FaultMeasurement:
    """The measurements of one nemesis window over the probe stream (sorted by invocation time)."""
    p = params
    eps = stream_episodes(samples, p, fault.t_start, next_inject)
    covered = bool(samples) and samples[-1].t >= fault.t_start + p.stable_s - 1e-9
    t_dip = eps[0].dip_at if eps else None
    t_rec = eps[0].recovered_at if eps else None
    status = _status(eps, covered)
    rto: float | None = None
    if status == "no-dip":
        rto = 0.0
    elif status == "recovered" and t_rec is not None:
        rto = round(t_rec - fault.t_start, 6)
    rah: float | None = None
    before_heal = False
    if fault.t_stop is not None:
        if status == "no-dip":
            rah = 0.0
        elif status == "recovered" and t_rec is not None:
            before_heal = t_rec < fault.t_stop
            rah = round(max(0.0, t_rec - fault.t_stop), 6)
    return FaultMeasurement(
        id=fault.id,
        kind=fault.kind,
        target=fault.target,
        t_inject=fault.t_start,
        t_heal=fault.t_stop,
        status=status,
        rto_s=rto,
        t_dip=t_dip,
        t_recovered=t_rec,
        unavailability_s=stream_unavailable_s(samples, p, fault.t_start, next_inject),
        recovery_after_heal_s=rah,
        recovered_before_heal=before_heal,
        availability_min=min_availability(series_from_samples(samples, p), fault.t_start),
        episodes=tuple(eps),
    )


def _per_fault(samples: Sequence[ProbeSample], params: MeasureParams,
               faults: list[FaultWindow]) -> tuple[FaultMeasurement, ...]:
    """``faults`` sorted by t_inject; each one's dips are searched up to the next injection."""
    return tuple(
        measure_fault(samples, params, f, faults[i + 1].t_start if i + 1 < len(faults) else None)
        for i, f in enumerate(faults)
    )


def measure_faults(history: History, params: MeasureParams | None = None) -> tuple[FaultMeasurement, ...]:
    params = MeasureParams.for_history(history, params)
    faults = sorted(history.faults(), key=lambda f: f.t_start)
    return _per_fault(probe_samples(history, params), params, faults)


def measure(history: History, params: MeasureParams | None = None) -> Measurements:
    """Every measurement of DESIGN.md "Measurements" for one history."""
    params = MeasureParams.for_history(history, params)
    samples = probe_samples(history, params)
    series = series_from_samples(samples, params)
    faults = sorted(history.faults(), key=lambda f: f.t_start)
    per_fault = _per_fault(samples, params, faults)
    recovered: bool | None
    if not per_fault or not samples:
        recovered = None
    elif any(f.recovered is False for f in per_fault):
        recovered = False
    elif any(f.recovered is None for f in per_fault):
        recovered = None
    else:
        recovered = True
    rto = max(f.rto_s for f in per_fault if f.rto_s is not None) if recovered else None
    healed = [f for f in per_fault if f.t_heal is not None]
    rah = None
    if healed and all(f.recovery_after_heal_s is not None for f in healed):
        rah = max(f.recovery_after_heal_s for f in healed if f.recovery_after_heal_s is not None)
    first = faults[0].t_start if faults else None
    return Measurements(
        rto_s=rto,
        recovered=recovered,
        unavailability_s=stream_unavailable_s(samples, params, first) if first is not None and samples else None,
        recovery_after_heal_s=rah,
        availability_min=min_availability(series, first),
        availability=round(sum(s.ok for s in samples) / len(samples), 6) if samples else None,
        probe_count=len(samples),
        latency=latency_table(history, faults),
        faults=per_fault,
        params=params,
        throughput_ops_s=throughput(history),
        series=series,
        succeeded=(round(sum(bool(s.ok if s.succeeded is None else s.succeeded) for s in samples) / len(samples), 6)
                   if samples else None),
    )


def throughput(history: History) -> float | None:
    """ok workload ops / (last completion − first invocation) over the non-probe client ops."""
    done = completed_op_ids(history)
    ops = [o for o in history.ops() if not is_probe(o) and o.op_id in done]
    if not ops:
        return None
    span = max(o.t_complete for o in ops) - min(o.t_invoke for o in ops)
    ok = sum(1 for o in ops if o.type == "ok")
    return round(ok / span, 3) if span > 0 else None


@dataclass(frozen=True)
class Starvation:
    """The first moment the harness's own lag exceeded the threshold, and the worst lag seen."""

    t: float
    lag_ms: float
    worst_ms: float
    threshold_ms: float

    @property
    def reason(self) -> str:
        return (f"measurement invalid: harness starved (lag {self.lag_ms:.0f} ms at t={self.t:.2f}s; worst "
                f"{self.worst_ms:.0f} ms > {self.threshold_ms:g} ms)")


# Checks judged on values and on the real-time order of operations only, never on how soon something
# happened: a late invocation is recorded before the call is sent and a late completion after the answer
# arrived, so harness lag can only drop an ordering constraint, never add a false one. Their failure is
# evidence even in a starved run (docs/definitions.md, harness starvation).
LAG_INDEPENDENT: frozenset[str] = frozenset({
    "no_lost_writes", "reads_see_acknowledged", "monotonic_reads", "linearizable_counters",
    "persisted_not_behind", "reliable_calls_once", "single_ownership", "no_lost_writes_after_restore",
    "restored_matches_backup", "every_gate_routes",
    # a cut call (unknown outcome) is a cut call; starvation can only push one past the timeout filter
    "drained_in_flight",
    # facts read after the operation (log levels, exit codes, logins, reported versions, leaked secrets)
    "config_in_effect", "clean_exits", "secret_rotated", "version_everywhere", "no_secret_in_artifacts",
})


def harness_lag(history: History) -> list[tuple[float, dict[str, Any]]]:
    """The workload's ``harness-lag`` samples: (t, {"lag_ms", "loop_ms", "probe_ms", ..., "load1"})."""
    return [(e.t, e.value) for e in history.samples("harness-lag") if isinstance(e.value, dict)]


def starvation(history: History, params: MeasureParams | None = None) -> Starvation | None:
    """``None`` unless some lag sample exceeded ``starved_lag_ms``. Every sample is in a judged phase:
    the workload (and so the lag watch) runs only while the scenario measures."""
    p = MeasureParams.for_history(history, params)
    over = [(t, float(v.get("lag_ms") or 0.0)) for t, v in harness_lag(history)
            if float(v.get("lag_ms") or 0.0) > p.starved_lag_ms]
    if not over:
        return None
    return Starvation(over[0][0], over[0][1], max(lag for _, lag in over), p.starved_lag_ms)


def lag_by_phase(history: History) -> dict[str, dict[str, float | int | None]]:
    """Per phase (before / during / after, as for latency): worst harness lag, and the load average's
    max and mean over the lag samples — the machine's state while each phase was measured."""
    faults = sorted(history.faults(), key=lambda f: f.t_start)
    phases: dict[str, list[dict[str, Any]]] = {}
    for t, v in harness_lag(history):
        phases.setdefault(phase_of(t, faults) if faults else "all", []).append(v)
    out: dict[str, dict[str, float | int | None]] = {}
    for ph, vs in phases.items():
        loads = [float(v["load1"]) for v in vs if v.get("load1") is not None]
        out[ph] = {"samples": len(vs), "max_lag_ms": max(float(v.get("lag_ms") or 0.0) for v in vs),
                   "load1_max": max(loads) if loads else None,
                   "load1_mean": round(sum(loads) / len(loads), 2) if loads else None}
    return out
