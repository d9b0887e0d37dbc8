"""The one verdict model shared by scenarios, load budgets and conformance: ``not-applicable`` is never a
pass and fails nothing; the run-level rule is the checkers' merge; checks.json keeps every check's data."""

from __future__ import annotations

import json
from pathlib import Path

from harness.checkers.verdict import Check, CheckResult, Verdict, decide, merge_verdicts
from harness.conformance import model
from harness.history import History
from harness.report.results import ScenarioResult, overall_verdict, write_scenario_result

NA = Verdict.NOT_APPLICABLE


def test_conformance_uses_the_checkers_verdict() -> None:
    assert model.Verdict is Verdict
    assert model.merge is merge_verdicts


def test_not_applicable_only_wins_when_nothing_was_decided() -> None:
    assert merge_verdicts([NA, NA]) is NA
    assert merge_verdicts([NA, Verdict.PASS]) is Verdict.PASS
    assert merge_verdicts([NA, Verdict.UNKNOWN, Verdict.PASS]) is Verdict.UNKNOWN
    assert merge_verdicts([NA, Verdict.FAIL]) is Verdict.FAIL
    assert merge_verdicts([]) is Verdict.UNKNOWN


def test_not_applicable_is_never_a_pass_and_its_reason_is_shown() -> None:
    r = CheckResult((Check("servicemonitor", NA, "overlay has no Prometheus Operator"),))
    assert not r.passed
    assert r.failed() == []
    assert "overlay has no Prometheus Operator" in r.reason()
    assert "not-applicable" in r.explain()
    mixed = CheckResult((Check("a", Verdict.PASS, "ok"), Check("b", NA, "no such thing here")))
    assert mixed.passed and mixed.verdict is Verdict.PASS
    assert "no such thing here" in mixed.explain()


def test_the_run_rule_skips_not_applicable_and_merges_the_rest() -> None:
    assert overall_verdict(["pass", "not-applicable"]) == "pass"
    assert overall_verdict(["not-applicable", "skipped"]) == "skipped"
    assert overall_verdict(["pass", "unknown", "not-applicable"]) == "unknown"
    assert overall_verdict(["fail", "unknown"]) == "fail"
    assert overall_verdict([]) == "unknown"


def test_decide_fails_then_unknown_then_passes() -> None:
    assert decide("x", {}, failed="bad", unknown="nothing", passed="good").verdict is Verdict.FAIL
    assert decide("x", {}, failed=None, unknown="nothing", passed="good").verdict is Verdict.UNKNOWN
    c = decide("x", {"n": 1}, failed=None, unknown=None, passed="good")
    assert (c.verdict, c.detail, c.data) == (Verdict.PASS, "good", {"n": 1})


def test_checks_json_keeps_every_checks_data(tmp_path: Path) -> None:
    result = CheckResult((Check("rto", Verdict.FAIL, "14.3 s > 10 s", {"rto_s": 14.3, "budget_s": 10}),
                          Check("converged", Verdict.PASS, "yes", {"within_s": 2.0})))
    sr = ScenarioResult.from_check("s", result)
    write_scenario_result(tmp_path, sr, History([]), checks=result, plots=False)
    got = json.loads((tmp_path / "checks.json").read_text())
    assert got == [{"name": "rto", "verdict": "fail", "detail": "14.3 s > 10 s",
                    "data": {"rto_s": 14.3, "budget_s": 10}},
                   {"name": "converged", "verdict": "pass", "detail": "yes", "data": {"within_s": 2.0}}]
    other = tmp_path / "none"
    write_scenario_result(other, ScenarioResult.skipped("t", "unsupported"), None)
    assert json.loads((other / "checks.json").read_text()) == []
