"""The detection matrix in run.json and the main HTML report: ``goverse-harness bugs`` makes its output
directory a run of its own (run.json with ``bug_matrix``, report.html from report.html.j2), built here
from real run.json files (tests/data/runs) exactly as bugs_main writes it."""

from __future__ import annotations

import json
from pathlib import Path

from harness.bugmatrix import Run, Selection, build_matrix, write_outputs
from harness.report.finalize import finalize
from tests.support.paths import DATA as TEST_DATA

RUNS = TEST_DATA / "runs"
RESTART = Selection("scenarios/test_restarts.py", "restart_node_sigkill")
PAUSE = Selection("scenarios/test_chaos.py", "pause-one-node]")


def run_json(name: str) -> dict:
    return json.loads((RUNS / f"{name}.json").read_text(encoding="utf-8"))


def matrix_of(runs: list[Run], out: Path) -> dict:
    m = build_matrix(runs)
    m["runs"] = [{"bug": r.bug, "selection": r.selection.label, "repeat": r.repeat, "exit_code": r.exit_code,
                  "artifacts": str(out / "runs" / (r.bug or "correct") / r.selection.label / str(r.repeat)),
                  "run_id": (r.run_json or {}).get("run_id")} for r in runs]
    return m


def test_run_json_and_report_carry_the_matrix(tmp_path: Path) -> None:
    out = tmp_path / "bugs" / "20261203T180000Z"
    out.mkdir(parents=True)
    runs = [Run("slow-failover", RESTART, 0, run_json("restart_sigkill_slow_failover"), 1),
            Run("no-fencing", PAUSE, 0, run_json("pause_no_fencing"), 1),
            Run(None, RESTART, 0, run_json("restarts_correct"), 0),
            Run(None, PAUSE, 0, run_json("chaos_kill_pause_correct"), 0)]
    run = write_outputs(matrix_of(runs, out), out, started_at="2026-12-03T18:00:00Z")
    on_disk = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert on_disk == run and run["command"] == "bugs" and run["run_id"] == out.name
    bm = run["bug_matrix"]
    assert bm["bugs"]["slow-failover"]["scenarios"]["restarts.test_restart_node_sigkill"]["failed_checks"] == {"rto": 1}
    assert bm["correct_build"]["false_alarms"] == 0 and bm["ok"] is True
    assert run["summary"]["verdict"] == "pass" and run["started_at"] == "2026-12-03T18:00:00Z"
    first = bm["runs"][0]
    assert first["report"] == f"runs/slow-failover/{RESTART.label}/0/runs/{first['run_id']}/report.html"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="bug-matrix"' in page and "every bug caught at its stated rate, no false alarm" in page
    assert "<code>slow-failover</code>" in page and "rto 1/1" in page
    assert "0 false alarms in" in page and f'href="{first["report"]}"' in page
    # the stand-alone page is still written, from the same partial
    assert "rto 1/1" in (out / "matrix.html").read_text(encoding="utf-8")
    # re-rendering the run (goverse-harness report --rebuild) keeps the matrix
    again = finalize(out)
    assert again["bug_matrix"] == bm and 'id="bug-matrix"' in (out / "report.html").read_text(encoding="utf-8")


def test_a_matrix_below_its_rate_fails_the_run(tmp_path: Path) -> None:
    runs = [Run("no-fencing", PAUSE, 0, run_json("pause_no_fencing"), 1),
            Run("no-fencing", PAUSE, 1, run_json("chaos_kill_pause_correct"), 0)]  # a repeat that missed it
    run = write_outputs(matrix_of(runs, tmp_path), tmp_path)
    assert run["bug_matrix"]["ok"] is False and run["summary"]["verdict"] == "fail"
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "BELOW RATE (needs 2)" in page and "below the stated rate or false alarms" in page


def test_a_plain_run_has_no_matrix_section(tmp_path: Path) -> None:
    run = finalize(tmp_path, {"platform": "local"})
    assert "bug_matrix" not in run
    assert 'id="bug-matrix"' not in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_conformance_selections_count_their_checks() -> None:
    """Real runs of ``test_conformance.py -k test_env_`` (2026-12-03): with ``env-ignored`` the four 2.3
    checks fail, on the correct build they pass. Both wrote conformance rows and no scenario, which the
    matrix once counted as errors (and as false alarms of the correct build)."""
    env = Selection("scenarios/test_conformance.py", "test_env_")
    m = build_matrix([Run("env-ignored", env, 0, run_json("conformance_env_ignored"), 1),
                      Run(None, env, 0, run_json("conformance_env_correct"), 0)])
    b = m["bugs"]["env-ignored"]
    assert (b["caught"], b["ok"]) == (1, True)
    cell = b["scenarios"]["conformance 2.3-env-node-id"]
    assert (cell["caught"], cell["errors"], cell["failed_checks"]) == (1, 0, {"2.3-env-node-id": 1})
    assert len(b["scenarios"]) == 4
    cb = m["correct_build"]
    assert (cb["runs"], cb["false_alarms"]) == (4, 0) and m["ok"] is True
