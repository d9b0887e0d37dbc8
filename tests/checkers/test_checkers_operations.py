"""Checkers of the operation scenarios over small synthetic histories: each passes on good data, fails
(with the numbers) on bad data, and is unknown when the history cannot tell."""

from __future__ import annotations

from pathlib import Path

from harness.checkers import Verdict
from harness.checkers.operations import (
    clean_exits,
    config_in_effect,
    failed_calls_at_most,
    no_lost_writes_after_restore,
    no_secret_in,
    one_at_a_time,
    restored_matches_backup,
    secret_rotated,
    steps_converged_within,
    version_everywhere,
)
from harness.history import Event, History, Recorder
from harness.operation_kinds import CONFIG_F, RESTORED_F, SECRET_F, VERSIONS_F


def window(rec_events: list[Event], fid: str, kind: str, target: str, t0: float, t1: float | None,
           result: dict | None = None) -> None:
    rec_events.append(Event(t0, "nemesis", "nemesis", "start", value={"id": fid, "kind": kind, "target": target,
                                                                     "params": {}}))
    if t1 is not None:
        rec_events.append(Event(t1, "nemesis", "nemesis", "stop", value={"id": fid, "kind": kind, "target": target,
                                                                        "result": result or {}}))


def hist(events: list[Event]) -> History:
    return History(sorted(events, key=lambda e: e.t))


def sample(t: float, f: str, value: dict) -> Event:
    return Event(t, "sample", "operations", f, value=value)


def op(op_id: int, f: str, key: str, t0: float, t1: float, outcome: str = "ok", value=None, result=None,
       process: str = "client-0") -> list[Event]:
    return [Event(t0, "invoke", process, f, key=key, value=value, op_id=op_id),
            Event(t1, outcome, process, f, key=key, value=result, op_id=op_id)]


# ---- never two at once ------------------------------------------------------------------------------------
def test_one_at_a_time_passes_for_sequential_windows() -> None:
    ev: list[Event] = []
    window(ev, "f1", "rolling-upgrade", "node-1", 1.0, 3.0)
    window(ev, "f2", "rolling-upgrade", "node-0", 3.0, 5.0)
    c = one_at_a_time()(hist(ev))
    assert c.verdict is Verdict.PASS, c.detail


def test_one_at_a_time_fails_when_two_instances_are_down_together() -> None:
    ev: list[Event] = []
    window(ev, "f1", "rolling-upgrade", "node-1", 1.0, 3.5)
    window(ev, "f2", "rolling-upgrade", "node-0", 3.0, 5.0)
    c = one_at_a_time()(hist(ev))
    assert c.verdict is Verdict.FAIL
    assert "node-1" in c.detail and "node-0" in c.detail
    assert c.data["overlaps"] == [["f1", "f2"]]


def test_one_at_a_time_fails_when_an_instance_never_came_back() -> None:
    ev: list[Event] = []
    window(ev, "f1", "rollback", "node-1", 1.0, None)
    ev.append(Event(9.0, "log", "harness", "end"))
    c = one_at_a_time()(hist(ev))
    assert c.verdict is Verdict.FAIL and "never became ready" in c.detail


def test_one_at_a_time_without_roll_windows_is_unknown() -> None:
    ev: list[Event] = []
    window(ev, "f1", "kill", "node-1", 1.0, 2.0)
    assert one_at_a_time()(hist(ev)).verdict is Verdict.UNKNOWN


def test_clean_exits() -> None:
    ev: list[Event] = []
    window(ev, "f1", "config-update", "node-1", 1.0, 3.0, {"exit_code": 0})
    window(ev, "f2", "config-update", "gate-0", 3.0, 4.0, {"exit_code": 0})
    assert clean_exits()(hist(ev)).verdict is Verdict.PASS
    window(ev, "f3", "config-update", "node-0", 4.0, 9.0, {"exit_code": -9})
    c = clean_exits()(hist(ev))
    assert c.verdict is Verdict.FAIL and "node-0 (f3): -9" in c.detail
    assert clean_exits()(hist([])).verdict is Verdict.UNKNOWN


# ---- scale steps -----------------------------------------------------------------------------------------
def test_steps_converged_within_budget() -> None:
    ev: list[Event] = []
    window(ev, "f1", "scale-node", "node", 1.0, 7.0, {"to": 5, "converged_s": 6.0})
    assert steps_converged_within(10)(hist(ev)).verdict is Verdict.PASS


