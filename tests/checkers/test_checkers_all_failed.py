"""Every checker in harness/checkers/, run on a history in which every call failed: none may pass
(``test_every_checker_in_the_package_is_covered`` finds them all, so a new one cannot be left out).
Why: a checker that passes when nothing worked proves nothing — this pins down that each one either
fails or says it could not decide (unknown), with the samples and fault windows its scenario records
present, so the verdict is not just "nothing to look at"."""

from __future__ import annotations

import importlib
import inspect
import itertools
import pkgutil
from pathlib import Path

import pytest

import harness.checkers
from harness.checkers import (
    budgets,
    chaos,
    cluster,
    counter,
    drain,
    failover,
    lifecycle,
    linearizable,
    load,
    operations,
    ownership,
    readiness,
    routing,
    sigterm,
    wallet,
    wiring,
)
from harness.checkers.load_analysis import CPU_SAMPLE, PHASE_LOG, SAMPLES_LOG
from harness.checkers.verdict import Checker, Verdict, run_safely
from harness.history import Event, History
from harness.operation_kinds import CONFIG_F, RESTORED_F, SECRET_F, VERSIONS_F

_ids = itertools.count(1)
KEYS = ("a", "b", "c")


def failed_op(t: float, f: str, key: str | None, proc: str, value: object = 1) -> list[Event]:
    i = next(_ids)
    return [Event(t, "invoke", proc, f, key=key, value=value, op_id=i),
            Event(t + 0.05, "fail", proc, f, key=key, value=value, op_id=i, error="CALL_FAILED: node unavailable")]


def window(fid: str, kind: str, target: str, t0: float, t1: float, params: dict[str, object],
           result: dict[str, object]) -> list[Event]:
    return [Event(t0, "nemesis", "nemesis", "start", value={"id": fid, "kind": kind, "target": target,
                                                            "params": params}),
            Event(t1, "nemesis", "nemesis", "stop", value={"id": fid, "kind": kind, "target": target,
                                                           "result": result})]


def all_failed_history() -> History:
    """Thirty seconds in which every client, probe, final read and load call failed; each operation's
    window and sample is there, reporting the failure it saw."""
    evs: list[Event] = []
    for n in range(300):
        t = n * 0.1
        key = KEYS[n % 3]
        evs += failed_op(t, "probe", key, "probe-0", None)
        evs += failed_op(t, "increment", key, "client-0")
        evs += failed_op(t, "read", key, "client-1", None)
        evs += failed_op(t, "deposit", f"w{n % 3}", "wallet-0", {"amount": 1, "call_id": f"c{n}"})
        evs += failed_op(t, "increment", key, f"load-1-{n % 4}")
    for k in KEYS:
        evs += failed_op(30.0, "final-read", k, "client-0", None)
        evs += failed_op(29.5, "gate-read", k, "client-0", None)  # every gate's read of every key
    evs += [Event(10.0, "log", "harness", PHASE_LOG,
                  value={"name": "steady", "t_start": 0.0, "t_end": 10.0, "offered_rps": 40.0, "kind": "stage"}),
            Event(20.0, "log", "harness", PHASE_LOG,
                  value={"name": "peak", "t_start": 10.0, "t_end": 20.0, "offered_rps": 80.0, "kind": "stage"}),
            Event(5.0, "sample", "generator", CPU_SAMPLE, value={"process": "locust-master", "cpu": 99.0}),
            Event(29.0, "log", "harness", SAMPLES_LOG,
                  value={"run": "run-0", "samples": 0, "files": 0, "problem": "no sample file was written"})]
    # operations' windows and samples, each reporting what went wrong
    evs += window("f1", "config-update", "node-0", 1.0, 3.0, {}, {"exit_code": -9})
    evs += window("f2", "config-update", "node-1", 2.0, 4.0, {}, {"exit_code": 1})
    evs += window("f3", "scale-node", "node", 5.0, 9.0, {}, {"converged_s": None, "to": 4})
    evs += window("f4", "cpu-stress", "node-0", 6.0, 8.0, {}, {"throttled_s": 0})
    evs += window("f5", "pause", "node-1", 11.0, 14.0, {}, {})
    evs += window("f6", "disk", "postgres", 15.0, 17.0, {"free_bytes": 0}, {})
    evs += window("f7", "partition", "node-2", 18.0, 21.0, {"grudge": {}}, {"verified_cut": {"dropped": False}})
    evs += window("f8", "restart", "node-0", 22.0, 24.0, {"graceful": True}, {})
    evs += [Event(9.5, "sample", "operations", VERSIONS_F, value={"expected": "B", "instances": {"node-0": ["A"]}}),
            Event(9.6, "sample", "operations", CONFIG_F,
                  value={"key": "LOG_LEVEL", "value": "warn", "instances": {"node-0": {"ok": False, "why": "info"}}}),
            Event(9.7, "sample", "operations", SECRET_F,
                  value={"old_rejected": False, "new_accepted": False, "nodes_on_new": {"node-0": False}}),
            Event(9.8, "sample", "operations", RESTORED_F,
                  value={"backup_point": 1.0, "backup_end": 2.0, "t_data": 25.0, "values": {}}),
            Event(29.9, "sample", "harness", chaos.PERSISTED_F, value={"keys": list(KEYS), "values": {}}),
            # readiness ⇒ serving: node-0 says ready and every shard is settled on it
            Event(0.0, "sample", "readiness", readiness.READY_F,
                  value={"instance": "node-0", "component": "node", "ready": True, "reason": ""}),
            Event(0.0, "sample", "oracle", readiness.PLACEMENT_F,
                  value={"shards": 4, "serving": {"node-0": [0, 1, 2, 3]}})]
    evs.sort(key=lambda e: e.t)
    return History(evs)


