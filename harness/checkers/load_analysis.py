"""What a load scenario measured, computed from its history alone: per phase offered vs achieved rate,
error rate and exact latency percentiles; throughput and percentiles over time; the knee of a step
load; whether the generator itself was saturated.

Why from the history alone: the driver records everything the numbers need into the history — the
generator's samples (as ops of processes ``load-*``), each phase as a ``log`` event ``load-phase``
(``{name, t_start, t_end, offered_rps, kind}``) and locust's CPU readings as ``sample`` events
``generator-cpu`` — so ``goverse-harness report --rebuild`` or a reader with ``history.jsonl`` gets the
same numbers, and the checkers in :mod:`harness.checkers.load` are ordinary pure checkers.

Definitions (docs/load-testing.md):
- a phase's ops are the load ops *invoked* in ``[t_start, t_end)``; ``achieved_rps`` = those that
  completed / phase length, ``ok_rps`` = the ok ones / phase length, ``error_rate`` = (fail + info) /
  completed; latency percentiles are nearest-rank over the ok ops' raw latencies (no buckets), so
  p50 ≤ p95 ≤ p99 ≤ max always holds;
- ``offered_rps`` is what the load shape offered on average over the phase (users × per-user rate);
- the **knee** of a step load is the first step where achieved < ``achieved_ratio`` × offered, the
  error rate exceeds ``max_error_rate``, or p99 exceeds ``p99_factor`` × the first step's p99 (and by
  more than ``p99_floor_ms``); ``max_throughput_rps`` is the highest ok rate of any phase.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.checkers.latency import nearest_rank, summarize
from harness.checkers.ops import completed_op_ids
from harness.history import History, Op

LOAD_PROCESS_PREFIX = "load-"  # the history processes of the generator's samples (harness.load.samples)
PHASE_LOG = "load-phase"
RUN_LOG = "load-run"
CPU_SAMPLE = "generator-cpu"
SAMPLES_LOG = "load-samples"
CPU_SATURATED = 90.0  # locust's own CPU_WARNING_THRESHOLD (percent of one core)


@dataclass(frozen=True)
class Phase:
    """A named stretch of the history clock with the rate the shape offered during it."""

    name: str
    t_start: float
    t_end: float
    offered_rps: float | None = None
    kind: str = "phase"  # "stage" (a step of the load shape) or "phase" (a scenario phase)

    @property
    def duration_s(self) -> float:
        return max(0.0, self.t_end - self.t_start)


@dataclass
class PhaseStats:
    name: str
    kind: str
    t_start: float
    t_end: float
    duration_s: float
    offered_rps: float | None
    achieved_rps: float
    ok_rps: float
    count: int
    ok: int
    fail: int
    info: int
    error_rate: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    ops: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def achieved_ratio(self) -> float | None:
        if not self.offered_rps:
            return None
        return self.achieved_rps / self.offered_rps

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["achieved_ratio"] = None if self.achieved_ratio is None else round(self.achieved_ratio, 4)
        for k in ("t_start", "t_end", "duration_s", "achieved_rps", "ok_rps"):
            d[k] = round(d[k], 3)
        if d["offered_rps"] is not None:
            d["offered_rps"] = round(d["offered_rps"], 3)
        if d["error_rate"] is not None:
            d["error_rate"] = round(d["error_rate"], 6)
        return d


def load_ops(history: History) -> list[Op]:
    """Completed ops of the load generator's processes (``load-*``), in invocation order."""
    done = completed_op_ids(history)
    return [o for o in history.ops(process_prefix=LOAD_PROCESS_PREFIX) if o.op_id in done]


def phases_from_history(history: History) -> list[Phase]:
    out = []
    for ev in history.events:
        if ev.type == "log" and ev.f == PHASE_LOG and isinstance(ev.value, dict):
            v = ev.value
            out.append(Phase(str(v["name"]), float(v["t_start"]), float(v["t_end"]),
                             None if v.get("offered_rps") is None else float(v["offered_rps"]),
                             str(v.get("kind", "phase"))))
    out.sort(key=lambda p: p.t_start)
    return out


