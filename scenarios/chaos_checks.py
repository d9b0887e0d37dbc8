"""What the chaos scenarios (test_partitions.py, test_chaos.py) share: running a fault as an explained
skip when the platform cannot apply it, finding the keys a fault hit, the stored-state oracle, and
checkers for recovery and for evidence that a fault really bit.

Why a module beside the scenarios and not in ``harness/checkers``: these checkers encode the chaos
scenarios' own designs (the quiesced keys, the persisted sample) and read like part of those
specifications; the generic invariants (L, M, O, C, R, H, A) stay in the library.

Why evidence checks: a fault that did not bite (a partition nobody noticed, a limit the process never
reached) makes every invariant pass vacuously. Each scenario therefore also checks, from the history,
that its fault had the effect it exists for — and fails if it did not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from harness.checkers.latency import nearest_rank, phase_of
from harness.checkers.ops import as_int
from harness.checkers.verdict import Check, Verdict, examples
from harness.history import History
from harness.platforms.base import Timers
from harness.sharding import shard_of
from harness.waiting import WaitTimeout, wait_until

Checker = Callable[[History], Check]


def heal_fast(t: Timers) -> float:
    """H for a component that comes back with ownership unchanged (a healed link, a freed disk): one
    lease TTL of client/pool backoff, a few ticks and 1 s allowance (5 s with the fast timers, as in
    SCENARIOS.md)."""
    return round(t.lease_ttl + 4 * t.tick + 1.0, 2)


# ---- running a fault -------------------------------------------------------------------------------
def require_capability(stack: Any, kind: str) -> None:
    reason = stack.capabilities().get(kind, f"the platform does not report {kind!r} faults")
    if reason:
        pytest.skip(f"unsupported on this platform: {reason}")


def owned_keys(owners: dict[int, tuple[str, str]], shards: int, nodes: list[str], keys: list[str]) -> set[str]:
    """The keys whose shard one of ``nodes`` owned (current owner) in the shard map ``owners``."""
    return {k for k in keys if owners.get(shard_of(k, shards), ("", ""))[1] in nodes}


def wait_failover(stack: Any, live_before: set[str], timeout: float) -> bool:
    """Until a node has dropped out of the cluster and the rest own every shard (or ``timeout``)."""
    def moved() -> bool:
        return stack.live_nodes() < live_before and stack.cluster_state().converged
    try:
        wait_until(moved, timeout, "the cut node's shards to move to the others", interval=0.1)
    except WaitTimeout:
        return False
    return True


def wait_ops_ok(scenario: Any, timeout: float, fs: tuple[str, ...] = ("probe",), window_s: float = 1.0) -> bool:
    """Until every ``fs`` op of a recent ``window_s`` completed ok, or ``timeout``. Why: the after phase
    must cover the measurement's stability window *after* service came back, or a late recovery reads
    as "never recovered" because the history ended."""
    return bool(scenario.wait_ops_ok(timeout, fs, window_s=window_s))


def after_the_heal(stack: Any, scenario: Any, timeout: float, after_s: float) -> None:
    """The after phase: wait (bounded) for convergence, readiness and successful probes and writes,
    then keep the load on for ``after_s``. A wait that runs out is logged, not raised: the checkers
    (C, H, R, L) then judge what happened and name the invariant, instead of the scenario ending in
    an exception."""
    for what, wait in (("converged", lambda: scenario.wait_converged(timeout)),
                       ("ready", lambda: stack.wait_ready(timeout))):
        try:
            wait()
        except WaitTimeout as exc:
            scenario.recorder.log(f"not {what} within {timeout:g}s after the heal", error=str(exc)[:500])
    wait_ops_ok(scenario, timeout, ("probe", "increment"))
    scenario.settle_clean(after_s, "after the heal", timeout, fs=("probe", "increment"))


def converged_or_logged(scenario: Any, timeout: float) -> None:
    """Wait for convergence before the final reads; a timeout is logged for the C checker to judge."""
    try:
        scenario.wait_converged(timeout)
    except WaitTimeout as exc:
        scenario.recorder.log(f"not converged within {timeout:g}s before the final reads", error=str(exc)[:500])


def final_reads_and_stored(stack: Any, scenario: Any, timeout: float, *workloads: Any) -> None:
    """After the load stopped: wait (logged, not raised) for convergence, read every key of
    ``workloads`` once more (L, M need it) and sample what PostgreSQL stores for their counters."""
    converged_or_logged(scenario, timeout)
    for wl in workloads:
        wl.final_reads()
    record_persisted(stack, scenario, [k for wl in workloads for k in wl.counter_keys])


# ---- the stored state oracle ----------------------------------------------------------------------------
SETTLE_STORED_S = 5.0  # how long a stack that persists behind its acks gets to catch up


def stored_settle(stack: Any) -> tuple[float, float]:
    """(interval between two reads that must agree, deadline) for the stored state, from what the stack
    promises: the reference stack persists before acknowledging; real Goverse saves every persistence
    interval (``goverse_persistence_interval``), so two reads must be one interval apart to prove it
    has nothing left to save, and it gets a few intervals to catch up."""
    every = getattr(stack.spec, "goverse_persistence_interval", None) or 0.0
    if getattr(stack.spec, "stack", "reference") != "goverse" or not every:
        return 0.5, SETTLE_STORED_S
    gap = every + 0.5
    return gap, max(SETTLE_STORED_S, 3 * gap)


def record_persisted(stack: Any, scenario: Any, keys: list[str]) -> None:
    """Sample what PostgreSQL holds for ``keys`` into the history (for :func:`persisted_not_behind`),
    once it has settled: two reads 0.5 s apart agree (bounded by ``SETTLE_STORED_S``), so a stack that
    legitimately persists a moment after acknowledging is judged on what it stores, not on its lag.
    Call it after the load stopped."""
    reader = getattr(stack, "persisted_objects", None)
    if reader is None:
        scenario.recorder.sample("persisted", {"error": "the platform gives no access to the stored state"})
        return
    seen: list[dict[str, Any]] = []
    errors: list[str] = []

    def settled() -> bool:
        try:
            rows = reader(keys)
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, then recorded
            errors.append(repr(exc)[:300])
            raise
        seen.append({k: (d or {}).get("value") for k, d in rows.items() if isinstance(d, dict)})
        return len(seen) > 1 and seen[-1] == seen[-2]

    gap, deadline = stored_settle(stack)
    with contextlib.suppress(WaitTimeout):  # still moving: judge the last read, it says how far behind
        wait_until(settled, deadline, "the stored state to settle", interval=gap)
    if not seen:
        why = errors[-1] if errors else "no read completed"
        scenario.recorder.sample("persisted", {"error": f"the stored state could not be read: {why}"})
        return
    scenario.recorder.sample("persisted", {"keys": keys, "values": seen[-1], "reads": len(seen)})


def persisted_not_behind(history: History) -> Check:
    """L on the stored state: after the run, PostgreSQL holds, per key, at least the acknowledged sum of
    increments and at most that plus the indeterminate ones. Less means acknowledged writes live only
    in a node's memory — or were overwritten by a stale node — and the next reload loses them."""
    name = "persisted_not_behind"
    samples = [s.value for s in history.samples("persisted") if isinstance(s.value, dict)]
    if not samples or "values" not in samples[-1]:
        why = samples[-1].get("error") if samples else "no sample of the stored state"
        return Check(name, Verdict.UNKNOWN, f"stored state unknown: {why}", {})
    keys, stored = samples[-1]["keys"], samples[-1]["values"]
    acked: dict[str, int] = dict.fromkeys(keys, 0)
    info: dict[str, int] = dict.fromkeys(keys, 0)
    for o in history.ops("increment"):
        if o.key in acked and isinstance(o.value, int):
            if o.type == "ok":
                acked[o.key] += o.value
            elif o.type == "info":
                info[o.key] += o.value
    behind, ahead = [], []
    for k in keys:
        v = as_int(stored.get(k))
        v = 0 if v is None else v
        if v < acked[k]:
            behind.append(f"key {k}: stored {v} < acknowledged {acked[k]}")
        elif v > acked[k] + info[k]:
            ahead.append(f"key {k}: stored {v} > acknowledged {acked[k]} + indeterminate {info[k]}")
    data = {"keys": len(keys), "behind": behind, "ahead": ahead}
    if behind or ahead:
        return Check(name, Verdict.FAIL, f"{len(behind)} of {len(keys)} keys are stored behind what was "
                     f"acknowledged, {len(ahead)} ahead of anything written: {examples(behind + ahead)}", data)
    if not any(acked.values()):
        return Check(name, Verdict.UNKNOWN, "no increment was acknowledged on the sampled keys", data)
    return Check(name, Verdict.PASS, f"all {len(keys)} keys: acknowledged ≤ stored ≤ acknowledged + "
                 "indeterminate", data)