CHECKERS: dict[str, Checker] = {
    # budgets (A, R, E), cluster (C), counters (L, M, linearizable), ownership (O), wallet (D)
    "availability_at_least": budgets.availability_at_least(0.99),
    "rto": budgets.rto(5.0),
    "recovery_after_heal": budgets.recovery_after_heal(5.0),
    "error_window": budgets.error_window(5.0),
    "failures_only_on": budgets.failures_only_on({"a"}),
    "converged": cluster.converged(10.0),
    "no_lost_writes": counter.no_lost_writes(),
    "reads_see_acknowledged": counter.reads_see_acknowledged(),
    "monotonic_reads": counter.monotonic_reads(),
    "linearizable_counters": linearizable.linearizable_counters(),
    "single_ownership": ownership.single_ownership(),
    "every_gate_routes": routing.every_gate_routes(),
    "drained_in_flight": drain.drained_in_flight(KEYS, call_timeout_s=8.0, held_s=5.0),
    "drained_at_every_sigterm": drain.drained_at_every_sigterm(call_timeout_s=8.0, held_s=5.0),
    "sigterm_exit_within_grace": sigterm.sigterm_exit_within_grace(10.0),
    "ready_drops_on_sigterm": sigterm.ready_drops_on_sigterm(1.0),
    "endpoints_honoured": wiring.endpoints_honoured(),
    "failover_while_down": failover.failover_while_down(5.0),
    "reliable_calls_once": wallet.reliable_calls_once(),
    "ready_means_serving": readiness.ready_means_serving(0.75),
    # chaos
    "persisted_not_behind": chaos.persisted_not_behind,
    "writes_recover_after_heal": chaos.writes_recover_after_heal(2.0),
    "evidence": chaos.evidence("cpu", "cpu-stress", lambda p, r: (bool(r.get("throttled_s")), "throttled")),
    "latency_shift": chaos.latency_shift("increment", None, 50.0),
    "partition_bit": chaos.partition_bit(clients_notice=True),
    "queued_at_paused_node": chaos.queued_at_paused_node(set(KEYS), 4.5),
    "writes_refused_while_full": chaos.writes_refused_while_full,
    # load
    "achieved_at_least": load.achieved_at_least(0.9, ["steady", "peak"]),
    "error_rate_at_most": load.error_rate_at_most(0.01, ["steady", "peak"]),
    "p99_at_most": load.p99_at_most(500.0, ["steady", "peak"]),
    "samples_complete": load.samples_complete(),
    "knee_reported": load.knee_reported(),
    # operations
    "one_at_a_time": operations.one_at_a_time(),
    "clean_exits": operations.clean_exits(),
    "steps_converged_within": operations.steps_converged_within(10.0),
    "version_everywhere": operations.version_everywhere(),
    "config_in_effect": operations.config_in_effect(),
    "secret_rotated": operations.secret_rotated(),
    "failed_calls_at_most": operations.failed_calls_at_most(0.05),
    "restored_matches_backup": operations.restored_matches_backup(),
    "no_lost_writes_after_restore": operations.no_lost_writes_after_restore(),
    "no_secret_in": operations.no_secret_in([Path(__file__)], ["CALL_FAILED"]),
}