def phase_stats(ops: Sequence[Op], phase: Phase) -> PhaseStats:
    inside = [o for o in ops if phase.t_start <= o.t_invoke < phase.t_end]
    dur = phase.duration_s or float("nan")
    ok_ms = [o.latency_s * 1000.0 for o in inside if o.type == "ok"]
    n_fail = sum(1 for o in inside if o.type == "fail")
    n_info = sum(1 for o in inside if o.type == "info")
    summ = summarize(ok_ms, n_fail + n_info)
    by_f: dict[str, list[Op]] = defaultdict(list)
    for o in inside:
        by_f[o.f].append(o)
    per_op = {f: summarize([o.latency_s * 1000.0 for o in os_ if o.type == "ok"],
                           sum(1 for o in os_ if o.type != "ok")) for f, os_ in sorted(by_f.items())}
    return PhaseStats(
        name=phase.name, kind=phase.kind, t_start=phase.t_start, t_end=phase.t_end, duration_s=phase.duration_s,
        offered_rps=phase.offered_rps,
        achieved_rps=len(inside) / dur if phase.duration_s else 0.0,
        ok_rps=len(ok_ms) / dur if phase.duration_s else 0.0,
        count=len(inside), ok=len(ok_ms), fail=n_fail, info=n_info,
        error_rate=(n_fail + n_info) / len(inside) if inside else None,
        p50=summ["p50"], p95=summ["p95"], p99=summ["p99"], max=summ["max"], ops=per_op,
    )


@dataclass(frozen=True)
class Bucket:
    t: float  # bucket start on the history clock
    ok: int
    errors: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


