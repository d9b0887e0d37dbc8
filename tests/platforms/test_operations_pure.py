"""The pure parts of the operations (harness/checkers/operations.py, harness/platforms/operations.py):
rolling order, window overlap, /metrics and
log parsing, restored-data bounds, RPO, migrating keys, secret scanning — each shown right on good data
and shown to object to bad data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.checkers.operations import (
    KeyBounds,
    counter_bounds,
    overlapping_windows,
    restored_violations,
    secret_leaks,
)
from harness.history import Event, FaultWindow, History
from harness.platforms.operations import (
    last_run,
    level_in_effect,
    log_levels,
    parse_build_versions,
    restore_procedure_s,
    rolling_order,
    rpo_s,
)
from harness.sharding import migrating_keys, shard_of


# ---- rolling order -----------------------------------------------------------------------------------
def test_rolling_order_nodes_first_highest_ordinal_first_leader_last() -> None:
    insts = [("gate-0", "gate"), ("node-0", "node"), ("inspector", "inspector"), ("node-2", "node"),
             ("gate-1", "gate"), ("node-1", "node"), ("node-10", "node")]
    assert rolling_order(insts, leader="node-2") == [
        "node-10", "node-1", "node-0", "node-2", "gate-1", "gate-0", "inspector"]


def test_rolling_order_without_leader_and_every_instance_once() -> None:
    insts = [("node-0", "node"), ("node-1", "node"), ("gate-0", "gate")]
    order = rolling_order(insts)
    assert order == ["node-1", "node-0", "gate-0"]
    assert sorted(order) == sorted(n for n, _ in insts)


def test_rolling_order_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        rolling_order([("node-0", "node"), ("node-0", "node")])


# ---- windows -----------------------------------------------------------------------------------------
def w(i: str, start: float, stop: float | None) -> FaultWindow:
    return FaultWindow(i, "rolling-upgrade", i, {}, start, stop)


def test_sequential_windows_do_not_overlap_even_when_touching() -> None:
    assert overlapping_windows([w("a", 0, 1), w("b", 1, 2), w("c", 2.5, 3)], end=10) == []


def test_overlapping_windows_are_named_in_pairs() -> None:
    assert overlapping_windows([w("a", 0, 2), w("b", 1, 3), w("c", 2.5, 4)], end=10) == [("a", "b"), ("b", "c")]


def test_a_window_never_closed_overlaps_everything_after_it() -> None:
    assert overlapping_windows([w("a", 0, None), w("b", 5, 6)], end=10) == [("a", "b")]


# ---- /metrics ------------------------------------------------------------------------------------------
METRICS = """# HELP goverse_build_info Version of the running process (--version-tag)
# TYPE goverse_build_info gauge
goverse_build_info{version="B"} 1.0
goverse_shards_total{node="n1"} 21.0
"""


def test_build_version_parsed() -> None:
    assert parse_build_versions(METRICS) == {"B"}


def test_stale_zero_series_and_other_metrics_ignored() -> None:
    text = METRICS + 'goverse_build_info{version="A"} 0.0\ngoverse_build_infox{version="Z"} 1\n'
    assert parse_build_versions(text) == {"B"}


def test_two_live_versions_both_reported_and_none_when_absent() -> None:
    assert parse_build_versions('goverse_build_info{version="A"} 1\ngoverse_build_info{version="B"} 1\n') == {"A", "B"}
    assert parse_build_versions("goverse_shards_total 3\n") == set()


# ---- log level -----------------------------------------------------------------------------------------
def jl(level: str) -> str:
    return json.dumps({"ts": "2026-01-01T00:00:00.000Z", "level": level, "msg": "x"})


def test_log_levels_counts_json_lines_only() -> None:
    header = "--- node-0: python -m harness.refstack node"
    text = "\n".join([header, jl("info"), jl("warning"), jl("info"), "garbage {"])
    assert log_levels(text) == {"info": 2, "warning": 1}


# Goverse v0.1.1's own lines (its loggers start at WARN and read no LOG_LEVEL)
GOVERSE_LOG = """--- node-0: ip netns exec gvh-node-0 /bin/goverse-app --config /tmp/n.yaml --node-id node-0
goverse-app: Counter and Wallet registered, persistence interval 1s
[2026-12-03 15:09:24.867] [WARN] [ConsensusManager] ConsensusManager not ready: No nodes available
[2026-12-03 15:09:29.871] [ERROR] [Cluster] Failed to claim shard ownership
"""


def test_log_levels_reads_text_lines_too() -> None:
    assert log_levels(GOVERSE_LOG) == {"warn": 1, "error": 1}
    assert log_levels("ts=1 level=INFO msg=x\nts=2 level=debug msg=y") == {"info": 1, "debug": 1}
    assert last_run(GOVERSE_LOG + "--- node-0: again\n[x] [INFO] up\n") == "--- node-0: again\n[x] [INFO] up\n"


def test_a_setting_that_changes_nothing_logged_is_not_in_effect() -> None:
    """At info, 25 records and none below warn: warn afterwards proves nothing (Goverse, config update)."""
    ok, why = level_in_effect({"warn": 4}, "warn", before={"warn": 24, "error": 1}, before_value="info")
    assert ok is False and "at LOG_LEVEL=info before the roll it logged 25 records, none below warn" in why
    ok, why = level_in_effect({}, "warn", before={"warn": 24, "error": 1}, before_value="info")
    assert ok is False and "changes nothing it logs" in why  # the evidence, even with nothing logged since
    # the reference stack logs info lines at info: the change is visible and warn is in effect
    assert level_in_effect({"warning": 4}, "warn", before={"info": 30, "warning": 2}, before_value="info")[0]
    # too few records before to tell: judged on the lines since the restart alone
    assert level_in_effect({"warn": 4}, "warn", before={"warn": 3}, before_value="info")[0]


def test_warn_in_effect_only_without_info_lines() -> None:
    assert level_in_effect({"warning": 2}, "warn")[0] is True
    ok, why = level_in_effect({"warning": 2, "info": 5}, "warn")
    assert ok is False and "info" in why


def test_debug_needs_a_debug_line() -> None:
    assert level_in_effect({"debug": 1, "info": 3}, "debug")[0] is True
    ok, why = level_in_effect({"info": 3}, "debug")
    assert ok is False and "no debug line" in why


def test_no_line_at_all_proves_nothing() -> None:
    ok, why = level_in_effect({}, "warn")
    assert ok is None and "unknown" in why


def test_unknown_level_is_an_error() -> None:
    with pytest.raises(ValueError):
        level_in_effect({"info": 1}, "loud")


# ---- restored data --------------------------------------------------------------------------------------
def inc(op_id: int, key: str, amount: int, t0: float, t1: float, outcome: str = "ok") -> list[Event]:
    return [Event(t0, "invoke", "client-0", "increment", key=key, value=amount, op_id=op_id),
            Event(t1, outcome, "client-0", "increment", key=key, value=None, op_id=op_id)]


def history(*groups: list[Event]) -> History:
    return History(sorted((e for g in groups for e in g), key=lambda e: e.t))


BACKUP = (5.0, 6.0)  # point, end
H = history(
    inc(1, "k", 3, 1.0, 1.2),             # acked before the point: must be restored
    inc(2, "k", 4, 4.8, 5.3),             # in flight at the point: may or may not be
    inc(3, "k", 5, 5.5, 5.6),             # during the dump: may or may not be
    inc(4, "k", 7, 6.5, 6.6),             # after the dump finished: must not be
    inc(5, "k", 100, 2.0, 2.1, "fail"),   # definitely not applied: never counts
    inc(6, "j", 2, 5.9, 9.0, "info"),     # indeterminate, invoked before the end: may be
)


def test_counter_bounds() -> None:
    b = counter_bounds(H, *BACKUP)
    assert b["k"] == KeyBounds(lo=3, hi=12)
    assert b["j"] == KeyBounds(lo=0, hi=2)


def test_restored_within_bounds_passes() -> None:
    b = counter_bounds(H, *BACKUP)
    assert restored_violations(b, {"k": 3, "j": 0}) == []
    assert restored_violations(b, {"k": 12, "j": 2}) == []


def test_restored_below_acknowledged_is_lost() -> None:
    bad = restored_violations(counter_bounds(H, *BACKUP), {"k": 2, "j": 0})
    assert [(r["key"], r["problem"], r["missing"]) for r in bad] == [("k", "lost", 1)]


def test_restored_with_writes_after_the_backup_is_phantom() -> None:
    bad = restored_violations(counter_bounds(H, *BACKUP), {"k": 19, "j": 0})  # includes the 7 after the dump
    assert [(r["key"], r["problem"], r["excess"]) for r in bad] == [("k", "phantom", 7)]


def test_a_key_not_read_back_is_missing() -> None:
    bad = restored_violations(counter_bounds(H, *BACKUP), {"k": 3})
    assert [(r["key"], r["problem"]) for r in bad] == [("j", "missing")]


def test_backup_end_before_point_is_rejected() -> None:
    with pytest.raises(ValueError):
        counter_bounds(H, 6.0, 5.0)


# ---- RPO ---------------------------------------------------------------------------------------------
def test_rpo_is_fault_minus_backup_point() -> None:
    assert rpo_s(5.0, 9.25) == pytest.approx(4.25)
    assert rpo_s(5.0, 5.0) == 0.0


def test_rpo_of_a_backup_taken_after_the_fault_is_an_error() -> None:
    with pytest.raises(ValueError, match="precedes"):
        rpo_s(5.0, 4.0)


def test_restore_procedure_is_the_steps_without_the_ready_wait() -> None:
    # the wipe on the shared Kubernetes cluster: 62.7 s of which 26.5 s waiting for the stack
    k8s = {"stop_nodes_s": 0.6, "etcd_s": 22.1, "postgres_s": 8.7, "start_s": 3.9, "ready_s": 26.5}
    assert restore_procedure_s(k8s) == pytest.approx(35.3)
    assert restore_procedure_s({"stop_nodes_s": 0.5, "postgres_s": 1.0, "ready_s": 9.0}) == pytest.approx(1.5)
    assert restore_procedure_s(None) == 0.0


def test_restore_procedure_refuses_a_phase_it_cannot_place() -> None:
    with pytest.raises(ValueError, match="pvc_s"):
        restore_procedure_s({"etcd_s": 1.0, "pvc_s": 2.0})


# ---- migrating keys --------------------------------------------------------------------------------------
def test_migrating_keys_are_those_whose_shard_changed_owner() -> None:
    keys = [f"key-{i}" for i in range(40)]
    before = {s: ("n1", "n1") for s in range(8)}
    after = dict(before)
    after[3] = ("n2", "n2")
    moved = migrating_keys(keys, 8, before, after)
    assert moved == sorted(k for k in keys if shard_of(k, 8) == 3)
    assert moved  # the sample does hit shard 3
    assert migrating_keys(keys, 8, before, before) == []


# ---- secrets -------------------------------------------------------------------------------------------
def test_secret_leaks_names_files_never_values(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "node-0.log").write_text("password rotated\n")
    (tmp_path / "history.jsonl").write_text('{"value":"s3cr3t-NEW"}\n')
    assert secret_leaks([tmp_path], ["s3cr3t-OLD", "s3cr3t-NEW"]) == [str(tmp_path / "history.jsonl")]
    assert secret_leaks([tmp_path], ["s3cr3t-OLD"]) == []
    assert secret_leaks([tmp_path / "logs" / "node-0.log"], ["rotated"]) == [str(tmp_path / "logs" / "node-0.log")]
    assert secret_leaks([tmp_path], ["", ""]) == []
