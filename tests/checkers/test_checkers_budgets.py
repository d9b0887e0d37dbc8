"""Budget checkers A, R, H, E, C and failures_only_on: each passes, fails with the numbers in the
message, and is unknown when the history cannot tell."""

from __future__ import annotations

from functools import cache

import pytest

from harness.checkers import (
    Verdict,
    availability_at_least,
    check,
    converged,
    error_window,
    failures_only_on,
    recovery_after_heal,
    rto,
)
from harness.history import Event, History
from tests.support.paths import DATA

HISTORIES = DATA / "histories"
NODE1_PROBE_KEYS = {f"probe-{i:02d}" for i in range(32) if i % 3 == 1}
NODE1_KEYS = NODE1_PROBE_KEYS | {f"ctr-{i:02d}" for i in range(16) if i % 3 == 1}


@cache
def recorded(name: str) -> History:
    return History.load(HISTORIES / f"{name}.jsonl")


# ---- R ---------------------------------------------------------------------------------------------------
def test_rto_within_budget_passes() -> None:
    c = rto(budget_s=10)(recorded("kill_node_recovers"))
    assert c.verdict is Verdict.PASS
    assert c.detail == "RTO 6.00s ≤ 10s after kill node-1 (f1) injected at 10.00s"


def test_rto_over_budget_fails_with_the_numbers() -> None:
    c = rto(budget_s=5)(recorded("kill_node_recovers"))
    assert c.verdict is Verdict.FAIL
    assert "RTO 6.00s > budget 5s after kill node-1 (f1) injected at 10.00s" in c.detail
    assert "recovered 16.00s" in c.detail
    assert c.data["faults"][0]["rto_s"] == pytest.approx(6.0, abs=0.01)


def test_rto_never_recovered_fails() -> None:
    c = rto(budget_s=60)(recorded("outage_never_recovers"))
    assert c.verdict is Verdict.FAIL
    assert c.detail.startswith("RTO > 14.7s (budget 60s): never recovered after kill node-1 (f1) injected at 10.00s")


def test_rto_without_probes_or_faults_is_unknown() -> None:
    assert rto(10)(recorded("wallet_dedup_ok")).verdict is Verdict.UNKNOWN  # no probe ops
    assert rto(10)(History(events=[])).verdict is Verdict.UNKNOWN  # no fault


def test_scenario_sketch_of_the_design_reads_as_intended() -> None:
    result = check(recorded("kill_node_recovers"), rto(budget_s=10), recovery_after_heal(budget_s=5),
                   converged(within_s=5))
    assert result.passed, result.explain()
    failed = check(recorded("outage_never_recovers"), rto(budget_s=10))
    assert not failed.passed
    assert "rto [fail]: RTO > 14.7s (budget 10s): never recovered" in failed.explain()


# ---- H ---------------------------------------------------------------------------------------------------
def test_recovery_after_heal_passes_and_fails_on_budget() -> None:
    h = recorded("kill_node_recovers")
    ok = recovery_after_heal(budget_s=5)(h)
    assert ok.verdict is Verdict.PASS and "recovered 1.00s after the heal" in ok.detail
    bad = recovery_after_heal(budget_s=0.5)(h)
    assert bad.verdict is Verdict.FAIL and "recovered 1.00s after the heal > budget 0.5s" in bad.detail


def test_recovery_after_heal_says_when_it_clamped() -> None:
    c = recovery_after_heal(budget_s=1)(recorded("stale_reads"))  # failed over before SIGCONT
    assert c.verdict is Verdict.PASS
    assert "clamped to 0" in c.detail


def test_recovery_after_heal_unknown_without_a_healed_fault() -> None:
    value = {"id": "f1", "kind": "kill", "target": "node-1", "params": {}}
    h = History(events=[Event(1.0, "nemesis", "nemesis", "start", value=value)])
    assert recovery_after_heal(5)(h).verdict is Verdict.UNKNOWN


# ---- A ---------------------------------------------------------------------------------------------------
def test_availability_at_least() -> None:
    h = recorded("partial_dip")
    ok = availability_at_least(0.99)(h)
    assert ok.verdict is Verdict.PASS and ok.data["failed"] == 2 and ok.data["probes"] == 480
    bad = availability_at_least(0.999)(h)
    assert bad.verdict is Verdict.FAIL
    assert bad.detail == ("availability 99.58% (succeeded within 1000 ms) over 480 probes (2 failed, 0 slower than "
                          "the SLO); worst 1s window 95% < required 99.90%")
    assert availability_at_least(0.9)(recorded("wallet_dedup_ok")).verdict is Verdict.UNKNOWN


