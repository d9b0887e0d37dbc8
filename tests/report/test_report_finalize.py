"""Assembling a run: run.json schema round trip, junit.xml that xml.etree parses, and a self-contained
report.html with the embedded plots and the conformance table — rendered headless (Agg)."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.checkers import check, converged, measure, no_lost_writes, rto, single_ownership
from harness.history import History
from harness.report import RUN_SCHEMA, RunDir, RunStore, ScenarioResult, finalize, write_scenario_result
from tests.support.paths import DATA

HISTORIES = DATA / "histories"
CONFORMANCE = [
    {"id": "2.1.ready-drops", "section": "2.1", "title": "readiness drops on shutdown", "verdict": "pass",
     "evidence": "/ready 503 after 0.2 s"},
    {"id": "2.10.x", "section": "2.10", "title": "ordering check", "verdict": "unknown",
     "evidence": "<b>not escaped?</b>"},
    {"id": "2.2.drain", "section": "2.2", "title": "SIGTERM drains calls", "verdict": "fail",
     "evidence": "exit after 31 s > grace 30 s"},
]
SCENARIOS = {
    "scenarios/test_restarts.py::test_recovers_from[sigkill-node]": "kill_node_recovers",
    "scenarios/test_restarts.py::test_recovers_from[slow-failover]": "outage_never_recovers",
    "scenarios/test_restarts.py::test_recovers_from[ack-before-persist]": "lost_writes",
    "scenarios/test_restarts.py::test_recovers_from[goverse]": "kill_node_no_epochs",
}


def make_run(root: Path) -> RunDir:
    run = RunStore(root).create(now=datetime(2026, 11, 28, 10, 0, tzinfo=UTC), short_id="f00d")
    for sid, name in SCENARIOS.items():
        h = History.load(HISTORIES / f"{name}.jsonl")
        result = check(h, no_lost_writes(), single_ownership(), converged(within_s=5), rto(budget_s=10))
        res = ScenarioResult.from_check(sid, result, measure(h), h, duration_s=30.0)
        write_scenario_result(run.scenario_dir(sid), res, h, checks=result)
    skipped = ScenarioResult.skipped("scenarios/test_partitions.py::test_partition[halves]",
                                     "Unsupported: network partitions need root or a user namespace")
    write_scenario_result(run.scenario_dir(skipped.id), skipped)
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    run = make_run(tmp_path_factory.mktemp("artifacts"))
    finalize(run, {"platform": "local", "stack": "reference", "conformance": CONFORMANCE,
                   "tool_versions": {"etcd": "3.4.23"}, "seed": 7})
    return run


def test_run_json_has_the_v1_schema(run_dir: RunDir) -> None:
    run = json.loads(run_dir.run_json.read_text())
    assert run["schema"] == RUN_SCHEMA == "goverse-harness/run/v1"
    assert run["run_id"] == "20261128T100000Z-f00d"
    assert run["started_at"] == "2026-11-28T10:00:00Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", run["finished_at"])
    assert (run["platform"], run["stack"], run["seed"]) == ("local", "reference", 7)
    assert run["tool_versions"]["etcd"] == "3.4.23" and "python" in run["tool_versions"]
    assert run["summary"] == {"verdict": "fail", "total": 5, "pass": 1, "fail": 2, "unknown": 1, "skipped": 1,
                              "conformance": {"fail": 1, "pass": 1, "unknown": 1},
                              "starved": 0}
    by_id = {s["id"]: s for s in run["scenarios"]}
    ok = by_id["scenarios/test_restarts.py::test_recovers_from[sigkill-node]"]
    for key in ("id", "verdict", "reason", "faults", "rto_s", "unavailability_s", "recovery_after_heal_s",
                "latency", "checks", "extra"):
        assert key in ok
    assert ok["verdict"] == "pass" and ok["rto_s"] == pytest.approx(6.0, abs=0.01)
    assert set(ok["faults"][0]) >= {"kind", "target", "injected_at", "healed_at"}
    assert set(ok["latency"]["during"]["probe"]) == {"count", "errors", "p50", "p95", "p99", "max"}
    assert all(set(c) == {"name", "verdict", "detail"} for c in ok["checks"])
    slow = by_id["scenarios/test_restarts.py::test_recovers_from[slow-failover]"]
    assert slow["verdict"] == "fail" and slow["rto_s"] is None and "never recovered" in slow["reason"]
    goverse = by_id["scenarios/test_restarts.py::test_recovers_from[goverse]"]
    assert goverse["verdict"] == "unknown" and "no ownership epochs" in goverse["reason"]
    skipped = by_id["scenarios/test_partitions.py::test_partition[halves]"]
    assert skipped["verdict"] == "skipped" and skipped["reason"].startswith("Unsupported")


def test_run_json_round_trips_through_scenario_results(run_dir: RunDir) -> None:
    run = json.loads(run_dir.run_json.read_text())
    assert [ScenarioResult.from_dict(s).to_dict() for s in run["scenarios"]] == run["scenarios"]
    assert [r.to_dict() for r in run_dir.scenario_results()] == run["scenarios"]


def test_refinalizing_keeps_the_provenance(run_dir: RunDir) -> None:
    before = json.loads(run_dir.run_json.read_text())
    again = finalize(run_dir)
    assert (again["platform"], again["conformance"], again["finished_at"]) == (
        before["platform"], before["conformance"], before["finished_at"])


def test_junit_parses_with_a_testcase_per_scenario(run_dir: RunDir) -> None:
    root = ET.parse(run_dir.junit_xml).getroot()
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "5", "2", "1", "1")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert len(cases) == 5
    slow = cases["test_recovers_from[slow-failover]"]
    assert slow.get("classname") == "scenarios.test_restarts"
    failure = slow.find("failure")
    assert failure is not None
    message = failure.get("message", "")
    assert message.startswith("no_lost_writes unknown: 16 of 16 keys have no final read")
    assert "never recovered after kill node-1" in message
    assert "never recovered" in (failure.text or "")
    assert cases["test_recovers_from[goverse]"].find("error") is not None
    assert cases["test_partition[halves]"].find("skipped") is not None
    ok = cases["test_recovers_from[sigkill-node]"]
    assert ok.find("failure") is None and ok.find("error") is None
    props = {p.get("name"): p.get("value") for p in ok.iter("property")}
    assert props["rto_s"] == "6.000924"


def test_report_html_is_self_contained_with_plots_and_conformance(run_dir: RunDir) -> None:
    html = run_dir.report_html.read_text()
    images = re.findall(r'<img class="plot" alt="([^"]+)" src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 8  # two plots for each of the four scenarios that ran
    for _name, b64 in images:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'src="http' not in html and "<link" not in html  # nothing external
    sections = re.findall(r"<h3>Seed section ([\d.]+)", html)
    assert sections == ["2.1", "2.2", "2.10"]  # natural order
    assert "SIGTERM drains calls" in html and "exit after 31 s &gt; grace 30 s" in html
    assert "<b>not escaped?</b>" not in html and "&lt;b&gt;not escaped?&lt;/b&gt;" in html
    assert "Unsupported: network partitions need root" in html
    assert "6.00 s" in html and "never" in html


def test_report_without_conformance_has_no_conformance_section(tmp_path: Path) -> None:
    run = RunStore(tmp_path).create(short_id="c")
    write_scenario_result(run.scenario_dir("t::a"), ScenarioResult(id="t::a", verdict="pass"))
    out = finalize(run, {"platform": "local"})
    assert "conformance" not in out
    assert 'id="conformance"' not in run.report_html.read_text()


def test_an_empty_run_is_unknown(tmp_path: Path) -> None:
    out = finalize(RunStore(tmp_path).create(short_id="e"))
    assert out["summary"]["verdict"] == "unknown" and out["scenarios"] == []


def test_a_conformance_only_run_is_decided_by_its_checks(tmp_path: Path) -> None:
    """`run scenarios/test_conformance.py` on Goverse: 25 decided checks, no scenario rows; the run said
    'unknown' with '0 pass, 0 fail'. Its verdict and summary line now count the conformance checks."""
    from harness.report.summary import summary_table

    run = RunStore(tmp_path).create(short_id="k")
    (run.path / "conformance").mkdir()
    rows = (("2.1-health-endpoints", "pass"), ("2.6-json-logs", "fail"), ("4.1-dockerfile", "not-applicable"))
    for cid, verdict in rows:
        (run.path / "conformance" / f"{cid}.json").write_text(json.dumps({"id": cid, "verdict": verdict}))
    out = finalize(run, {"platform": "local"})
    assert out["summary"]["verdict"] == "fail" and out["summary"]["total"] == 0
    assert out["summary"]["conformance"] == {"fail": 1, "not-applicable": 1, "pass": 1}
    line = summary_table(out).splitlines()[-1]
    assert line == "0 pass, 0 fail, 0 unknown, 0 skipped; conformance: 1 fail, 1 not-applicable, 1 pass — run FAIL"
    for f in (run.path / "conformance").glob("*.json"):
        f.write_text(json.dumps({**json.loads(f.read_text()), "verdict": "pass"}))
    assert finalize(run, {"platform": "local"}, keep_previous=False)["summary"]["verdict"] == "pass"