# ---- recovery and evidence -----------------------------------------------------------------------------
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
    "during" phase is at least ``min_shift_ms`` above the "before" phase."""
    name = f"latency_shift_{f}"

    def run(history: History) -> Check:
        faults = history.faults()
        by_phase: dict[str, list[float]] = {"before": [], "during": []}
        for o in history.ops(f):
            if o.type == "ok" and (keys is None or o.key in keys):
                phase = phase_of(o.t_invoke, faults)
                if phase in by_phase:
                    by_phase[phase].append(o.latency_s * 1000.0)
        data = {ph: len(v) for ph, v in by_phase.items()}
        if not by_phase["before"] or not by_phase["during"]:
            return Check(name, Verdict.UNKNOWN, f"no ok {f} ops before and during the fault on the judged keys",
                         data)
        before = nearest_rank(sorted(by_phase["before"]), 50)
        during = nearest_rank(sorted(by_phase["during"]), 50)
        data.update(p50_before_ms=round(before, 3), p50_during_ms=round(during, 3), min_shift_ms=min_shift_ms)
        msg = f"{f} p50 {before:.1f} ms before → {during:.1f} ms during the fault (shift ≥ {min_shift_ms:g} ms wanted)"
        return Check(name, Verdict.PASS if during - before >= min_shift_ms else Verdict.FAIL, msg, data)
    return run