def time_series(ops: Iterable[Op], bucket_s: float = 1.0) -> list[Bucket]:
    """Per ``bucket_s`` of invocation time: ok and error counts and the ok ops' exact percentiles."""
    ok: dict[int, list[float]] = defaultdict(list)
    err: dict[int, int] = defaultdict(int)
    for o in ops:
        k = int(o.t_invoke // bucket_s)
        if o.type == "ok":
            ok[k].append(o.latency_s * 1000.0)
        else:
            err[k] += 1
    out = []
    for k in sorted(set(ok) | set(err)):
        xs = sorted(ok.get(k, []))
        out.append(Bucket(k * bucket_s, len(xs), err.get(k, 0),
                          nearest_rank(xs, 50) if xs else None, nearest_rank(xs, 95) if xs else None,
                          nearest_rank(xs, 99) if xs else None, xs[-1] if xs else None))
    return out


@dataclass(frozen=True)
class KneeParams:
    achieved_ratio: float = 0.9
    max_error_rate: float = 0.01
    p99_factor: float = 4.0
    p99_floor_ms: float = 100.0


def find_knee(stages: Sequence[PhaseStats], params: KneeParams | None = None) -> dict[str, Any]:
    """The first stage of a step load where the stack stopped keeping up (see module docstring).

    ``{"found", "offered_rps", "stage", "reason", "last_good_rps", "params"}``; ``found`` False means
    every step was served ("knee above the highest offered rate")."""
    p = params or KneeParams()
    base_p99 = next((s.p99 for s in stages if s.p99 is not None), None)
    last_good: float | None = None
    for s in stages:
        reasons = []
        if s.offered_rps and s.achieved_rps < p.achieved_ratio * s.offered_rps:
            reasons.append(f"achieved {s.achieved_rps:.0f} < {p.achieved_ratio:g} × offered {s.offered_rps:.0f} req/s")
        if s.error_rate is not None and s.error_rate > p.max_error_rate:
            reasons.append(f"error rate {s.error_rate:.1%} > {p.max_error_rate:.1%}")
        if (base_p99 is not None and s.p99 is not None and s.p99 > p.p99_factor * base_p99
                and s.p99 - base_p99 > p.p99_floor_ms):
            reasons.append(f"p99 {s.p99:.0f} ms > {p.p99_factor:g} × first step's {base_p99:.0f} ms")
        if reasons:
            return {"found": True, "offered_rps": s.offered_rps, "stage": s.name, "reason": "; ".join(reasons),
                    "last_good_rps": last_good, "params": asdict(p)}
        last_good = s.offered_rps
    return {"found": False, "offered_rps": None, "stage": None,
            "reason": f"every step was served (up to {last_good or 0:.0f} req/s offered)",
            "last_good_rps": last_good, "params": asdict(p)}


def generator_cpu(history: History) -> dict[str, Any]:
    """Peak CPU per generator process (percent of one core, locust's own measurement) and whether any
    process reached locust's saturation threshold or fired its ``cpu_warning``."""
    peak: dict[str, float] = {}
    warnings: list[dict[str, Any]] = []
    for ev in history.samples(CPU_SAMPLE):
        v = ev.value if isinstance(ev.value, dict) else {}
        proc = str(v.get("process", "?"))
        cpu = v.get("cpu")
        if v.get("event") == "cpu_warning":
            warnings.append({"t": round(ev.t, 3), "process": proc, "cpu": cpu})
        if isinstance(cpu, int | float):
            peak[proc] = max(peak.get(proc, 0.0), float(cpu))
    saturated = sorted(p for p, c in peak.items() if c >= CPU_SATURATED) or sorted({w["process"] for w in warnings})
    return {"peak_cpu": {k: round(v, 1) for k, v in sorted(peak.items())}, "saturated": saturated,
            "cpu_warnings": warnings, "threshold": CPU_SATURATED, "readings": len(history.samples(CPU_SAMPLE))}


def samples_completeness(history: History) -> list[dict[str, Any]]:
    """The driver's per-run record of what each generator process wrote vs what it said it wrote."""
    return [dict(ev.value) for ev in history.events
            if ev.type == "log" and ev.f == SAMPLES_LOG and isinstance(ev.value, dict)]


@dataclass
class LoadAnalysis:
    phases: list[PhaseStats]
    knee: dict[str, Any] | None
    generator: dict[str, Any]
    completeness: list[dict[str, Any]]
    total: PhaseStats | None
    runs: list[dict[str, Any]]
    series: list[Bucket] = field(default_factory=list)

    def phase(self, name: str) -> PhaseStats | None:
        return next((p for p in self.phases if p.name == name), None)

    @property
    def max_throughput_rps(self) -> float | None:
        return max((p.ok_rps for p in self.phases), default=None)

    def warnings(self) -> list[str]:
        out = []
        sat = self.generator.get("saturated") or []
        if sat:
            peaks = self.generator.get("peak_cpu", {})
            out.append("generator CPU saturated (≥ {:.0f}% of a core, locust's cpu_warning threshold) in {}: "
                       "throughput and latency may be the generator's, not the stack's; add workers or "
                       "generator machines".format(
                           self.generator.get("threshold", CPU_SATURATED),
                           ", ".join(f"{p} {peaks.get(p, '?')}%" for p in sat)))
        for c in self.completeness:
            if c.get("problem"):
                out.append(f"load samples incomplete: {c['problem']}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """What goes into run.json (``extra["load"]``): no per-second series (the plots show it)."""
        return {
            "phases": [p.to_dict() for p in self.phases],
            "total": None if self.total is None else self.total.to_dict(),
            "knee": self.knee,
            "max_throughput_rps": None if self.max_throughput_rps is None else round(self.max_throughput_rps, 3),
            "generator": self.generator,
            "samples": self.completeness,
            "runs": self.runs,
            "warnings": self.warnings(),
        }


def analyze(history: History, knee: KneeParams | None = None, bucket_s: float = 1.0) -> LoadAnalysis:
    ops = load_ops(history)
    phases = phases_from_history(history)
    stats = [phase_stats(ops, p) for p in phases]
    stages = [s for s in stats if s.kind == "stage"]
    total = None
    if ops:
        t0, t1 = ops[0].t_invoke, max(o.t_invoke for o in ops)
        total = phase_stats(ops, Phase("total", t0, t1 + 1e-9, None, "total"))
    runs = [dict(ev.value) for ev in history.events
            if ev.type == "log" and ev.f == RUN_LOG and isinstance(ev.value, dict)]
    return LoadAnalysis(phases=stats, knee=find_knee(stages, knee) if len(stages) > 1 else None,
                        generator=generator_cpu(history), completeness=samples_completeness(history),
                        total=total, runs=runs, series=time_series(ops, bucket_s))
