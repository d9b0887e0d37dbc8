"""Quantitative budgets A(x), R(t), H(t), E(t): a miss is a failed verdict with the numbers in it.

Like kube-burner thresholds, each budget checker names the measured value, the budget and the fault
it belongs to, so ``CheckResult.explain()`` can be pasted into a bug report as is. The numbers come
from :mod:`harness.checkers.measure`, the same code that fills run.json.

``Check.data`` shapes:
- availability_at_least: ``{"availability": x, "min_window": x, "probes": n, "failed": n, "required": x}``
- rto / recovery_after_heal: ``{"budget_s": s, "faults": [FaultMeasurement as dict]}``
- error_window: ``{"budget_s": s, "max_s": s, "windows": [{fault, key, first_t, last_t, window_s, errors, bursts}]}``
- failures_only_on: ``{"allowed_keys": n, "outside": [{key, op_id, t, type}]}``
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection
from typing import Any

from harness.checkers.availability import MeasureParams, availability_series, min_availability, probe_samples
from harness.checkers.measure import FaultMeasurement, measure_faults
from harness.checkers.ops import FINAL_FS, fmt_t
from harness.checkers.verdict import Check, Checker, Verdict, checker_factory, decide, examples, named
from harness.history import History, Op

KeySelector = Collection[str] | Callable[[str], bool]


def _fault_label(f: FaultMeasurement) -> str:
    target = f" {f.target}" if f.target not in (None, "", [], {}) else ""
    return f"{f.kind}{target} ({f.id}) injected at {f.t_inject:.2f}s"


def _fault_dicts(faults: tuple[FaultMeasurement, ...]) -> list[dict[str, Any]]:
    return [f.to_dict() for f in faults]


@checker_factory
def availability_at_least(x: float, params: MeasureParams | None = None) -> Checker:
    """A(x): probes that succeeded within the SLO / completed probes over the whole scenario ≥ x (x as a
    fraction, 0.99 = 99%)."""
    name = "availability_at_least"

    def run(history: History) -> Check:
        p = MeasureParams.for_history(history, params)
        samples = probe_samples(history, p)
        if not samples:
            return Check(name, Verdict.UNKNOWN, "no probe ops recorded: availability unknown", {"required": x})
        ok = sum(s.ok for s in samples)
        succeeded = sum(bool(s.ok if s.succeeded is None else s.succeeded) for s in samples)
        a = ok / len(samples)
        worst = min_availability(availability_series(history, p))
        data = {"availability": round(a, 6), "succeeded": round(succeeded / len(samples), 6),
                "min_window": worst, "probes": len(samples), "failed": len(samples) - succeeded,
                "slow": succeeded - ok, "slo_ms": p.slo_ms, "required": x}
        worst_txt = "" if worst is None else f"; worst {p.window_s:g}s window {worst:.0%}"
        text = (f"availability {a:.2%} (succeeded within {p.slo_ms:g} ms) over {len(samples)} probes "
                f"({len(samples) - succeeded} failed, {succeeded - ok} slower than the SLO){worst_txt}")
        if a < x:
            return Check(name, Verdict.FAIL, f"{text} < required {x:.2%}", data)
        return Check(name, Verdict.PASS, f"{text} ≥ required {x:.2%}", data)

    return named(name, run)


@checker_factory
def rto(budget_s: float, params: MeasureParams | None = None) -> Checker:
    """R(t): every fault's RTO ≤ ``budget_s``; never recovered fails, no probe data is unknown."""
    name = "rto"

    def run(history: History) -> Check:
        faults = measure_faults(history, params)
        data = {"budget_s": budget_s, "faults": _fault_dicts(faults)}
        if not faults:
            return Check(name, Verdict.UNKNOWN, "no fault was injected: RTO is undefined", data)
        fails, unknown, oks = [], [], []
        for f in faults:
            if f.status == "never-recovered":
                fails.append(f"RTO > {history.end - f.t_inject:.1f}s (budget {budget_s:g}s): never recovered after "
                             f"{_fault_label(f)} (first dip {fmt_t(f.t_dip)}; no W-second stretch of probes "
                             f"all served within the SLO before the end of the history)")
            elif f.status == "no-data":
                unknown.append(f"no probe data covering {_fault_label(f)}")
            elif f.rto_s is not None and f.rto_s > budget_s:
                fails.append(f"RTO {f.rto_s:.2f}s > budget {budget_s:g}s after {_fault_label(f)} "
                             f"(first dip {fmt_t(f.t_dip)}, recovered {fmt_t(f.t_recovered)})")
            else:
                oks.append(f"RTO {f.rto_s:.2f}s ≤ {budget_s:g}s after {_fault_label(f)}")
        return _per_fault(name, data, fails, unknown, oks)

    return named(name, run)