def test_steps_over_budget_or_never_converged_fail() -> None:
    ev: list[Event] = []
    window(ev, "f1", "scale-node", "node", 1.0, 13.0, {"to": 5, "converged_s": 12.0})
    window(ev, "f2", "scale-node", "node", 14.0, 40.0, {"to": 3, "converged_s": None})
    c = steps_converged_within(10)(hist(ev))
    assert c.verdict is Verdict.FAIL and "12.0s" in c.detail and "never" in c.detail


def test_platform_stop_delay_is_added_to_the_step_budget_and_named() -> None:
    """The CI figure on Kubernetes: 5 → 3 nodes took 11.5 s, 10 s of it the two pods' preStop sleeps
    (the platform's, before each SIGTERM): passes against 10 s + 10 s; the stack's own share still judged."""
    ev: list[Event] = []
    window(ev, "f1", "scale-node", "node", 1.0, 12.5, {"to": 3, "converged_s": 11.501, "stop_delay_s": 10.0})
    c = steps_converged_within(10)(hist(ev))
    assert c.verdict is Verdict.PASS and "+ 10s preStop before SIGTERM" in c.detail and "budget 20s" in c.detail
    slow: list[Event] = []
    window(slow, "f1", "scale-node", "node", 1.0, 22.0, {"to": 3, "converged_s": 21.0, "stop_delay_s": 10.0})
    assert steps_converged_within(10)(hist(slow)).verdict is Verdict.FAIL


def test_platform_start_delay_is_added_to_the_step_budget_and_named() -> None:
    ev: list[Event] = []
    window(ev, "f1", "scale-node", "node", 1.0, 13.0, {"to": 5, "converged_s": 12.0, "start_delay_s": 3.0})
    c = steps_converged_within(10)(hist(ev))
    assert c.verdict is Verdict.PASS and "+ 3s until the platform started" in c.detail
    assert c.data["steps"][0]["budget_s"] == 13.0
    window(ev, "f2", "scale-node", "node", 14.0, 30.0, {"to": 3, "converged_s": 14.0, "start_delay_s": 3.0})
    assert steps_converged_within(10)(hist(ev)).verdict is Verdict.FAIL


def test_no_scale_step_is_unknown() -> None:
    assert steps_converged_within(10)(hist([])).verdict is Verdict.UNKNOWN


# ---- versions and config ---------------------------------------------------------------------------------
def test_version_everywhere() -> None:
    good = [sample(5, VERSIONS_F, {"expected": "B", "instances": {"node-0": ["B"], "gate-0": ["B"]}}),
            sample(9, VERSIONS_F, {"expected": "A", "instances": {"node-0": ["A"], "gate-0": ["A"]}})]
    assert version_everywhere()(hist(good)).verdict is Verdict.PASS
    bad = good + [sample(12, VERSIONS_F, {"expected": "B", "instances": {"node-0": ["B"], "gate-0": ["A"]}})]
    c = version_everywhere()(hist(bad))
    assert c.verdict is Verdict.FAIL and "gate-0 reports ['A']" in c.detail
    mixed = [sample(5, VERSIONS_F, {"expected": "B", "instances": {"node-0": ["A", "B"]}})]
    assert version_everywhere()(hist(mixed)).verdict is Verdict.FAIL
    assert version_everywhere()(hist([])).verdict is Verdict.UNKNOWN


def test_version_everywhere_is_not_applicable_on_a_stack_that_exports_no_version() -> None:
    """Goverse v0.1.1 has no goverse_build_info: what the scrape found cannot be judged, even nothing."""
    import dataclasses

    from harness import capabilities

    empty = [sample(5, VERSIONS_F, {"expected": "B", "instances": {"node-0": [], "gate-0": []}})]
    def declared(stack: str) -> History:
        return dataclasses.replace(hist(empty), meta={capabilities.META_KEY: capabilities.for_stack(stack).to_meta()})

    goverse = declared("goverse")
    c = version_everywhere()(goverse)
    assert c.verdict is Verdict.NOT_APPLICABLE and "exports no build version" in c.detail
    assert version_everywhere()(declared("reference")).verdict is Verdict.FAIL  # declared, none reported


