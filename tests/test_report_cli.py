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
