"""The conformance catalogue holds together: ids, runners, runtime tests and docs name the same checks;
verdicts merge like the checkers'; results round-trip through the run directory with secrets removed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.conformance import catalogue
from harness.conformance.manifests import MANIFEST_CHECKS
from harness.conformance.model import Judgement, Result, Verdict, merge, section_of
from harness.conformance.results import load_results, redact, report_rows, write_result
from harness.conformance.static import STATIC_RUNNERS
from tests.support.paths import ROOT


def runtime_test_ids() -> list[str]:
    text = (ROOT / "scenarios" / "test_conformance.py").read_text(encoding="utf-8")
    return re.findall(r'^@check_id\("([^"]+)"\)', text, flags=re.M)


def test_ids_are_unique_and_name_their_seed_section() -> None:
    ids = [c.id for c in catalogue.CHECKS]
    assert len(ids) == len(set(ids))
    for c in catalogue.CHECKS:
        assert re.fullmatch(r"\d\.\d-[a-z0-9-]+", c.id), c.id
        assert c.section == c.id.split("-", 1)[0]
        assert c.title and c.why and c.kind in ("static", "runtime")


def test_every_static_check_has_a_runner_and_nothing_else_does() -> None:
    static = {c.id for c in catalogue.of_kind("static")}
    assert set(STATIC_RUNNERS) == static
    assert set(MANIFEST_CHECKS) <= static


def test_every_runtime_check_has_exactly_one_test() -> None:
    found = runtime_test_ids()
    assert len(found) == len(set(found)), "a check id is tested twice"
    assert set(found) == {c.id for c in catalogue.of_kind("runtime")}


def test_docs_describe_every_check() -> None:
    doc = (ROOT / "docs" / "conformance.md").read_text(encoding="utf-8")
    missing = [c.id for c in catalogue.CHECKS if f"`{c.id}`" not in doc]
    assert not missing, f"docs/conformance.md lacks {missing}"


def test_issue_sections_are_covered() -> None:
    sections = {c.section for c in catalogue.CHECKS}
    issue = {"1.1", "1.2", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "3.1", "3.2", "4.1", "5.1", "5.3", "5.4"}
    assert issue <= sections


@pytest.mark.parametrize("bad", ["2.2", "sigterm", "2.2_sigterm", "2.2-Sigterm", "22-x", "2.2-a--b"])
def test_bad_ids_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="bad conformance check id"):
        section_of(bad)


def test_select_by_pattern_and_kind() -> None:
    assert {c.id for c in catalogue.select(["2.2"])} == {c.id for c in catalogue.CHECKS if c.section == "2.2"}
    assert all(c.kind == "runtime" for c in catalogue.select(["sigterm"], "runtime"))
    assert catalogue.select(["no-such-thing"]) == []
    assert len(catalogue.select(None)) == len(catalogue.CHECKS)
    with pytest.raises(KeyError, match="known:"):
        catalogue.get("9.9-nothing")


@pytest.mark.parametrize("verdicts,expected", [
    ([], "unknown"),
    (["pass", "pass"], "pass"),
    (["pass", "not-applicable"], "pass"),
    (["not-applicable"], "not-applicable"),
    (["pass", "unknown"], "unknown"),
    (["unknown", "fail", "pass"], "fail"),
])
def test_merge_order(verdicts: list[str], expected: str) -> None:
    assert merge(verdicts) == expected


def test_results_round_trip_and_redact(tmp_path: Path) -> None:
    spec = catalogue.get("2.6-no-secrets-in-logs")
    r = Result.of(spec, "fail", "found hunter2 in node.log", {"lines": ["x hunter2 y"], "n": 1})
    path = write_result(tmp_path, r, secrets=["hunter2"])
    assert path == tmp_path / "conformance" / "2.6-no-secrets-in-logs.json"
    raw = path.read_text()
    assert "hunter2" not in raw and "***" in raw
    (tmp_path / "conformance" / "garbage.json").write_text("{not json")
    (tmp_path / "conformance" / ".x.json.1.tmp").write_text("{}")
    loaded = load_results(tmp_path)
    assert [x.id for x in loaded] == [spec.id]
    assert loaded[0].verdict is Verdict.FAIL and loaded[0].data == {"lines": ["x *** y"], "n": 1}
    rows = report_rows(loaded)
    assert set(rows[0]) >= {"id", "section", "title", "verdict", "evidence"}
    assert json.loads(json.dumps(rows))[0]["section"] == "2.6"


def test_redact_nested_and_empty() -> None:
    assert redact({"a": ["pw", ("pw",)], "b": 3}, ["pw"]) == {"a": ["***", ["***"]], "b": 3}
    assert redact("pw", []) == "pw"
    assert redact("pw", [""]) == "pw"


def test_judgement_and_result_reject_unknown_verdicts() -> None:
    with pytest.raises(ValueError):
        Judgement("maybe", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Result.of(catalogue.get("1.1-non-root-user"), "ok", "x")
