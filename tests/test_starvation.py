"""Runs that know when they were starved: the workload measures its own scheduling lag, and a scenario
whose harness lagged past ``starved_lag_ms`` while measuring is ``unknown`` with the reason — even when
its checks failed — while an unstarved run keeps its verdict."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from harness.checkers import no_lost_writes
from harness.checkers.measure import lag_by_phase, starvation
from harness.checkers.verdict import Check, Verdict
from harness.history import Event, History, Recorder
from harness.scenario import Scenario
from harness.waiting import wait_until
from harness.workload.runner import Workload, WorkloadSpec
from harness.workload.standin import StandInGate


def lag_samples(lags: list[float], step: float = 0.5) -> list[Event]:
    return [Event(i * step, "sample", "harness", "harness-lag", value={"lag_ms": v, "load1": 1.0})
            for i, v in enumerate(lags)]


def test_starvation_names_the_first_lag_over_the_threshold() -> None:
    assert starvation(History(lag_samples([3.0, 40.0, 249.0]))) is None
    s = starvation(History(lag_samples([3.0, 850.0, 20.0, 1200.0])))
    assert s is not None and (s.t, s.lag_ms, s.worst_ms) == (0.5, 850.0, 1200.0)
    assert s.reason.startswith("measurement invalid: harness starved (lag 850 ms at t=0.50s")


def test_lag_by_phase_splits_at_the_fault_window() -> None:
    v = {"id": "f1", "kind": "kill", "target": "node-0", "params": {}}
    events = lag_samples([1.0, 2.0, 300.0, 4.0]) + [Event(0.9, "nemesis", "nemesis", "start", value=v),
                                                      Event(1.1, "nemesis", "nemesis", "stop", value=v)]
    by = lag_by_phase(History(sorted(events, key=lambda e: e.t)))
    assert by["before"]["max_lag_ms"] == 2.0 and by["during"]["max_lag_ms"] == 300.0
    assert by["after"]["samples"] == 1 and by["after"]["load1_mean"] == 1.0


def failing(history: History) -> Check:
    return Check("seeded_bug", Verdict.FAIL, "lost 3 writes")


def test_a_starved_scenario_is_unknown_with_the_reason(tmp_path: Path) -> None:
    sc = Scenario("starved", tmp_path, deployment=None, injector=None, settings=None, seed_tag="t")
    for e in lag_samples([5.0, 900.0]):
        sc.recorder.add(e)
    result = sc.conclude(failing)
    assert result.verdict is Verdict.FAIL  # the checks' own result is kept for the explanation
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["verdict"] == "unknown"
    assert data["reason"].startswith("measurement invalid: harness starved (lag 900 ms at t=0.50s")
    assert "lost 3 writes" in data["reason"] and data["extra"]["starved"]["lag_ms"] == 900.0


def test_a_starved_scenario_with_lost_writes_fails_with_that_evidence(tmp_path: Path) -> None:
    """Lost acknowledged writes are judged on values: lag cannot fake them, so starvation does not hide them."""
    sc = Scenario("starved-lost", tmp_path, deployment=None, injector=None, settings=None, seed_tag="t")
    for e in lag_samples([5.0, 900.0]):
        sc.recorder.add(e)
    for i, (f, value, kind) in enumerate([("increment", 1, "ok"), ("increment", 2, "ok"), ("final-read", None, "ok")]):
        sc.recorder.add(Event(2.0 + i, "invoke", "client-0", f, key="k", value=value, op_id=i + 1))
        sc.recorder.add(Event(2.1 + i, kind, "client-0", f, key="k", value=1 if f == "final-read" else None,
                              op_id=i + 1))
    result = sc.conclude(no_lost_writes(), failing)
    assert result.verdict is Verdict.FAIL
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["verdict"] == "fail"
    assert data["reason"].startswith("no_lost_writes failed (judged on values and order, valid under lag); "
                                     "timing checks not judged: measurement invalid: harness starved")
    assert "final 1 < acknowledged 3" in data["reason"]
    checks = {c["name"]: c["verdict"] for c in json.loads((tmp_path / "checks.json").read_text())}
    assert checks["measurement_valid"] == "unknown" and checks["no_lost_writes"] == "fail"


def test_an_unstarved_failing_scenario_still_fails(tmp_path: Path) -> None:
    sc = Scenario("quiet", tmp_path, deployment=None, injector=None, settings=None, seed_tag="t")
    for e in lag_samples([5.0, 12.0]):
        sc.recorder.add(e)
    sc.conclude(failing)
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["verdict"] == "fail" and data["extra"]["harness_lag"]["all"]["max_lag_ms"] == 12.0


def test_the_workload_measures_a_real_stall_of_its_loop() -> None:
    rec = Recorder()
    with StandInGate(rec.now) as gate:
        wl = Workload(rec, {"gate-0": gate.url}, WorkloadSpec(probe_hz=20, counter_rate=0, probe_keys=4))
        with wl.running(load=False):
            wait_until(lambda: len(rec.history().samples("harness-lag")) >= 2, 10, "lag samples")
            assert wl._loop is not None
            blocked = threading.Event()
            # block the workload's event loop for 0.6 s, as a starved machine would
            wl._loop.call_soon_threadsafe(lambda: (time.sleep(0.6), blocked.set()))  # sleep-ok: the stall
            assert blocked.wait(10)
            wait_until(lambda: starvation(rec.history()) is not None, 10, "the stall to be recorded")
    s = starvation(rec.history())
    assert s is not None and s.lag_ms >= 500


def test_a_starved_scenario_with_a_timing_free_failure_still_fails(tmp_path: Path) -> None:
    """Starvation widens op intervals; it cannot make a read stale or lose a write. A caught bug
    counts even on a starved run; a starved timing failure stays unknown (above)."""
    sc = Scenario("starved-stale", tmp_path, deployment=None, injector=None, settings=None, seed_tag="t")
    for e in lag_samples([5.0, 900.0]):
        sc.recorder.add(e)

    def stale(history: History) -> Check:
        return Check("monotonic_reads", Verdict.FAIL, "key k read 3 after 5")

    sc.conclude(stale, failing)
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["verdict"] == "fail"
    assert "harness starved" in data["reason"] and "monotonic_reads failed" in data["reason"]
    assert data["extra"]["starved"]["kept_fail_of"] == ["monotonic_reads"]
