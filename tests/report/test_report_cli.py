"""`goverse-harness report` on bad input: one line naming the problem and exit 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.report.cli import report_main
from harness.report.finalize import finalize
from harness.report.results import ScenarioResult, write_scenario_result
from harness.report.store import RunDir, RunStore


def _run(root: Path) -> RunDir:
    run = RunStore(root).create()
    write_scenario_result(run.path / "chaos.kill", ScenarioResult(id="chaos.kill", verdict="pass", rto_s=1.5,
                                                                  duration_s=12.0))
    finalize(run)
    return run


def test_bad_schema_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path)
    data = json.loads(run.run_json.read_text())
    for bad in (5, "goverse-harness/run/v9"):
        run.run_json.write_text(json.dumps({**data, "schema": bad}))
        assert report_main([str(run.path)]) == 2
        assert f"schema is {bad!r}" in capsys.readouterr().err
    run.run_json.write_text(json.dumps({**data, "scenarios": [{"id": "x", "verdict": "maybe"}]}))
    assert report_main([str(run.path)]) == 2
    assert "verdict 'maybe'" in capsys.readouterr().err


def test_rebuild_over_corrupt_run_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path)
    run.run_json.write_text("{broken")
    assert report_main([str(run.path)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    assert report_main([str(run.path), "--rebuild"]) == 0
    out = capsys.readouterr()
    assert "1 pass" in out.out and "run.json.corrupt" in out.err
    assert json.loads(run.run_json.read_text())["scenarios"][0]["id"] == "chaos.kill"


def test_negative_margin_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path)
    with pytest.raises(SystemExit) as exc:
        report_main([str(run.path), "--compare", str(run.path), "--margin", "-1"])
    assert exc.value.code == 2
    assert "--margin: must be >= 0" in capsys.readouterr().err


def test_report_content_is_for_people(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No Python reprs, the seeded bug named in report.html and junit, compare.html with units and links."""
    run = RunStore(tmp_path).create(short_id="cur")
    write_scenario_result(run.path / "chaos.kill", ScenarioResult(
        id="chaos.kill", verdict="fail", reason="acknowledged increments lost", rto_s=15.0, duration_s=41.5,
        extra={"availability": 0.6190476190476191, "rpo_s": None, "measure_params": {"window_s": 1.0}}))
    finalize(run, {"settings": {"bugs": ["ack-before-persist"]}, "platform": "local", "stack": "reference"})
    html = run.report_html.read_text()
    assert "ack-before-persist" in html
    for repr_ in ("None", "{'window_s'", "0.6190476190476191"):
        assert repr_ not in html, repr_
    assert "window_s: 1" in html and "0.619" in html
    junit = run.junit_xml.read_text()
    assert 'name="seeded_bugs" value="ack-before-persist"' in junit and 'time="41.500"' in junit
    base = RunStore(tmp_path).create(short_id="base")
    write_scenario_result(base.path / "chaos.kill", ScenarioResult(id="chaos.kill", verdict="fail", rto_s=7.0))
    finalize(base)
    assert report_main([str(run.path), "--compare", str(base.path)]) == 1
    page = (run.path / "compare.html").read_text()
    assert "7.00 s" in page and "15.00 s" in page
    assert f'href="{run.path.name}/report.html"' not in page  # relative to the page itself
    assert 'href="report.html"' in page and f'href="../{base.path.name}/report.html"' in page