def last_overlapping_heal(f: FaultMeasurement, faults: Collection[FaultMeasurement]) -> float | None:
    """The latest heal among the faults active at some moment between ``f``'s injection and its
    recovery (``f`` included): while any of them held, the stack could not be expected to recover."""
    end = f.t_recovered if f.t_recovered is not None else float("inf")
    heals = [g.t_heal for g in faults if g.t_heal is not None and g.t_inject <= end and g.t_heal >= f.t_inject]
    return max(heals, default=f.t_heal)


@checker_factory
def recovery_after_heal(budget_s: float, params: MeasureParams | None = None, composed: bool = False) -> Checker:
    """H(t): for every healed fault, max(0, t_recovered − t_heal) ≤ ``budget_s``. ``composed`` (the
    explorer's overlapping schedules): counted from the last heal of the faults that overlapped the
    outage (:func:`last_overlapping_heal`) — a dip is attributed to the fault injected before it, and a
    later fault that held the stack down would otherwise be charged to the first one's recovery."""
    name = "recovery_after_heal"

    def run(history: History) -> Check:
        measured = measure_faults(history, params)
        faults = [f for f in measured if f.t_heal is not None]
        data = {"budget_s": budget_s, "faults": _fault_dicts(tuple(faults)), "composed": composed}
        if not faults:
            return Check(name, Verdict.UNKNOWN, "no healed fault: recovery after heal is undefined", data)
        fails, unknown, oks = [], [], []
        for f in faults:
            label = f"{_fault_label(f)}, healed at {fmt_t(f.t_heal)}"
            value = f.recovery_after_heal_s
            ref = last_overlapping_heal(f, measured) if composed else None
            rec, healed = f.t_recovered, f.t_heal
            if value is not None and ref is not None and rec is not None and healed is not None and ref > healed:
                value = round(max(0.0, rec - ref), 6)
                label += f"; the last overlapping fault healed at {fmt_t(ref)}"
            if f.status == "never-recovered":
                fails.append(f"never recovered after {label}")
            elif f.status == "no-data" or value is None:
                unknown.append(f"no probe data covering {label}")
            elif value > budget_s:
                fails.append(f"recovered {value:.2f}s after the heal > budget {budget_s:g}s ({label})")
            else:
                clamp = " (recovered before the heal; clamped to 0)" if f.recovered_before_heal else ""
                oks.append(f"recovered {value:.2f}s after the heal ≤ {budget_s:g}s{clamp} ({label})")
        return _per_fault(name, data, fails, unknown, oks)

    return named(name, run)


def _per_fault(name: str, data: dict[str, Any], fails: list[str], unknown: list[str], oks: list[str]) -> Check:
    """The per-fault budgets' tail: any fault over budget fails, else any unmeasured one is unknown, else pass."""
    return decide(name, data, failed=examples(fails) if fails else None,
                  unknown=examples(unknown) if unknown else None, passed=examples(oks))


def _selector(keys: KeySelector | None) -> Callable[[str], bool]:
    if keys is None:
        return lambda _k: True
    if callable(keys):
        return keys
    allowed = frozenset(keys)
    return allowed.__contains__


def _error_ops(history: History) -> list[Op]:
    return [o for o in history.ops() if o.type != "ok" and o.key is not None and o.f not in FINAL_FS]


def _bursts(ops: list[Op]) -> list[list[float]]:
    """Split one key's ops (by invocation time) into error bursts: runs of failed/info ops that no
    successful op on the key interrupts. Each burst is the list of its errors' invocation times."""
    bursts: list[list[float]] = []
    current: list[float] = []
    for o in sorted(ops, key=lambda o: o.t_invoke):
        if o.type == "ok":
            if current:
                bursts.append(current)
                current = []
        else:
            current.append(o.t_invoke)
    if current:
        bursts.append(current)
    return bursts


