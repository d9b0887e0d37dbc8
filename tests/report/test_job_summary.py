"""The CI job summary (harness/report/job_summary.py, scripts/job_summary.py) on real run.json files.

Why "real": the summary must read what the harness actually writes, not a hand-made dict that drifts
from the schema. Every ``tests/data/runs/*/run.json`` (a recorded local run) is used when present;
until one is committed, a run.json is produced by the harness's own report code
(``check`` → ``measure`` → ``ScenarioResult`` → ``write_scenario_result`` → ``finalize``) over the
recorded histories in ``tests/data/histories/`` — the same pipeline a scenario runs at its end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness.checkers import check, converged, measure, no_lost_writes, rto, single_ownership
from harness.history import History
from harness.report import RUN_SCHEMA, RunStore, ScenarioResult, finalize, write_scenario_result
from harness.report.job_summary import cell, job_summary
from harness.report.results import scenario_p99
from harness.report.summary import fmt_ms, fmt_rto
from tests.support.paths import DATA, ROOT

SCRIPT = ROOT / "scripts" / "job_summary.py"
RECORDED_RUNS = sorted((DATA / "runs").glob("*/run.json"))
FROM_HISTORIES = {
    "scenarios/test_restarts.py::test_restart_node_sigkill": "kill_node_recovers",
    "scenarios/test_restarts.py::test_restart_node_sigkill[slow-failover]": "outage_never_recovers",
    "scenarios/test_restarts.py::test_restart_node_sigkill[ack-before-persist]": "lost_writes",
}
CONFORMANCE = [
    {"id": "2.1.ready-drops", "section": "2.1", "title": "readiness drops on shutdown", "verdict": "pass",
     "evidence": "/ready 503 after 0.2 s"},
    {"id": "2.2.drain", "section": "2.2", "title": "SIGTERM drains calls", "verdict": "fail",
     "evidence": "exit after 31 s > grace 30 s | <b>quoted</b>"},
    {"id": "2.10.order", "section": "2.10", "title": "ordering", "verdict": "pass", "evidence": "ok"},
]


def build_run_from_histories(root: Path) -> Path:
    """A run directory made by the report pipeline from recorded histories; returns its run.json."""
    run = RunStore(root).create(now=datetime(2026, 11, 28, 10, 0, tzinfo=UTC), short_id="ab12")
    for sid, name in FROM_HISTORIES.items():
        h = History.load(DATA / "histories" / f"{name}.jsonl")
        result = check(h, no_lost_writes(), single_ownership(), converged(within_s=5), rto(budget_s=10))
        res = ScenarioResult.from_check(sid, result, measure(h), h, duration_s=30.0)
        write_scenario_result(run.scenario_dir(sid), res, h, checks=result, plots=False)
    skipped = ScenarioResult.skipped("scenarios/test_partitions.py::test_partition[halves]",
                                     "Unsupported: network partitions need root | a user namespace")
    write_scenario_result(run.scenario_dir(skipped.id), skipped)
    finalize(run, {"platform": "local", "stack": "reference", "conformance": CONFORMANCE})
    return run.run_json


@pytest.fixture(scope="module")
def built_run_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run_from_histories(tmp_path_factory.mktemp("artifacts"))


def _real_runs() -> list[Any]:
    params: list[Any] = [pytest.param(p, id=f"recorded-{p.parent.name}") for p in RECORDED_RUNS]
    return params + [pytest.param(None, id="built-from-histories")]


@pytest.fixture(params=_real_runs())
def run_json(request: pytest.FixtureRequest, built_run_json: Path) -> Path:
    """Each recorded run.json under tests/data/runs/, plus the one built from the histories."""
    return request.param or built_run_json


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def table_rows(md: str) -> list[list[str]]:
    """The scenario table's body rows, split into cells (escaped pipes kept inside cells)."""
    lines = md.splitlines()
    start = lines.index("| scenario | verdict | RTO | p99 |") + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        parts = [p.strip().replace("\\|", "|") for p in line.strip("|").replace("\\|", "\x00").split("|")]
        rows.append([p.replace("\x00", "|") for p in parts])
    return rows


def test_every_scenario_has_a_row_with_its_numbers(run_json: Path) -> None:
    run = load(run_json)
    assert run["schema"] == RUN_SCHEMA
    md = job_summary(run)
    rows = table_rows(md)
    assert len(rows) == len(run["scenarios"]) > 0
    for s, row in zip(run["scenarios"], rows, strict=True):
        assert row[0] == cell(s["id"]).replace("\\|", "|")
        assert row[1].endswith(s["verdict"])
        assert row[2] == fmt_rto(s)
        assert row[3] == fmt_ms(scenario_p99(s))
    summary = run["summary"]
    assert f"**{summary['total']} scenarios:**" in md
    assert md.startswith("## goverse-harness: ")
    assert summary["verdict"].upper() in md.splitlines()[0]


