"""Run directories: naming, the relative ``latest`` symlink, per-scenario files, ScenarioResult JSON."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.checkers import check, measure, no_lost_writes, rto
from harness.history import History
from harness.report import RunDir, RunStore, ScenarioResult, scenario_dirname, write_scenario_result
from tests.support.paths import DATA

HISTORIES = DATA / "histories"


def test_create_names_the_run_by_utc_time_and_points_latest_at_it(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "artifacts")
    run = store.create(now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), short_id="abc123")
    assert run.path == tmp_path / "artifacts" / "runs" / "20260102T030405Z-abc123"
    assert run.started_at() == "2026-01-02T03:04:05Z"
    link = tmp_path / "artifacts" / "latest"
    assert link.is_symlink()
    assert os.readlink(link) == "runs/20260102T030405Z-abc123"  # relative: the tree can be moved
    assert store.latest() == RunDir(run.path.resolve())


def test_latest_moves_to_the_newest_run_and_survives_moving_the_tree(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "a")
    store.create(now=datetime(2026, 1, 1, tzinfo=UTC), short_id="one")
    second = store.create(now=datetime(2026, 1, 2, tzinfo=UTC), short_id="two")
    assert store.latest() is not None and store.latest().run_id == second.run_id
    assert [r.run_id for r in store.all_runs()] == ["20260101T000000Z-one", "20260102T000000Z-two"]
    (tmp_path / "a").rename(tmp_path / "b")
    moved = RunStore(tmp_path / "b").latest()
    assert moved is not None and moved.run_id == "20260102T000000Z-two"


def test_create_refuses_a_bad_short_id_and_an_existing_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(ValueError):
        store.create(short_id="../x")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    store.create(now=now, short_id="x")
    with pytest.raises(FileExistsError):
        store.create(now=now, short_id="x")


@pytest.mark.parametrize(
    ("node_id", "expected"),
    [
        ("scenarios/test_restarts.py::test_recovers_from[sigkill-node]",
         "test_restarts__test_recovers_from-sigkill-node"),
        ("scenarios/test_bootstrap.py::test_cold_start", "test_bootstrap__test_cold_start"),
    ],
)
def test_scenario_dirname_is_readable(node_id: str, expected: str) -> None:
    assert scenario_dirname(node_id) == expected


def test_scenario_dirname_is_safe_and_distinct_for_lossy_ids() -> None:
    a = scenario_dirname("scenarios/t.py::test[a b]")
    b = scenario_dirname("scenarios/t.py::test[a/b]")
    assert a != b
    for name in (a, b, scenario_dirname("x" * 300)):
        assert "/" not in name and " " not in name and len(name) <= 96


def test_write_scenario_result_writes_every_file_and_round_trips(tmp_path: Path) -> None:
    h = History.load(HISTORIES / "kill_node_recovers.jsonl")
    result = check(h, no_lost_writes(), rto(budget_s=5))
    res = ScenarioResult.from_check("scenarios/test_restarts.py::test_recovers_from[sigkill]", result,
                                     measure(h), h, extra={"time_to_ready_s": 1.2}, duration_s=31.5)
    run = RunStore(tmp_path).create(short_id="t")
    sdir = run.scenario_dir(res.id)
    path = write_scenario_result(sdir, res, h, checks=result)
    assert sorted(p.name for p in sdir.iterdir()) == [
        "availability.png", "checks.json", "history.jsonl", "latency.png", "result.json"]
    for png in ("availability.png", "latency.png"):
        assert (sdir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert History.load(sdir / "history.jsonl").events == h.events
    data = json.loads(path.read_text())
    assert data["verdict"] == "fail"
    assert data["reason"].startswith("rto fail: RTO 6.00s > budget 5s")
    assert data["rto_s"] == pytest.approx(6.0, abs=0.01)
    assert data["faults"] == [{
        "id": "f1", "kind": "kill", "target": "node-1", "injected_at": 10.0, "healed_at": 15.0,
        "injected_at_utc": "2025-11-28T10:30:10.000Z", "healed_at_utc": "2025-11-28T10:30:15.000Z",
        "status": "recovered", "rto_s": 6.000924, "recovery_after_heal_s": 1.000924, "unavailability_s": 2.055255}]
    assert data["extra"]["time_to_ready_s"] == 1.2 and data["extra"]["recovered"] is True
    assert data["plots"] == ["availability.png", "latency.png"]
    checks = json.loads((sdir / "checks.json").read_text())
    assert checks[1]["data"]["faults"][0]["rto_s"] == pytest.approx(6.0, abs=0.01)
    back = run.scenario_results()
    assert len(back) == 1 and back[0] == ScenarioResult.from_dict(data)


def test_scenario_result_rejects_an_unknown_verdict_and_keeps_unknown_fields() -> None:
    with pytest.raises(ValueError):
        ScenarioResult(id="x", verdict="ok")
    r = ScenarioResult.from_dict({"id": "x", "verdict": "pass", "newer_field": 3})
    assert r.extra == {"_newer_field": 3}


def test_skipped_scenario_carries_its_reason(tmp_path: Path) -> None:
    r = ScenarioResult.skipped("scenarios/t.py::test_partition", "Unsupported: no network namespaces")
    path = write_scenario_result(tmp_path / "s", r)
    assert json.loads(path.read_text())["reason"] == "Unsupported: no network namespaces"
    assert not (tmp_path / "s" / "history.jsonl").exists()


def test_a_scenario_that_never_concluded_is_recorded_with_the_plugins_verdict(tmp_path: Path) -> None:
    # the pytest plugin's path: the scenario raised before conclude(), so there is no CheckResult
    h = History.load(HISTORIES / "kill_node_recovers.jsonl")
    r = ScenarioResult.from_check("scenarios/t.py::test_x", None, measure(h), h, verdict="unknown",
                                  reason="ConnectionError: gate-0 refused")
    assert (r.verdict, r.reason, r.checks) == ("unknown", "ConnectionError: gate-0 refused", [])
    assert r.rto_s == pytest.approx(6.0, abs=0.01)  # the numbers are still worth reporting
    assert ScenarioResult.from_check("x", None).verdict == "unknown"
    passed = check(h, rto(budget_s=10))
    assert ScenarioResult.from_check("x", passed, reason="forced", verdict="fail").verdict == "fail"
    assert ScenarioResult.from_check("x", passed).reason == ""


def test_create_run_dir_and_finalize_run_for_the_plugin(tmp_path: Path) -> None:
    from harness.report import create_run_dir, finalize_run

    run = create_run_dir(tmp_path / "artifacts")
    assert (tmp_path / "artifacts" / "latest").resolve() == run.resolve()
    write_scenario_result(run / "s", ScenarioResult(id="scenarios/t.py::test_x", verdict="pass", rto_s=1.5))
    table = finalize_run(run, settings={"nodes": 3}, platform="local", stack="reference")
    assert "scenarios/t.py::test_x" in table and "1.50 s" in table and "run PASS" in table
    data = json.loads((run / "run.json").read_text())
    assert data["settings"] == {"nodes": 3} and data["platform"] == "local"


def test_plots_render_headless_whatever_backend_the_environment_asks_for(tmp_path: Path) -> None:
    # a CI box with MPLBACKEND pointing at a GUI toolkit and no display must still get its PNGs
    import subprocess
    import sys

    history = str(HISTORIES / "partial_dip.jsonl")
    code = ("from pathlib import Path; from harness.history import History; "
            "from harness.report.plots import write_plots; "
            f"print(write_plots(Path({str(tmp_path)!r}), History.load(Path({history!r}))))")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "TkAgg"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "availability.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "latency.png").read_bytes()[:4] == b"\x89PNG"
