"""Runs that know when they were starved: the workload measures its own scheduling lag, and a scenario
whose harness lagged past ``starved_lag_ms`` while measuring is ``unknown`` with the reason — even when
its checks failed — while an unstarved run keeps its verdict."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

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


def test_the_threshold_is_a_setting_recorded_in_the_history(tmp_path: Path) -> None:
    """``starved_lag_ms`` (setting, default 250 ms) goes into the history's meta and the result, so an
    offline rebuild judges with it: 900 ms of lag is starved at 250 ms and not at 1000 ms."""
    from harness.checkers.availability import MeasureParams
    from harness.settings import load_settings

    lenient = load_settings({"starved_lag_ms": 1000}, env={})
    sc = Scenario("lenient", tmp_path / "a", deployment=None, injector=None, settings=lenient, seed_tag="t")
    for e in lag_samples([5.0, 900.0]):
        sc.recorder.add(e)
    sc.conclude(failing)
    data = json.loads((tmp_path / "a" / "result.json").read_text())
    assert data["verdict"] == "fail" and data["extra"]["starved_lag_ms"] == 1000.0
    history = sc.recorder.history()
    assert history.meta["starved_lag_ms"] == 1000.0
    assert MeasureParams.for_history(history).starved_lag_ms == 1000.0 and starvation(history) is None
    assert starvation(History(lag_samples([900.0]))) is not None  # the default, 250 ms


SCENARIOS = '''
from harness.checkers.verdict import Check, Verdict
from harness.history import Event


def lag(scenario, ms):
    for i, v in enumerate((5.0, ms)):
        scenario.recorder.add(Event(i * 0.5, "sample", "harness", "harness-lag", value={"lag_ms": v, "load1": 9.0}))


def test_starved(scenario):
    lag(scenario, 900.0)
    result = scenario.conclude(lambda h: Check("lost_writes", Verdict.FAIL, "lost 3 writes"))
    assert result.passed, result.explain()


def test_seeded_bug_on_a_quiet_machine(scenario):
    lag(scenario, 12.0)
    result = scenario.conclude(lambda h: Check("lost_writes", Verdict.FAIL, "lost 3 writes"))
    assert result.passed, result.explain()


def test_starved_with_a_stale_read(scenario):
    lag(scenario, 900.0)
    result = scenario.conclude(lambda h: Check("monotonic_reads", Verdict.FAIL, "a read went backwards"))
    assert result.passed, result.explain()


def test_unknown_for_another_reason(scenario):
    lag(scenario, 12.0)
    result = scenario.conclude(lambda h: Check("final_reads", Verdict.UNKNOWN, "no final read"))
    assert result.passed, result.explain()
'''

CONFTEST = '''
import types

import pytest


class NoInjector:
    def inject(self, fault):
        raise AssertionError("no faults here")


@pytest.fixture(scope="module")
def stack():
    return None  # Scenario works without a stack (no capabilities declared)


@pytest.fixture(scope="session")
def platform():
    return types.SimpleNamespace(injector=lambda stack: NoInjector())
'''


def run_pytest(tmp_path: Path, *args: str) -> tuple[int, str, dict[str, Any], str]:
    """Run four scenarios through the real plugin in a subprocess (a starved one whose timing checks
    failed, a starved one with a stale read, a seeded bug on a quiet machine, an unknown for another
    reason); exit status, output, run.json, junit.xml."""
    import os
    import subprocess
    import sys

    (tmp_path / "test_three.py").write_text(SCENARIOS)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    art = tmp_path / "artifacts"
    env = {**os.environ, "GVH_PLATFORM": "kind"}  # no local sweep: nothing here deploys
    env.pop("GVH_RUN_DIR", None)
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "--artifacts", str(art),
                        str(tmp_path / "test_three.py"), *args], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    run = json.loads((art / "latest" / "run.json").read_text())
    return p.returncode, p.stdout + p.stderr, run, (art / "latest" / "junit.xml").read_text()


def test_starved_unknown_does_not_fail_the_run_but_other_unknowns_and_bugs_do(tmp_path: Path) -> None:
    code, out, run, junit = run_pytest(tmp_path)
    assert code == 1, out
    assert "3 failed, 1 skipped" in out, out
    assert "unknown: measurement invalid: harness starved (lag 900 ms" in out, out
    verdicts = {s["id"].rsplit(".", 1)[-1]: s["verdict"] for s in run["scenarios"]}
    assert verdicts == {"test_starved": "unknown", "test_seeded_bug_on_a_quiet_machine": "fail",
                        "test_unknown_for_another_reason": "unknown", "test_starved_with_a_stale_read": "fail"}
    assert run["summary"]["starved"] == 1 and run["summary"]["unknown"] == 2
    assert run["settings"]["starved_lag_ms"] == 250.0 and run["settings"]["strict_unknown"] is False
    assert "1 unknown because the harness was starved (measurement invalid): not counted as failures" in out
    assert 'type="starved"' in junit and 'errors="1"' in junit and 'failures="2"' in junit
    # each scenario's wall time reaches run.json and junit (a CI page shows durations from it)
    assert all((s.get("duration_s") or 0) > 0 for s in run["scenarios"]), run["scenarios"]
    assert 'time="0.000"' not in junit, junit


def test_strict_unknown_fails_the_starved_scenario_too(tmp_path: Path) -> None:
    code, out, run, junit = run_pytest(tmp_path, "--strict-unknown")
    assert code == 1 and "4 failed" in out, out
    assert run["summary"]["starved"] == 1 and run["settings"]["strict_unknown"] is True
    assert 'type="starved"' not in junit and 'errors="2"' in junit and 'failures="2"' in junit


def test_the_lag_watch_records_a_real_stall_of_its_process() -> None:
    """A load run (locust in other processes) is judged by the timer thread's lag: a stall of this
    process (here: the GIL held for 0.6 s, as a starved machine withholds the CPU) shows up."""
    from harness.workload.lagwatch import LagWatch

    rec = Recorder()
    with LagWatch(rec, tick_s=0.05, sample_s=0.1) as watch:
        wait_until(lambda: len(rec.history().samples("harness-lag")) >= 2, 10, "lag samples")
        quiet = watch.worst_ms
        interval = sys.getswitchinterval()
        sys.setswitchinterval(5.0)  # this thread keeps the GIL: the watch thread cannot run
        try:
            end = time.monotonic() + 0.6
            while time.monotonic() < end:
                pass
        finally:
            sys.setswitchinterval(interval)
        wait_until(lambda: starvation(rec.history()) is not None, 10, "the stall to be recorded")
    assert quiet < 250
    s = starvation(rec.history())
    assert s is not None and s.lag_ms >= 300, s


def test_the_lag_watch_counts_a_watched_process_waiting_for_a_cpu() -> None:
    """The generator's own starvation, from the kernel's run-queue counter: busy processes pinned to
    one CPU with the watched one wait for it, and ``runq_ms`` says how long per interval."""
    import os
    import subprocess

    from harness.workload.lagwatch import LagWatch

    spin = [sys.executable, "-c", "while True: pass"]
    cpu = {min(os.sched_getaffinity(0))}
    procs = [subprocess.Popen(spin) for _ in range(3)]
    try:
        for p in procs:
            os.sched_setaffinity(p.pid, cpu)  # three busy processes on one CPU: each waits ~2/3 of the time
        rec = Recorder()
        with LagWatch(rec, pids=lambda: [procs[0].pid]):
            wait_until(lambda: len(rec.history().samples("harness-lag")) >= 3, 20, "lag samples")
        runq = [e.value["runq_ms"] for e in rec.history().samples("harness-lag")][1:]
        assert max(runq) >= 250, runq
        assert starvation(rec.history()) is not None
    finally:
        for p in procs:
            p.kill()
            p.wait()


DEPLOY_CONFTEST = '''
import pytest

from harness.pytest_plugin import DeployError


@pytest.fixture(scope="module")
def stack():
    raise DeployError("deploy failed: etcd did not answer (full error: x)")
'''


def test_a_deploy_error_is_an_unknown_scenario_in_its_own_directory_with_its_time(tmp_path: Path) -> None:
    """A stack that never came up: the scenario is `unknown` with the reason, written where the
    scenario's results go (the directory named from its node id), with its wall time in run.json and
    junit like any other scenario."""
    import os
    import subprocess
    import sys

    from harness.report.store import scenario_dirname

    (tmp_path / "test_dep.py").write_text("def test_never_deployed(scenario):\n    raise AssertionError('ran')\n")
    (tmp_path / "conftest.py").write_text(DEPLOY_CONFTEST)
    art = tmp_path / "artifacts"
    env = {**os.environ, "GVH_PLATFORM": "kind"}
    env.pop("GVH_RUN_DIR", None)
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--artifacts", str(art),
                        str(tmp_path / "test_dep.py")], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    run = json.loads((art / "latest" / "run.json").read_text())
    (s,) = run["scenarios"]
    assert s["verdict"] == "unknown" and "etcd did not answer" in s["reason"], s
    assert s["dir"] == scenario_dirname("test_dep.py::test_never_deployed"), s["dir"]
    assert (s.get("duration_s") or 0) > 0, s
    assert 'time="0.000"' not in (art / "latest" / "junit.xml").read_text()
