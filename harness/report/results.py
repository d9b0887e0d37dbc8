"""The per-scenario record that run.json is made of (schema ``goverse-harness/run/v1``), and how a
scenario writes it.

Why a dataclass with its own JSON file per scenario: scenarios may run in parallel pytest-xdist
workers, so each writes ``<run>/<scenario>/result.json`` alone and the run-level files are assembled
afterwards (:func:`harness.report.finalize.finalize`) — no two processes ever write the same file.

Scenario entry (run.json ``scenarios[i]``)::

    {"id", "verdict": "pass|fail|unknown|skipped", "reason",
     "faults": [{"id", "kind", "target", "injected_at", "healed_at", "injected_at_utc", "healed_at_utc",
                 "status", "rto_s", "recovery_after_heal_s"}],
     "rto_s", "unavailability_s", "recovery_after_heal_s",
     "latency": {phase: {op: {"count", "errors", "p50", "p95", "p99", "max"}}},   # ms
     "checks": [{"name", "verdict", "detail"}],
     "extra": {...},            # other measurements: recovered, availability, rpo_s, time_to_ready_s...
     "duration_s", "plots": ["availability.png", ...], "history": "history.jsonl", "dir": "<scenario dir>"}

``injected_at``/``healed_at`` are seconds on the scenario's history clock (the plots' x axis); the
``*_utc`` twins are wall-clock ISO 8601 for matching against logs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.checkers.availability import MeasureParams
from harness.checkers.measure import Measurements
from harness.checkers.verdict import CheckResult, Verdict, merge_verdicts
from harness.history import History
from harness.report.files import CHECKS_FILE, HISTORY_FILE, RESULT_FILE, write_json

RUN_SCHEMA = "goverse-harness/run/v1"
SCENARIO_VERDICTS = ("pass", "fail", "unknown", "not-applicable", "skipped")


def iso_utc(wall: float | None) -> str | None:
    if wall is None:
        return None
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class ScenarioResult:
    """What one scenario concluded, with the numbers behind it."""

    id: str
    verdict: str
    reason: str = ""
    faults: list[dict[str, Any]] = field(default_factory=list)
    rto_s: float | None = None
    unavailability_s: float | None = None
    recovery_after_heal_s: float | None = None
    latency: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    duration_s: float | None = None
    plots: list[str] = field(default_factory=list)
    history: str | None = None
    dir: str | None = None

    def __post_init__(self) -> None:
        if self.verdict not in SCENARIO_VERDICTS:
            raise ValueError(f"verdict must be one of {SCENARIO_VERDICTS}, got {self.verdict!r}")

    @classmethod
    def from_check(cls, scenario_id: str, result: CheckResult | None, measurements: Measurements | None = None,
                   history: History | None = None, reason: str | None = None, verdict: str | None = None,
                   extra: dict[str, Any] | None = None, duration_s: float | None = None) -> ScenarioResult:
        """The usual way to build one: verdict and reason from the checks, numbers from ``measure``.

        ``result`` is ``None`` when the scenario never concluded (it raised or was skipped); then
        ``verdict`` must say what happened (default ``unknown``) and ``reason`` why. An explicit
        ``verdict``/``reason`` overrides what the checks say (e.g. the plugin saw the test fail)."""
        m = measurements
        more: dict[str, Any] = {}
        if m is not None:
            more = {"recovered": m.recovered, "availability": m.availability, "succeeded": m.succeeded,
                    "availability_min": m.availability_min, "probe_count": m.probe_count,
                    "throughput_ops_s": m.throughput_ops_s, "measure_params": dataclasses.asdict(m.params)}
        if verdict is None:
            verdict = str(result.verdict) if result is not None else "unknown"
        if reason is None:
            reason = "" if result is None or result.passed else result.reason()
        return cls(
            id=scenario_id,
            verdict=verdict,
            reason=reason,
            faults=fault_records(history, m) if history is not None else [],
            rto_s=m.rto_s if m else None,
            unavailability_s=m.unavailability_s if m else None,
            recovery_after_heal_s=m.recovery_after_heal_s if m else None,
            latency=m.latency if m else {},
            checks=[{"name": c.name, "verdict": str(c.verdict), "detail": c.detail}
                    for c in (result.checks if result is not None else ())],
            extra={**more, **(extra or {})},
            duration_s=duration_s,
        )

    @classmethod
    def skipped(cls, scenario_id: str, reason: str, duration_s: float | None = None) -> ScenarioResult:
        """A scenario the platform could not run (``Unsupported``): the reason is part of the report."""
        return cls(id=scenario_id, verdict="skipped", reason=reason, duration_s=duration_s)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScenarioResult:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = {k: v for k, v in d.items() if k not in names}
        known = {k: v for k, v in d.items() if k in names}
        obj = cls(**known)
        if unknown:  # newer writers may add fields: keep them under extra rather than drop them
            obj.extra = {**obj.extra, **{f"_{k}": v for k, v in unknown.items()}}
        return obj


def fault_records(history: History, measurements: Measurements | None = None) -> list[dict[str, Any]]:
    """One record per nemesis window, with its per-fault measurements when available."""
    per = {f.id: f for f in measurements.faults} if measurements else {}
    out = []
    for w in history.faults():
        rec: dict[str, Any] = {
            "id": w.id,
            "kind": w.kind,
            "target": w.target,
            "injected_at": round(w.t_start, 6),
            "healed_at": None if w.t_stop is None else round(w.t_stop, 6),
            "injected_at_utc": iso_utc(history.t0_wall + w.t_start) if history.t0_wall else None,
            "healed_at_utc": (iso_utc(history.t0_wall + w.t_stop)
                              if history.t0_wall and w.t_stop is not None else None),
        }
        fm = per.get(w.id)
        if fm is not None:
            rec.update(status=fm.status, rto_s=fm.rto_s, recovery_after_heal_s=fm.recovery_after_heal_s,
                       unavailability_s=fm.unavailability_s)
        out.append(rec)
    return out


def scenario_p99(s: dict[str, Any]) -> float | None:
    """The headline latency of a scenario: p99 over every ok client op (phase ``all``, op ``*``)."""
    return ((s.get("latency") or {}).get("all") or {}).get("*", {}).get("p99")


def overall_verdict(verdicts: list[str]) -> str:
    """The checkers' merge rule (fail > unknown > pass) over the scenarios that decided something;
    skipped and not-applicable scenarios fail nothing: only those → ``skipped``; none → ``unknown``."""
    if not verdicts:
        return "unknown"
    decided = [v for v in verdicts if v not in ("skipped", str(Verdict.NOT_APPLICABLE))]
    if not decided:
        return "skipped"
    return str(merge_verdicts(decided))


def write_scenario_result(scenario_dir: Path, result: ScenarioResult, history: History | None = None,
                          checks: CheckResult | None = None, params: MeasureParams | None = None,
                          plots: bool = True, measurements: Measurements | None = None) -> Path:
    """Write one scenario's files: history.jsonl, checks.json (full check data), the PNG plots and,
    last, result.json (its presence marks the scenario as complete for ``finalize``). Returns the path
    of result.json."""
    scenario_dir = Path(scenario_dir)
    scenario_dir.mkdir(parents=True, exist_ok=True)
    if history is not None:
        history.dump(scenario_dir / HISTORY_FILE)
        result.history = HISTORY_FILE
        if plots:
            from harness.report.plots import write_plots  # matplotlib is imported only when plotting

            result.plots = write_plots(scenario_dir, history, params, measurements)
    # every check with all its data (result.json keeps name/verdict/detail only); [] when none ran
    write_json(scenario_dir / CHECKS_FILE, checks.to_list() if checks is not None else [])
    result.dir = scenario_dir.name
    path = scenario_dir / RESULT_FILE
    write_json(path, result.to_dict())
    return path


def is_starved(s: Mapping[str, Any]) -> bool:
    """A scenario that is unknown because the harness was starved (its ``extra.starved``, written by
    ``Scenario.conclude``; docs/definitions.md). Such a scenario does not fail the run unless
    ``strict_unknown`` is set."""
    return s.get("verdict") == "unknown" and bool((s.get("extra") or {}).get("starved"))