# ---- E ---------------------------------------------------------------------------------------------------
def test_error_window_per_key() -> None:
    h = recorded("kill_node_recovers")
    ok = error_window(budget_s=8)(h)
    assert ok.verdict is Verdict.PASS
    assert {w["key"] for w in ok.data["windows"]} <= NODE1_KEYS  # only node-1's keys failed
    bad = error_window(budget_s=2)(h)
    assert bad.verdict is Verdict.FAIL
    worst = bad.data["windows"][0]
    assert worst["window_s"] == bad.data["max_s"] > 2
    assert f"key {worst['key']}: {worst['window_s']:.2f}s" in bad.detail


def test_error_window_restricted_to_keys() -> None:
    h = recorded("kill_node_recovers")
    unaffected = {f"probe-{i:02d}" for i in range(32)} - NODE1_PROBE_KEYS
    c = error_window(budget_s=0.0, keys=unaffected)(h)
    assert c.verdict is Verdict.PASS and c.data["max_s"] == 0.0
    c2 = error_window(budget_s=0.0, keys=lambda k: k in NODE1_PROBE_KEYS)(h)
    assert c2.verdict is Verdict.FAIL


def _restart_history(*ops: tuple[float, str]) -> History:
    """One key's increments around a restart (fault f1 at 1.0 s): (invoke time, completion type)."""
    value = {"id": "f1", "kind": "restart", "target": "node-0", "params": {}}
    events = [Event(1.0, "nemesis", "nemesis", "start", value=value)]
    for i, (t, type_) in enumerate(ops):
        events += [Event(t, "invoke", "client-0", "increment", key="k", value=1, op_id=i),
                   Event(t + 0.01, type_, "client-0", "increment", key="k", value=1, op_id=i)]
    events.append(Event(9.0, "nemesis", "nemesis", "stop", value=value))
    return History(sorted(events, key=lambda e: e.t))


def test_error_window_counts_bursts_not_the_quiet_time_between() -> None:
    # the key fails when its shard leaves node-0 (2.0–2.5 s), is served by another node (3–5 s), and
    # fails again when the shard comes back (5.5–6.0 s): two 0.5 s bursts, not one 4 s window
    h = _restart_history((2.0, "fail"), (2.5, "fail"), (3.0, "ok"), (4.0, "ok"), (5.5, "fail"), (6.0, "info"),
                         (6.5, "ok"))
    c = error_window(budget_s=2)(h)
    assert c.verdict is Verdict.PASS, c.detail
    assert c.data["windows"] == [{"fault": "f1", "key": "k", "first_t": 2.0, "last_t": 2.5, "window_s": 0.5,
                                  "errors": 2, "bursts": 2}]


def test_error_window_fails_an_unbroken_burst() -> None:
    h = _restart_history((2.0, "fail"), (3.0, "info"), (4.0, "fail"), (5.0, "fail"), (6.0, "ok"))
    c = error_window(budget_s=2)(h)
    assert c.verdict is Verdict.FAIL
    assert "key k: 3.00s (4 errors from 2.00s to 5.00s with no success between, f1)" in c.detail


def test_error_window_unknown_without_fault() -> None:
    assert error_window(2)(History(events=[])).verdict is Verdict.UNKNOWN


# ---- failures only on ------------------------------------------------------------------------------------
def test_failures_only_on_the_killed_nodes_keys() -> None:
    h = recorded("kill_node_recovers")
    assert failures_only_on(NODE1_KEYS)(h).verdict is Verdict.PASS
    c = failures_only_on({"probe-01"})(h)
    assert c.verdict is Verdict.FAIL and "outside the affected set" in c.detail


# ---- C ---------------------------------------------------------------------------------------------------
def _shardmap(*samples: tuple[float, bool], heal: float | None = 5.0) -> History:
    events = [Event(t, "sample", "oracle", "shardmap",
                    value={"converged": ok, "unconverged": 0 if ok else 21, "live_nodes": ["node-0"],
                           "owners": {}}) for t, ok in samples]
    value = {"id": "f1", "kind": "kill", "target": "node-1", "params": {}}
    events.append(Event(1.0, "nemesis", "nemesis", "start", value=value))
    if heal is not None:
        events.append(Event(heal, "nemesis", "nemesis", "stop", value=value))
    return History(sorted(events, key=lambda e: e.t))


