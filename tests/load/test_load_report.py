"""The load report: regression rules, the standalone HTML page and the CLI's exit codes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main as cli_main
from harness.load.report import CompareParams, compare_load, load_scenarios, render_load_report
from harness.report.results import RUN_SCHEMA


def phase(name: str, offered: float, achieved: float, p99: float, err: float = 0.0, kind: str = "phase") -> dict:
    return {"name": name, "kind": kind, "offered_rps": offered, "achieved_rps": achieved, "ok_rps": achieved,
            "achieved_ratio": achieved / offered, "count": int(achieved * 5), "ok": int(achieved * 5),
            "fail": 0, "info": 0, "error_rate": err, "p50": p99 / 4, "p95": p99 / 2, "p99": p99, "max": p99 * 1.5,
            "t_start": 0, "t_end": 5, "duration_s": 5, "ops": {}}


def scenario(sid: str, phases: list[dict], knee: dict | None = None, verdict: str = "pass",
             max_rps: float | None = None) -> dict:
    load = {"phases": phases, "total": phases[0], "knee": knee, "max_throughput_rps": max_rps,
            "generator": {"peak_cpu": {"worker-1": 20.0}, "saturated": []}, "warnings": [], "runs": []}
    return {"id": sid, "verdict": verdict, "reason": "", "dir": sid, "plots": [],
            "extra": {"load": load, "extra_plots": ["load-throughput.png"]}}


def run(run_id: str, *scenarios: dict) -> dict[str, Any]:
    return {"schema": RUN_SCHEMA, "run_id": run_id, "platform": "local", "stack": "reference",
            "scenarios": list(scenarios)}


KNEE = {"found": True, "offered_rps": 500.0, "stage": "step-5", "reason": "p99", "last_good_rps": 400.0}
BASE = run("base",
           scenario("load.steady", [phase("steady", 150, 150, 40)]),
           scenario("load.step", [phase("step-1", 100, 100, 30, kind="stage"), phase("step-5", 500, 380, 900,
                                                                                       kind="stage")],
                    knee=KNEE, max_rps=450.0),
           scenario("load.sigkill", [phase("before", 150, 150, 40), phase("sigkill", 150, 150, 60, err=0.12)]),
           {"id": "restarts.other", "verdict": "pass", "extra": {}})


def test_identical_runs_have_no_regression() -> None:
    assert compare_load(copy.deepcopy(BASE), BASE) == []
    assert [s["id"] for s in load_scenarios(BASE)] == ["load.steady", "load.step", "load.sigkill"]


def test_each_kind_of_regression_is_flagged() -> None:
    cur = copy.deepcopy(BASE)
    cur["scenarios"][0]["extra"]["load"]["phases"][0]["p99"] = 90.0  # +125 %, +50 ms
    step = cur["scenarios"][1]["extra"]["load"]
    step["max_throughput_rps"] = 300.0
    step["knee"] = {**KNEE, "offered_rps": 300.0, "reason": "achieved 250 < 0.9 × 300"}
    step["phases"][1]["p99"] = 5000.0  # past the knee in the baseline: latency not compared there
    cur["scenarios"][2]["extra"]["load"]["phases"][1]["error_rate"] = 0.30
    cur["scenarios"][2]["verdict"] = "fail"
    regs = compare_load(cur, BASE)
    what = {(r.scenario, r.phase, r.what) for r in regs}
    assert what == {("load.steady", "steady", "p99_ms"), ("load.step", None, "max_throughput_rps"),
                    ("load.step", None, "knee_rps"), ("load.sigkill", "sigkill", "error_rate"),
                    ("load.sigkill", None, "verdict")}
    msg = next(r.message for r in regs if r.what == "p99_ms")
    assert "40.0 ms → 90.0 ms" in msg and "+125%" in msg


def test_noise_floors_and_margins() -> None:
    cur = copy.deepcopy(BASE)
    cur["scenarios"][0]["extra"]["load"]["phases"][0]["p99"] = 49.0  # +22 % but only +9 ms: noise
    cur["scenarios"][2]["extra"]["load"]["phases"][1]["error_rate"] = 0.14  # +2 pp < 20 % of 12 %
    assert compare_load(cur, BASE) == []
    assert compare_load(cur, BASE, CompareParams(margin=0.2, min_p99_ms=5.0))[0].what == "p99_ms"
    with pytest.raises(ValueError):
        CompareParams(margin=-1)
    with pytest.raises(ValueError, match="p99-margin"):
        CompareParams(margin=1.5)
    # a wide latency margin (calibrated from two clean runs) silences p99 noise, not throughput losses
    slow = copy.deepcopy(BASE)
    slow["scenarios"][0]["extra"]["load"]["phases"][0]["p99"] = 80.0  # x2
    slow["scenarios"][1]["extra"]["load"]["max_throughput_rps"] = 300.0
    assert {r.what for r in compare_load(slow, BASE)} == {"p99_ms", "max_throughput_rps"}
    assert {r.what for r in compare_load(slow, BASE, CompareParams(p99_margin=1.5))} == {"max_throughput_rps"}


def test_throughput_shortfall_at_the_same_offered_rate_and_missing_scenarios() -> None:
    cur = copy.deepcopy(BASE)
    cur["scenarios"][0]["extra"]["load"]["phases"][0]["achieved_rps"] = 100.0
    del cur["scenarios"][2]
    what = {(r.scenario, r.what) for r in compare_load(cur, BASE)}
    assert what == {("load.steady", "achieved_rps"), ("load.sigkill", "missing")}
    # a different offered rate is not comparable: no achieved-rate regression
    cur["scenarios"][0]["extra"]["load"]["phases"][0]["offered_rps"] = 100.0
    assert ("load.steady", "achieved_rps") not in {(r.scenario, r.what) for r in compare_load(cur, BASE)}


def test_knee_appearing_where_the_baseline_had_none() -> None:
    base = copy.deepcopy(BASE)
    base["scenarios"][1]["extra"]["load"]["knee"] = {"found": False, "offered_rps": None, "last_good_rps": 500.0,
                                                     "reason": "every step was served"}
    regs = compare_load(BASE, base)
    assert [r.what for r in regs] == ["knee_rps"] and "none up to 500" in regs[0].message


PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def _write_run(root: Path, data: dict) -> Path:
    d = root / data["run_id"]
    d.mkdir(parents=True)
    for s in data["scenarios"]:
        if s.get("dir"):
            (d / s["dir"]).mkdir()
            (d / s["dir"] / "load-throughput.png").write_bytes(PNG)
    (d / "run.json").write_text(json.dumps(data))
    return d


def test_cli_writes_a_standalone_page_and_sets_the_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = _write_run(tmp_path, copy.deepcopy(BASE))
    slow = copy.deepcopy(BASE)
    slow["run_id"] = "slow"
    slow["scenarios"][0]["extra"]["load"]["phases"][0]["p99"] = 400.0
    slow["scenarios"][0]["extra"]["load"]["injected"] = {"kind": "latency", "ms": 20}
    cur = _write_run(tmp_path, slow)
    assert cli_main(["load-report", str(base)]) == 0
    assert cli_main(["load-report", str(base), "--compare", str(base)]) == 0
    assert "no regressions" in capsys.readouterr().out
    assert cli_main(["load-report", str(cur), "--compare", str(base), "--html", str(tmp_path / "r.html")]) == 1
    out = capsys.readouterr().out
    assert "1 regression(s)" in out and "p99 40.0 ms → 400.0 ms" in out
    page = (tmp_path / "r.html").read_text()
    assert "1 regression(s) against base" in page and "INJECTED REGRESSION, +20 ms latency" in page
    assert "data:image/png;base64," in page and 'class="num worse"' in page.replace("\n", " ")
    assert cli_main(["load-report", str(tmp_path / "nope")]) == 2
    no_load = _write_run(tmp_path, run("plain", {"id": "restarts.x", "verdict": "pass", "extra": {}}))
    assert cli_main(["load-report", str(no_load)]) == 2


def test_html_escapes_what_it_quotes(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["scenarios"][0]["reason"] = "<script>alert(1)</script>"
    page = render_load_report(data, tmp_path)
    assert "<script>alert(1)" not in page and "&lt;script&gt;" in page


def test_report_html_embeds_extra_plots(tmp_path: Path) -> None:
    """The generic hook in harness/report/html.py: PNGs listed in ``extra["extra_plots"]`` are inlined
    after the standard plots; a listed file that does not exist is reported as missing."""
    from harness.report.html import render_report
    from harness.report.results import ScenarioResult

    d = _write_run(tmp_path, copy.deepcopy(BASE))
    data = json.loads((d / "run.json").read_text())
    data["scenarios"] = [ScenarioResult.from_dict({k: v for k, v in s.items() if k != "reason"} | {"reason": ""})
                         .to_dict() for s in data["scenarios"]]
    data["scenarios"][1]["extra"]["extra_plots"] = ["load-throughput.png", "load-latency.png"]
    page = render_report(data, d)
    assert page.count('alt="load-throughput.png"') == 3
    assert "plot load-latency.png missing" in page