def test_numbers_of_the_built_run_are_the_measured_ones(built_run_json: Path) -> None:
    """The known histories: a 7 s RTO, a fault that never recovered, lost writes, a skip."""
    md = job_summary(load(built_run_json))
    rows = {r[0]: r for r in table_rows(md)}
    ok = rows["scenarios/test_restarts.py::test_restart_node_sigkill"]
    assert ok[1] == "✅ pass" and ok[2] == "6.00 s" and ok[3].endswith(" ms")
    never = rows["scenarios/test_restarts.py::test_restart_node_sigkill[slow-failover]"]
    assert never[1] == "❌ fail" and never[2] == "never"
    assert rows["scenarios/test_partitions.py::test_partition[halves]"][1:] == ["⏭️ skipped", "—", "—"]
    assert "## goverse-harness: ❌ FAIL" in md
    assert "run `20261128T100000Z-ab12` · platform `local` · stack `reference`" in md
    assert "**4 scenarios:** 1 pass, 2 fail, 1 skipped" in md
    # why each one did not pass, with the checker's numbers; the pipe in the skip reason is escaped
    assert "never recovered" in md
    assert "Unsupported: network partitions need root \\| a user namespace" in md


def test_conformance_section_counts_by_seed_section(built_run_json: Path) -> None:
    md = job_summary(load(built_run_json))
    assert "### Conformance: 2 pass, 1 fail" in md
    sections = [ln.split("|")[1].strip() for ln in md.splitlines()
                if ln.startswith("| 2.") and ln.count("|") == 4]
    assert sections == ["2.1", "2.2", "2.10"]  # natural order: 2.10 after 2.2
    assert "| 2.2.drain SIGTERM drains calls | ❌ fail | exit after 31 s &gt; grace 30 s \\| &lt;b&gt;quoted" in md


def test_no_conformance_section_without_conformance() -> None:
    run = {"schema": RUN_SCHEMA, "scenarios": [{"id": "a", "verdict": "pass"}]}
    assert "Conformance" not in job_summary(run)


def test_cells_cannot_break_the_table() -> None:
    assert cell("a|b\nc  d") == "a\\|b c d"
    assert cell("<script>") == "&lt;script&gt;"
    assert cell("x" * 50, limit=10) == "x" * 9 + "…"
    run = {"schema": RUN_SCHEMA, "scenarios": [
        {"id": "evil|id\n| injected | row |", "verdict": "fail", "reason": "line1\nline2 | <img src=x>"}]}
    md = job_summary(run)
    body = md.splitlines()
    table_start = body.index("| scenario | verdict | RTO | p99 |")
    assert body[table_start + 2] == "| evil\\|id \\| injected \\| row \\| | ❌ fail | — | — |"
    assert "<img" not in md


def test_unknown_schema_and_empty_run_say_so() -> None:
    md = job_summary({"schema": "goverse-harness/run/v99", "scenarios": []})
    assert "schema is `goverse-harness/run/v99`" in md
    assert "_No scenario result in this run._" in md
    assert "UNKNOWN" in md.splitlines()[0]  # no scenario: the overall verdict is unknown, never pass


# ---- the script ------------------------------------------------------------------------------------
def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False,
                          env=full_env, cwd=ROOT, timeout=60)


def test_script_appends_to_github_step_summary(run_json: Path, tmp_path: Path) -> None:
    out = tmp_path / "summary.md"
    out.write_text("earlier step\n", encoding="utf-8")
    proc = run_script(str(run_json), "--title", "nightly kind-1.35", env={"GITHUB_STEP_SUMMARY": str(out)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    text = out.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n## nightly kind-1.35: ")
    assert text.endswith(job_summary(load(run_json), "nightly kind-1.35"))


def test_script_prints_to_stdout_and_accepts_a_run_directory(built_run_json: Path) -> None:
    proc = run_script(str(built_run_json.parent))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == job_summary(load(built_run_json))


def test_script_without_run_json_writes_a_note_and_does_not_fail(tmp_path: Path) -> None:
    proc = run_script(str(tmp_path / "artifacts" / "latest" / "run.json"))
    assert proc.returncode == 0
    assert "no run.json" in proc.stdout and "not found" in proc.stdout


def test_script_fails_on_a_corrupt_run_json(tmp_path: Path) -> None:
    bad = tmp_path / "run.json"
    bad.write_text('{"schema": "goverse-harness/run/v1", "scenarios": [', encoding="utf-8")
    proc = run_script(str(bad))
    assert proc.returncode == 2
    assert "unreadable" in proc.stdout