def test_converged_within_budget_after_the_last_heal() -> None:
    c = converged(within_s=5)(recorded("kill_node_recovers"))
    assert c.verdict is Verdict.PASS
    assert c.data["after_s"] == pytest.approx(1.52)
    assert "converged 1.52s after the last heal" in c.detail


@pytest.mark.parametrize(
    ("samples", "heal", "verdict", "words"),
    [
        ([(4.0, True), (6.0, False), (8.0, True), (9.0, True)], 5.0, Verdict.PASS, "converged 3.00s after"),
        ([(6.0, False), (12.0, True)], 5.0, Verdict.FAIL, "converged 7.00s after the last heal > budget 5s"),
        ([(6.0, False), (7.0, False)], 5.0, Verdict.FAIL, "never converged"),
        ([(6.0, True), (7.0, False)], 5.0, Verdict.FAIL, "the last sample at 7.00s has 21 unconverged"),
        ([(2.0, True)], 5.0, Verdict.UNKNOWN, "no shard-map samples after the last heal"),
        ([(6.0, True)], None, Verdict.UNKNOWN, "never healed"),
    ],
)
def test_converged_cases(samples: list[tuple[float, bool]], heal: float | None, verdict: Verdict,
                         words: str) -> None:
    c = converged(within_s=5)(_shardmap(*samples, heal=heal))
    assert c.verdict is verdict
    assert words in c.detail


def test_converged_on_a_never_recovering_outage_fails() -> None:
    c = converged(within_s=30)(recorded("outage_never_recovers"))
    assert c.verdict is Verdict.FAIL and "64 unconverged shards" in c.detail


def test_converged_without_faults_measures_from_the_first_sample_or_since() -> None:
    h = History(events=[Event(3.0, "sample", "oracle", "shardmap", value={"converged": False, "unconverged": 5}),
                        Event(6.0, "sample", "oracle", "shardmap", value={"converged": True})])
    c = converged(within_s=5)(h)
    assert c.verdict is Verdict.PASS and c.data["after_s"] == pytest.approx(3.0)
    assert "after the first shard-map sample" in c.detail
    assert converged(within_s=2)(h).verdict is Verdict.FAIL
    assert converged(within_s=2, since=5.0)(h).verdict is Verdict.PASS


def test_converged_within_zero_means_converged_when_first_observed() -> None:
    ok = History(events=[Event(0.3, "sample", "oracle", "shardmap", value={"converged": True}),
                         Event(3.3, "sample", "oracle", "shardmap", value={"converged": True})])
    assert converged(within_s=0.0)(ok).verdict is Verdict.PASS


def test_oracle_errors_are_not_evidence() -> None:
    err = {"error": "ConnectionRefusedError(111)"}
    h = _shardmap((6.0, True), (7.0, True), heal=5.0)
    h.events.append(Event(8.0, "sample", "oracle", "shardmap", value=err))
    assert converged(within_s=5)(h).verdict is Verdict.PASS  # the error sample is skipped
    only_errors = History(events=[Event(1.0, "sample", "oracle", "shardmap", value=err)])
    c = converged(within_s=5)(only_errors)
    assert c.verdict is Verdict.UNKNOWN and "ConnectionRefusedError" in c.detail


def test_composed_recovery_counts_from_the_last_overlapping_heal() -> None:
    """A recorded explore segment on the correct build (seed1-026, its probes and fault windows): gate-1
    killed 1.8 s, then the cluster cut in halves for 6 s and gate-1 paused for 7.8 s. The probe's dip
    began under the kill and lasted until 6 s after the pause healed; charged to the kill it is 16.4 s
    after its heal (the plain form fails), counted from the last overlapping heal 5.97 s — within 10 s,
    not within 5 s."""
    h = History.load(DATA / "histories" / "explore_overlapping_faults_recovery.jsonl")
    plain = recovery_after_heal(10.0)(h)
    assert plain.verdict is Verdict.FAIL and "16.37s after the heal" in plain.detail, plain.detail
    composed = recovery_after_heal(10.0, composed=True)(h)
    assert composed.verdict is Verdict.PASS and "last overlapping fault healed at 15.11s" in composed.detail
    assert recovery_after_heal(5.0, composed=True)(h).verdict is Verdict.FAIL