def test_config_in_effect() -> None:
    ok = {"key": "LOG_LEVEL", "value": "warn", "instances": {"node-0": {"ok": True, "why": "-"}}}
    assert config_in_effect()(hist([sample(3, CONFIG_F, ok)])).verdict is Verdict.PASS
    bad = {**ok, "instances": {"node-0": {"ok": True}, "gate-1": {"ok": False, "why": "lines below warn"}}}
    c = config_in_effect()(hist([sample(3, CONFIG_F, bad)]))
    assert c.verdict is Verdict.FAIL and "gate-1" in c.detail
    assert config_in_effect()(hist([])).verdict is Verdict.UNKNOWN
    silent = {**ok, "instances": {"node-0": {"ok": True}, "gate-0": {"ok": None, "why": "no log line"}}}
    assert config_in_effect()(hist([sample(3, CONFIG_F, silent)])).verdict is Verdict.UNKNOWN
    both = {**ok, "instances": {"node-0": {"ok": False, "why": "changes nothing"}, "gate-0": {"ok": None}}}
    assert config_in_effect()(hist([sample(3, CONFIG_F, both)])).verdict is Verdict.FAIL


def test_config_in_effect_judges_the_roll_to_the_value_asked_for() -> None:
    """An update then its undo: ``value=`` picks the update's roll, whatever the undo's said."""
    bad_warn = {"key": "LOG_LEVEL", "value": "warn", "instances": {"node-0": {"ok": False, "why": "info lines"}}}
    ok_info = {"key": "LOG_LEVEL", "value": "info", "instances": {"node-0": {"ok": True, "why": "-"}}}
    h = hist([sample(3, CONFIG_F, bad_warn), sample(9, CONFIG_F, ok_info)])
    assert config_in_effect()(h).verdict is Verdict.PASS  # the last roll (the undo) is in effect
    assert config_in_effect(value="warn")(h).verdict is Verdict.FAIL
    assert config_in_effect(value="debug")(h).verdict is Verdict.UNKNOWN


# ---- secret rotation -------------------------------------------------------------------------------------
GOOD_ROTATION = {"reload_s": 0.3, "revoked": 0, "old_rejected": True, "old_login": "password authentication failed",
                 "new_accepted": True, "new_login": "login succeeded", "nodes_on_new": {"node-0": True, "node-1": True}}


def test_secret_rotated() -> None:
    assert secret_rotated()(hist([sample(4, SECRET_F, GOOD_ROTATION)])).verdict is Verdict.PASS


def test_secret_rotation_fails_when_a_node_kept_the_old_password() -> None:
    v = {**GOOD_ROTATION, "nodes_on_new": {"node-0": True, "node-1": False}, "revoked": 2}
    c = secret_rotated()(hist([sample(4, SECRET_F, v)]))
    assert c.verdict is Verdict.FAIL and "node-1" in c.detail


def test_secret_rotation_fails_when_the_old_password_still_works() -> None:
    c = secret_rotated()(hist([sample(4, SECRET_F, {**GOOD_ROTATION, "old_rejected": False})]))
    assert c.verdict is Verdict.FAIL and "old password not rejected" in c.detail


def test_failed_calls_budget() -> None:
    ev: list[Event] = []
    for i in range(400):
        ev += op(i + 1, "probe", f"p{i % 4}", i * 0.05, i * 0.05 + 0.01, process="probe-0")
    ev += op(1000, "increment", "k", 1.0, 1.1, "fail", value=1)
    assert failed_calls_at_most(0.005)(hist(ev)).verdict is Verdict.PASS  # 1/401
    ev += op(1001, "increment", "k", 1.2, 1.3, "info", value=1)
    ev += op(1002, "read", "k", 1.4, 1.5, "fail")
    c = failed_calls_at_most(0.005)(hist(ev))  # 3/403 = 0.74 %
    assert c.verdict is Verdict.FAIL and "3 of 403" in c.detail
    # final reads are not part of the budget
    assert failed_calls_at_most(0.5)(hist(op(1, "final-read", "k", 1, 2, "fail"))).verdict is Verdict.UNKNOWN


def test_no_secret_in_artifacts(tmp_path: Path) -> None:
    (tmp_path / "node-0.log").write_text("rotated\n")
    rec = Recorder()
    rec.log("rotated", role="goverse")
    assert no_secret_in([tmp_path], ["pw-old", "pw-new"])(rec.history()).verdict is Verdict.PASS
    rec.log("oops", dsn="host=x password=pw-new")
    c = no_secret_in([tmp_path], ["pw-old", "pw-new"])(rec.history())
    assert c.verdict is Verdict.FAIL and "pw-new" not in c.detail and "<history events>" in c.detail
    (tmp_path / "node-1.log").write_text("password pw-old\n")
    c = no_secret_in([tmp_path], ["pw-old"])(History([]))
    assert c.verdict is Verdict.FAIL and "node-1.log" in c.detail and "pw-old" not in c.detail