@checker_factory
def error_window(budget_s: float, keys: KeySelector | None = None) -> Checker:
    """E(t): per fault and key, the longest error burst ≤ budget — (last − first) invocation time of
    failed/info ops after t_inject that no successful op on the key interrupts.

    Why bursts and not first-to-last error: a restart or a scale step disturbs a key twice — when its
    shard leaves a node and when it comes back seconds later — with the key served in between. What a
    client feels is each stretch of failures, not the quiet time between them. A fault's ops are those
    invoked in [t_inject, next t_inject); ``keys`` (a collection or a predicate) restricts the keys
    judged, e.g. the migrating keys of a scale step."""
    name = "error_window"
    wanted = _selector(keys)

    def run(history: History) -> Check:
        faults = sorted(history.faults(), key=lambda f: f.t_start)
        if not faults:
            return Check(name, Verdict.UNKNOWN, "no fault was injected: error window is undefined",
                         {"budget_s": budget_s})
        after = [o for o in history.ops() if o.t_invoke >= faults[0].t_start and o.key is not None
                 and wanted(o.key) and o.f not in FINAL_FS]
        windows: list[dict[str, Any]] = []
        for i, f in enumerate(faults):
            until = faults[i + 1].t_start if i + 1 < len(faults) else float("inf")
            per_key: dict[str, list[Op]] = defaultdict(list)
            for o in after:
                if f.t_start <= o.t_invoke < until:
                    per_key[o.key or ""].append(o)
            for key, ops in per_key.items():
                bursts = _bursts(ops)
                if not bursts:
                    continue
                ts = max(bursts, key=lambda b: (b[-1] - b[0], len(b)))
                windows.append({"fault": f.id, "key": key, "first_t": round(ts[0], 6),
                                "last_t": round(ts[-1], 6), "window_s": round(ts[-1] - ts[0], 6),
                                "errors": len(ts), "bursts": len(bursts)})
        windows.sort(key=lambda w: -w["window_s"])
        worst = windows[0]["window_s"] if windows else 0.0
        data = {"budget_s": budget_s, "max_s": worst, "windows": windows}
        if not after:
            return Check(name, Verdict.UNKNOWN, "no client op on the judged keys after the injection", data)
        if worst > budget_s:
            over = [f"key {w['key']}: {w['window_s']:.2f}s ({w['errors']} errors from {w['first_t']:.2f}s to "
                    f"{w['last_t']:.2f}s with no success between, {w['fault']})"
                    for w in windows if w["window_s"] > budget_s]
            return Check(name, Verdict.FAIL, f"error window {worst:.2f}s > budget {budget_s:g}s on "
                         f"{len(over)} keys: {examples(over)}", data)
        keys_hit = len({w["key"] for w in windows})
        return Check(name, Verdict.PASS, f"longest error burst {worst:.2f}s ≤ {budget_s:g}s "
                     f"({keys_hit} keys saw errors)", data)

    return named(name, run)


@checker_factory
def failures_only_on(keys: KeySelector) -> Checker:
    """Failed/info ops after the first injection only on the allowed keys (e.g. one node's keys)."""
    name = "failures_only_on"
    allowed = _selector(keys)

    def run(history: History) -> Check:
        faults = history.faults()
        if not faults:
            return Check(name, Verdict.UNKNOWN, "no fault was injected", {})
        t0 = min(f.t_start for f in faults)
        outside = [{"key": o.key, "op_id": o.op_id, "t": round(o.t_invoke, 6), "type": o.type}
                   for o in _error_ops(history) if o.t_invoke >= t0 and not allowed(o.key or "")]
        data = {"outside": outside}
        if outside:
            keys_out = sorted({str(o["key"]) for o in outside})
            return Check(name, Verdict.FAIL, f"{len(outside)} failed ops on {len(keys_out)} keys outside the "
                         f"affected set: {examples(keys_out)}", data)
        return Check(name, Verdict.PASS, "every failed op after the injection was on an affected key", data)

    return named(name, run)
