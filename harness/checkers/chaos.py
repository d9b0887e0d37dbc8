"""Checkers of the chaos scenarios: the stored state against what was acknowledged, writes recovering
after a heal, and evidence that a fault really bit (a fault that did not bite makes every invariant pass
vacuously, so each chaos scenario also checks, from the history, that its fault had its effect).

Why in the library now: they read only the history (samples ``persisted``, the nemesis events, ops),
so they are pure like every other checker and unit-tested on crafted histories
(tests/checkers/test_checkers_chaos.py). The scenario-side helpers that record the samples they read
stay in scenarios/chaos_checks.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from harness.capabilities import Capabilities, stored_state_reason
from harness.checkers.bounds import increment_bounds
from harness.checkers.latency import nearest_rank, phase_of
from harness.checkers.ops import FINAL_FS, as_int
from harness.checkers.verdict import Check, Checker, Verdict, decide, examples
from harness.faults.outcomes import CutEvidence, PartitionDetail, PartitionStopped, Verification
from harness.history import History

PERSISTED_F = "persisted"  # the sample scenarios/chaos_checks.record_persisted writes


def persisted_not_behind(history: History) -> Check:
    """L on the stored state: after the run, PostgreSQL holds, per key, at least the acknowledged sum of
    increments and at most that plus the indeterminate ones. Less means acknowledged writes live only
    in a node's memory — or were overwritten by a stale node — and the next reload loses them.

    Not applicable when the stack declares (history meta, harness.capabilities) a periodic save longer
    than a scenario waits (the rule: ``capabilities.stored_state_reason``): its stored state lags by
    design. A stack that persists before acknowledging, or often enough, with no sample is unknown."""
    name = "persisted_not_behind"
    caps = Capabilities.from_meta(history.meta)
    skip = stored_state_reason(caps) if caps is not None else None
    if caps is not None and skip is not None:
        return Check(name, Verdict.NOT_APPLICABLE, skip,
                     {"capability": "persistence_interval_s", "persistence_interval_s": caps.persistence_interval_s})
    samples = [s.value for s in history.samples(PERSISTED_F) if isinstance(s.value, dict)]
    if not samples or "values" not in samples[-1]:
        why = (samples[-1].get("error") or samples[-1].get("not_applicable") or "a sample without values"
               if samples else "no sample of the stored state")
        return Check(name, Verdict.UNKNOWN, f"stored state unknown: {why}", {})
    keys, stored = samples[-1]["keys"], samples[-1]["values"]
    every = increment_bounds(history, keys=keys)
    bounds = {k: every[k] for k in keys}
    behind, ahead = [], []
    for k, b in bounds.items():
        v = as_int(stored.get(k))
        v = 0 if v is None else v
        if v < b.lo:
            behind.append(f"key {k}: stored {v} < acknowledged {b.lo}")
        elif v > b.hi:
            ahead.append(f"key {k}: stored {v} > acknowledged {b.lo} + indeterminate {b.hi - b.lo}")
    data = {"keys": len(keys), "behind": behind, "ahead": ahead}
    return decide(name, data,
                  failed=(f"{len(behind)} of {len(keys)} keys are stored behind what was acknowledged, "
                          f"{len(ahead)} ahead of anything written: {examples(behind + ahead)}")
                  if behind or ahead else None,
                  unknown=None if any(b.lo for b in bounds.values())
                  else "no increment was acknowledged on the sampled keys",
                  passed=f"all {len(keys)} keys: acknowledged ≤ stored ≤ acknowledged + indeterminate")


def writes_recover_after_heal(budget_s: float) -> Callable[[History], Check]:
    """H for writes: after the last heal, the last failed or timed-out write (increment, deposit) was
    invoked within ``budget_s`` of the heal and writes succeeded after it. Why besides the probe's H:
    the probe only reads, and a node cut from PostgreSQL keeps answering reads of its in-memory
    objects; it is the writes that must recover."""
    name = "writes_recover_after_heal"

    def run(history: History) -> Check:
        heals = [f.t_stop for f in history.faults() if f.t_stop is not None]
        if not heals:
            return Check(name, Verdict.UNKNOWN, "no healed fault", {"budget_s": budget_s})
        t_heal = max(heals)
        writes = [o for o in history.ops(("increment", "deposit")) if o.t_invoke >= t_heal]
        failed = [o for o in writes if o.type != "ok"]
        last_fail = max((o.t_invoke for o in failed), default=t_heal)
        ok_after = [o for o in writes if o.type == "ok" and o.t_invoke > last_fail]
        data = {"budget_s": budget_s, "writes_after_heal": len(writes), "failed_after_heal": len(failed),
                "last_failure_after_heal_s": round(last_fail - t_heal, 3)}
        if not ok_after:
            return Check(name, Verdict.UNKNOWN if not writes else Verdict.FAIL,
                         f"no write succeeded after the heal (and its last failure, {len(failed)} failed)", data)
        if last_fail - t_heal > budget_s:
            worst = max(failed, key=lambda o: o.t_invoke)
            return Check(name, Verdict.FAIL, f"writes still failed {last_fail - t_heal:.2f}s after the heal > "
                         f"budget {budget_s:g}s (last: key {worst.key}: {worst.error})", data)
        return Check(name, Verdict.PASS, f"writes recovered {last_fail - t_heal:.2f}s after the heal ≤ {budget_s:g}s "
                     f"({len(failed)} of {len(writes)} writes after the heal failed)", data)
    return run


def fault_results(history: History, kind: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(start params, heal result) of every fault of ``kind``, from the nemesis events."""
    starts: dict[str, dict[str, Any]] = {}
    out = []
    for e in history.events:
        if e.type != "nemesis" or not isinstance(e.value, dict) or e.value.get("kind") != kind:
            continue
        if e.f == "start":
            starts[str(e.value.get("id"))] = dict(e.value.get("params") or {})
        elif e.f == "stop":
            out.append((starts.get(str(e.value.get("id")), {}), dict(e.value.get("result") or {})))
    return out