# ---- backup and restore ----------------------------------------------------------------------------------
def restore_history(restored: dict[str, int], finals: dict[str, int]) -> History:
    ev: list[Event] = []
    ev += op(1, "increment", "k", 1.0, 1.1, value=3)   # acked before the point (5.0)
    ev += op(2, "increment", "k", 5.5, 5.6, value=4)   # during the dump (ends 6.0)
    ev += op(3, "increment", "k", 7.0, 7.1, value=5)   # after the dump, lost by the wipe at 8.0
    ev += op(4, "increment", "k", 12.0, 12.1, value=6)  # after the data was restored (10.0)
    ev += op(5, "increment", "k", 12.2, 20.0, "info", value=1)  # indeterminate, after
    ev.append(sample(10.0, RESTORED_F, {"backup_point": 5.0, "backup_end": 6.0, "t_data": 10.0, "values": restored}))
    for i, (k, v) in enumerate(sorted(finals.items())):
        ev += op(100 + i, "final-read", k, 21.0, 21.1, result=v, process="final")
    return hist(ev)


def test_restored_matches_backup() -> None:
    assert restored_matches_backup()(restore_history({"k": 3}, {"k": 9})).verdict is Verdict.PASS
    assert restored_matches_backup()(restore_history({"k": 7}, {"k": 13})).verdict is Verdict.PASS


def test_restore_missing_acknowledged_data_fails() -> None:
    c = restored_matches_backup()(restore_history({"k": 0}, {"k": 6}))
    assert c.verdict is Verdict.FAIL and "restored 0 not in [3, 7]" in c.detail


def test_a_periodic_save_moves_the_lower_bound_back_by_its_interval() -> None:
    """Goverse saves every N s: its database — and a backup of it — holds what was acknowledged N s
    (plus the read gap) before the point. Judged as on the reference stack, the 3 acknowledged at 1.1 s
    must be in a 5.0 s backup; with a 4 s interval only what was acknowledged before 0.5 s must."""
    import dataclasses

    from harness import capabilities

    def on(stack: str, interval: float | None) -> History:
        caps = capabilities.for_stack(stack, interval)
        return dataclasses.replace(restore_history({"k": 0}, {"k": 6}), meta={capabilities.META_KEY: caps.to_meta()})

    assert restored_matches_backup()(on("reference", None)).verdict is Verdict.FAIL
    c = restored_matches_backup()(on("goverse", 4.0))
    assert c.data["save_lag_s"] == 4.5 and "restored 0" not in c.detail
    assert c.verdict is Verdict.UNKNOWN  # nothing acknowledged before 0.5 s: no evidence either way
    c = restored_matches_backup()(dataclasses.replace(restore_history({"k": 12}, {"k": 18}),
                                                      meta=on("goverse", 1.0).meta))
    assert c.verdict is Verdict.FAIL and "phantom" in c.detail and "saves every 1 s" in c.detail
    c = restored_matches_backup()(on("goverse", None))  # Goverse's default 5 min: cannot be judged
    assert c.verdict is Verdict.NOT_APPLICABLE and "persists objects only every 300 s" in c.detail


def test_restore_holding_writes_after_the_backup_fails() -> None:
    c = restored_matches_backup()(restore_history({"k": 12}, {"k": 18}))
    assert c.verdict is Verdict.FAIL and "phantom" in c.detail


def test_no_restore_recorded_is_unknown() -> None:
    h = hist(op(1, "increment", "k", 1.0, 1.1, value=3))
    assert restored_matches_backup()(h).verdict is Verdict.UNKNOWN
    assert no_lost_writes_after_restore()(h).verdict is Verdict.UNKNOWN


def test_no_lost_writes_after_restore() -> None:
    assert no_lost_writes_after_restore()(restore_history({"k": 3}, {"k": 9})).verdict is Verdict.PASS
    assert no_lost_writes_after_restore()(restore_history({"k": 3}, {"k": 10})).verdict is Verdict.PASS  # +info
    lost = no_lost_writes_after_restore()(restore_history({"k": 3}, {"k": 5}))
    assert lost.verdict is Verdict.FAIL and "lost" in lost.detail
    phantom = no_lost_writes_after_restore()(restore_history({"k": 3}, {"k": 14}))
    assert phantom.verdict is Verdict.FAIL and "phantom" in phantom.detail
    assert no_lost_writes_after_restore()(restore_history({"k": 3}, {})).verdict is Verdict.UNKNOWN