# judged by the tests below instead of on the history alone
SEPARATE = {"generator_not_saturated", "ready_within", "exited_cleanly", "every_gate_served"}
CHECKER_RETURNS = {"Checker", "Check", "Callable[[History], Check]"}


def package_checkers() -> set[str]:
    """Every public function of harness/checkers/ that is a checker or makes one (by its annotation)."""
    found: set[str] = set()
    for info in pkgutil.iter_modules(harness.checkers.__path__):
        mod = importlib.import_module(f"harness.checkers.{info.name}")
        for name, fn in inspect.getmembers(mod, inspect.isfunction):
            if fn.__module__ == mod.__name__ and not name.startswith("_") \
                    and str(inspect.signature(fn).return_annotation) in CHECKER_RETURNS:
                found.add(name)
    return found


def test_every_checker_in_the_package_is_covered() -> None:
    found = package_checkers()
    assert {"no_lost_writes", "rto", "persisted_not_behind", "single_ownership"} <= found  # the finder works
    missing = found - set(CHECKERS) - SEPARATE - {"decide", "run_safely", "named"}
    assert not missing, f"checkers without an all-failed test: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_no_checker_passes_when_every_call_failed(name: str) -> None:
    c = run_safely(CHECKERS[name], all_failed_history())
    assert c.verdict is not Verdict.PASS, f"{name} passed on an all-failed history: {c.detail}"
    assert not c.detail.startswith("checker raised"), c.detail  # a crash is unknown, but not what we test


def test_generator_saturation_is_a_warning_not_a_verdict_on_the_stack() -> None:
    """The one exception, by design (harness/checkers/load.py): generator saturation questions the
    measurement, not the stack, so it is a passing check whose detail starts with WARNING."""
    c = run_safely(load.generator_not_saturated(), all_failed_history())
    assert c.verdict is Verdict.PASS and c.detail.startswith("WARNING"), c.detail


def test_checkers_of_captured_facts_fail_or_say_unknown() -> None:
    """The checkers built from facts a scenario captured outside the history (harness/checkers/lifecycle.py)."""
    h = all_failed_history()
    assert lifecycle.exited_cleanly({"node-0": None, "node-1": 1}, 10.0)(h).verdict is Verdict.FAIL
    assert lifecycle.exited_cleanly({}, 10.0)(h).verdict is Verdict.UNKNOWN
    assert lifecycle.ready_within({"converged_s": 9.0}, 5.0)(h).verdict is Verdict.FAIL
    assert lifecycle.ready_within({}, 5.0)(h).verdict is Verdict.UNKNOWN
    assert lifecycle.every_gate_served(set(), {"gate-0", "gate-2"})(h).verdict is Verdict.FAIL


def test_the_history_really_is_all_failed() -> None:
    h = all_failed_history()
    assert h.ops() and all(o.type == "fail" for o in h.ops())


def test_every_lag_independent_name_is_a_real_check() -> None:
    """``LAG_INDEPENDENT`` lists check names (harness/checkers/measure.py): a typo would silently let a
    starved run hide that check's failure."""
    from harness.checkers.measure import LAG_INDEPENDENT

    h = all_failed_history()
    names = {run_safely(c, h).name for c in CHECKERS.values()}
    assert names >= LAG_INDEPENDENT, sorted(LAG_INDEPENDENT - names)