def evidence(name: str, kind: str, judge: Callable[[dict[str, Any], dict[str, Any]], tuple[bool, str]]) -> Checker:
    """A checker that passes when ``judge(start params, heal result)`` says the fault bit."""
    def run(history: History) -> Check:
        found = fault_results(history, kind)
        if not found:
            return Check(name, Verdict.UNKNOWN, f"no healed {kind} fault in the history", {})
        verdicts = [judge(p, r) for p, r in found]
        data = {"faults": [{"params": p, "result": r} for p, r in found]}
        bad = [why for ok, why in verdicts if not ok]
        if bad:
            return Check(name, Verdict.FAIL, f"the fault did not bite: {examples(bad)}", data)
        return Check(name, Verdict.PASS, examples([why for _, why in verdicts]), data)
    return run


def latency_shift(f: str, keys: set[str] | None, min_shift_ms: float) -> Checker:
    """The fault's latency shows: the median latency of ok ``f`` ops (on ``keys``, or all) in the
    "during" phase is at least ``min_shift_ms`` above the "before" phase.

    Calls to a key invoked before its first ok answer are left out: they activate the object (load it
    from storage, register it), which costs Goverse several hundred milliseconds per wallet and would
    make a short baseline measure activation rather than the steady latency the fault shifts."""
    name = f"latency_shift_{f}"

    def run(history: History) -> Check:
        faults = history.faults()
        by_phase: dict[str, list[float]] = {"before": [], "during": []}
        first_ok: dict[str | None, float] = {}
        for o in history.ops(f):
            if o.type == "ok":
                first_ok[o.key] = min(first_ok.get(o.key, o.t_complete), o.t_complete)
        for o in history.ops(f):
            if o.type == "ok" and (keys is None or o.key in keys) and o.t_invoke > first_ok[o.key]:
                phase = phase_of(o.t_invoke, faults)
                if phase in by_phase:
                    by_phase[phase].append(o.latency_s * 1000.0)
        data: dict[str, float] = {ph: len(v) for ph, v in by_phase.items()}
        if not by_phase["before"] or not by_phase["during"]:
            return Check(name, Verdict.UNKNOWN, f"no ok {f} ops before and during the fault on the judged keys",
                         data)
        before = nearest_rank(sorted(by_phase["before"]), 50)
        during = nearest_rank(sorted(by_phase["during"]), 50)
        data.update(p50_before_ms=round(before, 3), p50_during_ms=round(during, 3), min_shift_ms=min_shift_ms)
        msg = f"{f} p50 {before:.1f} ms before → {during:.1f} ms during the fault (shift ≥ {min_shift_ms:g} ms wanted)"
        return Check(name, Verdict.PASS if during - before >= min_shift_ms else Verdict.FAIL, msg, data)
    return run


