"""``report RUN --compare BASELINE``: regressions are flagged (and only regressions), the terminal
summary table, and report_main's exit codes."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness.report import RunStore, ScenarioResult, compare, finalize, summary_table, write_scenario_result
from harness.report.cli import report_main
from harness.report.compare import render_compare_html, render_compare_text
from tests.support.paths import DATA


def scenario(sid: str, verdict: str = "pass", rto_s: float | None = 5.0, p99: float | None = 20.0,
             recovered: bool | None = True, reason: str = "") -> dict[str, Any]:
    latency = {"all": {"*": {"count": 100, "errors": 0, "p50": 3.0, "p95": 10.0, "p99": p99, "max": 40.0}}}
    return ScenarioResult(id=sid, verdict=verdict, reason=reason, rto_s=rto_s, latency=latency,
                          extra={"recovered": recovered}).to_dict()


BASELINE = {"run_id": "base", "scenarios": [
    scenario("restart::sigkill", rto_s=7.0, p99=20.0),
    scenario("restart::graceful", rto_s=0.5, p99=10.0),
    scenario("bootstrap", rto_s=None, recovered=None, p99=8.0),
]}


def test_identical_runs_have_no_regressions() -> None:
    assert compare(copy.deepcopy(BASELINE), BASELINE) == []


def test_an_injected_rto_regression_is_flagged_with_the_numbers() -> None:
    run = copy.deepcopy(BASELINE)
    run["run_id"] = "new"
    run["scenarios"][0]["rto_s"] = 14.3
    regs = compare(run, BASELINE, margin=0.2)
    assert [(r.scenario, r.what, r.baseline, r.current) for r in regs] == [("restart::sigkill", "rto_s", 7.0, 14.3)]
    assert regs[0].message == "restart::sigkill: RTO 7.00 s → 14.30 s (+104% > 20%)"
    text = render_compare_text(regs, run, BASELINE)
    assert text.startswith("compare new against baseline base: 1 regression(s)")
    assert "restart::sigkill: RTO 7.00 s → 14.30 s" in render_compare_html(regs, run, BASELINE)


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"verdict": "fail", "reason": "no_lost_writes fail: key ctr-01 lost 8"}, "verdict"),
        ({"verdict": "unknown"}, "verdict"),
        ({"verdict": "skipped"}, "verdict"),
        ({"rto_s": None, "extra": {"recovered": False}}, "rto_s"),
        ({"latency": {"all": {"*": {"p99": 35.0}}}}, "p99_ms"),
    ],
)
def test_each_kind_of_regression(change: dict[str, Any], what: str) -> None:
    run = copy.deepcopy(BASELINE)
    run["scenarios"][0].update(change)
    regs = compare(run, BASELINE)
    assert [r.what for r in regs] == [what]
    if what == "rto_s":
        assert regs[0].message.endswith("→ never")
    if what == "verdict" and "reason" in change:
        assert "(no_lost_writes fail: key ctr-01 lost 8)" in regs[0].message


@pytest.mark.parametrize(
    "change",
    [
        {"rto_s": 8.0},  # +14 %: inside the 20 % margin
        {"rto_s": 3.0},  # better
        {"latency": {"all": {"*": {"p99": 23.0}}}},  # +15 %
        {"verdict": "pass"},
    ],
)
def test_noise_and_improvements_are_not_regressions(change: dict[str, Any]) -> None:
    run = copy.deepcopy(BASELINE)
    run["scenarios"][0].update(change)
    assert compare(run, BASELINE) == []


def test_absolute_floor_ignores_tiny_changes() -> None:
    run = copy.deepcopy(BASELINE)
    run["scenarios"][1]["rto_s"] = 0.9  # +80 % but only 0.4 s
    assert compare(run, BASELINE) == []
    assert [r.what for r in compare(run, BASELINE, min_rto_s=0.1)] == ["rto_s"]


def test_missing_scenario_is_a_regression_and_a_new_one_is_not() -> None:
    run = copy.deepcopy(BASELINE)
    run["scenarios"] = run["scenarios"][1:] + [scenario("brand-new")]
    regs = compare(run, BASELINE)
    assert [(r.scenario, r.what) for r in regs] == [("restart::sigkill", "missing")]


def test_improved_verdict_is_not_a_regression() -> None:
    base = copy.deepcopy(BASELINE)
    base["scenarios"][0]["verdict"] = "fail"
    assert compare(copy.deepcopy(BASELINE), base) == []


def test_negative_margin_is_refused() -> None:
    with pytest.raises(ValueError):
        compare(BASELINE, BASELINE, margin=-0.1)


def test_summary_table_shows_scenario_verdict_rto_p99() -> None:
    run = {"scenarios": [
        scenario("restart::sigkill", rto_s=7.0, p99=6.52),
        scenario("restart::slow", verdict="fail", rto_s=None, recovered=False, reason="rto fail: never recovered"),
        scenario("bootstrap", rto_s=None, recovered=None, p99=None),
    ]}
    lines = summary_table(run).splitlines()
    assert lines[0].split() == ["scenario", "verdict", "RTO", "p99"]
    assert lines[2].split() == ["restart::sigkill", "PASS", "7.00", "s", "6.5", "ms"]
    assert lines[3].split() == ["restart::slow", "FAIL", "never", "20.0", "ms"]
    assert lines[4].split() == ["bootstrap", "PASS", "—", "—"]
    assert lines[5] == "2 pass, 1 fail, 0 unknown, 0 skipped — run FAIL"
    assert lines[6] == "  restart::slow: rto fail: never recovered"


# ---- report_main ------------------------------------------------------------------------------------------
def _stored_run(root: Path, short_id: str, rto_s: float, verdict: str = "pass") -> Path:
    run = RunStore(root).create(now=datetime(2026, 1, 1, tzinfo=UTC), short_id=short_id)
    res = ScenarioResult(id="scenarios/test_restarts.py::test_x[sigkill]", verdict=verdict, rto_s=rto_s,
                         reason="" if verdict == "pass" else "rto fail: RTO over budget")
    write_scenario_result(run.scenario_dir(res.id), res)
    finalize(run, {"platform": "local", "stack": "reference"})
    return run.path


def test_report_main_prints_the_table_and_exits_by_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _stored_run(tmp_path, "good", 7.0)
    assert report_main([str(good)]) == 0
    out = capsys.readouterr().out
    assert "scenarios/test_restarts.py::test_x[sigkill]" in out and "7.00 s" in out
    bad = _stored_run(tmp_path, "bad", 7.0, verdict="fail")
    assert report_main([str(bad / "run.json")]) == 1
    assert report_main(["--artifacts", str(tmp_path), "latest"]) == 1  # latest is the bad one


def test_report_main_compare_flags_the_regression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _stored_run(tmp_path, "base", 7.0)
    worse = _stored_run(tmp_path, "worse", 15.0)
    assert report_main([str(worse), "--compare", str(base)]) == 1
    out = capsys.readouterr().out
    assert "1 regression(s)" in out and "RTO 7.00 s → 15.00 s" in out
    assert (worse / "compare.html").exists()
    assert report_main([str(base), "--compare", str(base)]) == 0
    assert report_main(["--artifacts", str(tmp_path), worse.name, "--compare", base.name, "--margin", "2.0"]) == 0


def test_report_main_rebuilds_a_run_without_run_json(tmp_path: Path) -> None:
    run = _stored_run(tmp_path, "r", 7.0)
    (run / "run.json").unlink()
    (run / "report.html").unlink()
    assert report_main([str(run)]) == 0
    assert json.loads((run / "run.json").read_text())["schema"] == "goverse-harness/run/v1"
    assert (run / "report.html").exists()


def test_report_main_missing_run_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main(["--artifacts", str(tmp_path), "latest"]) == 2
    assert "no run has been recorded" in capsys.readouterr().err
    assert report_main([str(tmp_path / "nope")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report_main([str(empty)]) == 2


# ---- side by side: a local and a Kubernetes run of the same scenarios (real run.json files) -------------
RUNS = DATA / "runs"


def _real() -> tuple[dict[str, Any], dict[str, Any]]:
    """Two runs made for this test: ``-k "sigkill or partition-node-etcd"`` of test_restarts,
    test_partitions and test_chaos, locally and on the binaries Kubernetes cluster (a loaded machine:
    the Kubernetes scenarios ended unknown, which the table must show as they are)."""
    return (json.loads((RUNS / "compare_local.json").read_text()),
            json.loads((RUNS / "compare_kubernetes.json").read_text()))


def test_side_by_side_pairs_the_same_scenario_ids_of_a_local_and_a_kubernetes_run() -> None:
    from harness.report.compare import side_by_side

    local, k8s = _real()
    assert (local["platform"], k8s["platform"]) == ("local", "kubernetes")
    rows = {r.scenario: r for r in side_by_side(k8s, local)}
    assert set(rows) == {s["id"] for s in local["scenarios"]} == {s["id"] for s in k8s["scenarios"]}
    for s_local, s_k8s in zip(local["scenarios"], sorted(k8s["scenarios"], key=lambda s: [
            x["id"] for x in local["scenarios"]].index(s["id"])), strict=True):
        row = rows[s_local["id"]]
        assert row.baseline is not None and row.current is not None
        assert (row.baseline.verdict, row.baseline.rto_s) == (s_local["verdict"], s_local.get("rto_s"))
        assert (row.current.verdict, row.current.rto_s) == (s_k8s["verdict"], s_k8s.get("rto_s"))
        assert row.baseline.p99_ms == s_local["latency"]["all"]["*"]["p99"]
        assert row.current.p99_ms == s_k8s["latency"]["all"]["*"]["p99"]
    etcd = rows["partitions.test_partition-partition-node-etcd"]
    assert etcd.rto_delta_s == pytest.approx(3.852017 - 4.13429)
    assert etcd.p99_delta_ms == pytest.approx(3053.0 - 1357.489, abs=0.1)
    assert rows["restarts.test_restart_node_sigkill"].rto_delta_s is None  # one side never recovered


def test_side_by_side_text_and_html_name_both_platforms_and_show_the_numbers() -> None:
    from harness.report.compare import render_side_by_side_text, side_by_side

    local, k8s = _real()
    text = render_side_by_side_text(side_by_side(k8s, local), k8s, local)
    head, cols, *body = text.splitlines()
    assert f"baseline: local {local['run_id']}" in head and f"run: kubernetes {k8s['run_id']}" in head
    assert head.index("run: kubernetes") == cols.index("verdict", cols.index("p99"))  # the label sits over its side
    line = next(b for b in body if b.startswith("restarts.test_restart_node_sigkill"))
    assert "pass" in line and "4.21 s" in line and "99.1 ms" in line and "unknown" in line and "never" in line
    html = render_compare_html(compare(k8s, local), k8s, local)
    assert "Side by side" in html and "local " + local["run_id"] in html and "4.21 s" in html


def test_side_by_side_marks_a_scenario_only_one_run_has() -> None:
    from harness.report.compare import render_side_by_side_text, side_by_side

    run = {"run_id": "k", "platform": "kubernetes", "scenarios": [scenario("restart::sigkill"), scenario("extra")]}
    rows = side_by_side(run, BASELINE)
    assert [r.scenario for r in rows] == ["restart::sigkill", "restart::graceful", "bootstrap", "extra"]
    assert rows[1].current is None and rows[3].baseline is None
    assert "(absent)" in render_side_by_side_text(rows, run, BASELINE)
