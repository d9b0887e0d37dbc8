"""The after phase must not end inside a dip: ``Scenario.wait_ops_ok`` judges the tail of the history
(completed probes only) — the condition ``settle_clean`` waits on before a scenario stops observing."""

from __future__ import annotations

from pathlib import Path

from harness.history import Event
from harness.scenario import Scenario


def scenario_with_probes(tmp_path: Path, outcomes: list[str], in_flight_at_end: bool = False) -> Scenario:
    sc = Scenario("after-phase", tmp_path, deployment=None, injector=None, settings=None, seed_tag="t")
    for i, outcome in enumerate(outcomes):  # 20 Hz probes, 10 ms each
        t = i * 0.05
        sc.recorder.add(Event(t, "invoke", "probe-0", "probe", key=f"probe-{i % 32:02d}", op_id=i))
        sc.recorder.add(Event(t + 0.01, outcome, "probe-0", "probe", key=f"probe-{i % 32:02d}", op_id=i,
                              error=None if outcome == "ok" else "CALL_FAILED: no live etcd lease"))
    if in_flight_at_end:
        sc.recorder.add(Event(len(outcomes) * 0.05, "invoke", "probe-0", "probe", key="probe-00", op_id=10_000))
    return sc


def test_a_clean_tail_ends_the_wait(tmp_path: Path) -> None:
    sc = scenario_with_probes(tmp_path, ["fail"] * 20 + ["ok"] * 80)
    assert sc.wait_ops_ok(0.3, window_s=2.0, lag_s=0.0)


def test_a_failure_in_the_tail_keeps_it_waiting(tmp_path: Path) -> None:
    # the case CI met: one probe failed 0.1 s before the history ended (a lease expiring after the heal)
    sc = scenario_with_probes(tmp_path, ["ok"] * 98 + ["fail", "ok"])
    assert not sc.wait_ops_ok(0.3, window_s=2.0, lag_s=0.0)
    assert sc.wait_ops_ok(0.3, window_s=2.0, lag_s=1.0)  # the lagged check alone would have missed it


def test_a_probe_still_in_flight_is_not_judged_yet(tmp_path: Path) -> None:
    sc = scenario_with_probes(tmp_path, ["ok"] * 100, in_flight_at_end=True)
    assert sc.wait_ops_ok(0.3, window_s=2.0, lag_s=0.0)


def test_too_few_probes_is_not_clean(tmp_path: Path) -> None:
    sc = scenario_with_probes(tmp_path, ["ok"] * 3)
    assert not sc.wait_ops_ok(0.3, window_s=2.0, lag_s=0.0)


def test_settle_clean_needs_a_whole_recovery_window_after_the_last_failure(tmp_path: Path) -> None:
    # w + W = 3 s (docs/definitions.md) plus 0.5 s: a failure 2 s before the end is too recent even
    # though the asked-for after phase (1 s) is clean — the case of scale nodes down reading "never"
    late = scenario_with_probes(tmp_path / "late", ["ok"] * 60 + ["fail"] + ["ok"] * 39)
    assert not late.settle_clean(0.0, "after", timeout=0.3)
    assert any(e.type == "log" and "not clean" in e.f for e in late.recorder.history().events)
    early = scenario_with_probes(tmp_path / "early", ["ok"] * 20 + ["fail"] + ["ok"] * 79)
    assert early.settle_clean(0.0, "after", timeout=0.3)


def test_a_call_hanging_for_more_than_a_second_is_not_clean(tmp_path: Path) -> None:
    # the case a refactor let through: calls on a cut node hang until their timeout; with the lagged
    # window of the heal wait they must count against recovery, not be skipped as "in flight"
    sc = scenario_with_probes(tmp_path, ["ok"] * 100)
    sc.recorder.add(Event(3.5, "invoke", "probe-1", "probe", key="probe-05", op_id=20_000))  # never completes
    assert not sc.wait_ops_ok(0.3, window_s=1.0, lag_s=1.0)
    assert not sc.wait_ops_ok(0.3, window_s=2.0, lag_s=0.0)