# ---- evidence the chaos scenarios' faults bit (moved from scenarios/test_chaos.py, test_partitions.py)
def partition_bit(clients_notice: bool) -> Checker:
    """Evidence the fault was real: the nemesis installed a non-empty grudge, a TCP connect across it
    timed out while it held, and — for cuts on the clients' path to an owner — client
    operations failed or timed out while it held (see ``Expect.clients_notice``)."""
    name = "partition_bit"

    def run(history: History) -> Check:
        found = fault_results(history, "partition")
        windows = [f for f in history.faults() if f.kind == "partition"]
        if not found or not windows:
            return Check(name, Verdict.UNKNOWN, "no healed partition in the history", {})
        # the records every platform's interpreter returns for a partition (harness/faults/outcomes.py)
        params, result = cast(PartitionDetail, found[0][0]), cast(PartitionStopped, found[0][1])
        w = windows[0]
        # evidence taken while the cut held (own timestamps); older histories kept it in the result itself
        vres: Verification = result.get("verification") or cast(Verification, result)
        grudge = params.get("grudge") or {}
        verified: CutEvidence = vres.get("verified_cut") or {}
        stop = w.t_stop if w.t_stop is not None else history.end
        hurt = [o for o in history.ops()
                if w.t_start <= o.t_invoke <= stop and o.type != "ok" and o.f not in FINAL_FS]
        data = {"grudge": grudge, "verified_cut": verified, "failed_ops_during": len(hurt)}
        cut = "; ".join(f"{h} drops {', '.join(d)}" for h, d in sorted(grudge.items()))
        if not grudge:
            return Check(name, Verdict.FAIL, "the partition installed no drop at all", data)
        if "verified_cut" in vres and (verified.get("dropped") is not True or vres.get("conclusive") is False):
            return Check(name, Verdict.FAIL, f"a connect across the cut was not dropped: {verified}", data)
        if clients_notice and not hurt:
            return Check(name, Verdict.FAIL, f"no client operation failed during the cut ({cut})", data)
        how = (f"connect {verified.get('from')} → {verified.get('to')} ({verified.get('addr')}) timed out"
               if verified else f"the cut was installed ({params.get('how', 'platform')}; this platform cannot "
               "verify it with a connect)")
        return Check(name, Verdict.PASS, f"{how}; {len(hurt)} client ops failed during the cut ({cut})", data)
    return run


def queued_at_paused_node(keys: set[str], stuck_floor_s: float) -> Checker:
    """Evidence: calls to the paused node's keys were in flight when it stopped (required when the
    pause was primed with a slow link to PostgreSQL) and more queued while it was stopped, and the
    gates gave up on them (a timeout or a cancellation, ``info``) — the requests the node finds when
    it resumes. "Stuck" means at least ``stuck_floor_s`` (harness.budgets.stuck_call_floor: what the
    stack's timers promise, not the reference stack's call timeout)."""
    name = "calls_queued_at_paused_node"
    floor = stuck_floor_s

    def run(history: History) -> Check:
        faults = history.faults()
        w = next((f for f in faults if f.kind == "pause"), None)
        if w is None or w.t_stop is None:
            return Check(name, Verdict.UNKNOWN, "no healed pause in the history", {})
        primed = any(f.kind == "latency" and f.t_start <= w.t_start <= (f.t_stop or history.end) for f in faults)
        stuck = [o for o in history.ops() if o.key in keys and o.type == "info" and o.t_invoke < w.t_stop
                 and o.t_complete > w.t_start and o.latency_s >= floor]
        before = [o for o in stuck if o.t_invoke <= w.t_start]
        data = {"timed_out": len(stuck), "in_flight_at_pause": len(before), "primed": primed,
                "stuck_floor_s": round(floor, 2)}
        if not stuck:
            return Check(name, Verdict.FAIL, f"no call to the paused node's keys was stuck ≥ {floor:.1f} s "
                         "during the pause: nothing was queued for it to find on resume", data)
        if primed and not before:
            return Check(name, Verdict.FAIL, "no call to the paused node's keys was in flight when it stopped, "
                         "although its writes had been slowed for that", data)
        return Check(name, Verdict.PASS, f"{len(stuck)} calls to the paused node's keys were stuck ≥ {floor:.1f} s "
                     f"and given up by the gates ({len(before)} already in flight when it stopped)", data)
    return run


def writes_refused_while_full(history: History) -> Check:
    """Evidence that PostgreSQL felt it: writes failed with "No space left on device" during the fault."""
    name = "writes_refused_while_full"
    w = next((f for f in history.faults() if f.kind == "disk"), None)
    if w is None:
        return Check(name, Verdict.UNKNOWN, "no disk fault in the history", {})
    stop = w.t_stop if w.t_stop is not None else history.end
    refused = [o for o in history.ops(("increment", "deposit")) if w.t_start <= o.t_invoke <= stop
               and o.type != "ok" and "space" in (o.error or "").lower()]
    data = {"refused": len(refused)}
    if not refused:
        return Check(name, Verdict.FAIL, "no write failed for lack of space while the disk was full", data)
    return Check(name, Verdict.PASS, f"{len(refused)} writes failed for lack of space (e.g. {refused[0].error})",
                 data)
