"""What a stack declares it exposes (harness.capabilities) and how checks use it: a capability declared
absent makes the check not-applicable with the reason; declared present but missing stays unknown;
histories recorded before the declaration judge exactly as before. And the report shows it.

Why on recorded histories: the declaration travels in the history's meta, so an offline re-check must
judge a Goverse history as the live run did; the recorded reference histories (tests/data) pin that
adding the declaration changed none of their verdicts.
"""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness import capabilities as caps
from harness.checkers import check, converged, measure, no_lost_writes, rto, single_ownership
from harness.checkers.chaos import persisted_not_behind
from harness.checkers.verdict import Verdict
from harness.history import Event, History
from harness.platforms.base import StackSpec
from harness.report import RunStore, ScenarioResult, finalize, write_scenario_result
from tests.support.paths import DATA, ROOT

HISTORIES = DATA / "histories"
REFERENCE = caps.for_stack("reference")
GOVERSE_DEFAULT = caps.for_stack("goverse")  # Goverse's own 5 min persistence interval
GOVERSE_FAST = caps.for_stack("goverse", 1.0)  # goverse-app --persistence-interval=1s


def declared(h: History, c: caps.Capabilities | None) -> History:
    meta = dict(h.meta)
    if c is not None:
        meta[caps.META_KEY] = c.to_meta()
    return dataclasses.replace(h, meta=meta)


def recorded(name: str, c: caps.Capabilities | None = None) -> History:
    return declared(History.load(HISTORIES / f"{name}.jsonl"), c)


# ---- the declaration ---------------------------------------------------------------------------------------
def test_each_stack_kind_declares_what_it_exposes() -> None:
    assert caps.Capabilities("reference", epochs=True, persistence_interval_s=0.0) == REFERENCE
    assert caps.Capabilities("goverse", epochs=False, persistence_interval_s=300.0,
                             build_version=False) == GOVERSE_DEFAULT
    assert REFERENCE.build_version and not GOVERSE_DEFAULT.build_version
    # a history recorded before build_version was declared reads as declaring it (judged as before)
    assert caps.Capabilities.from_meta({caps.META_KEY: {"stack": "goverse", "epochs": False,
                                                        "persistence_interval_s": 1.0}}).build_version
    assert caps.for_spec(StackSpec(stack="goverse", goverse_persistence_interval=2.0)).persistence_interval_s == 2.0
    assert caps.for_spec(StackSpec()) == REFERENCE
    with pytest.raises(ValueError, match="stack must be 'reference' or 'goverse'"):
        caps.for_stack("kubernetes")


def test_the_declaration_round_trips_through_the_history_meta() -> None:
    h = History(events=[], meta={"slo_ms": 1000.0, caps.META_KEY: GOVERSE_FAST.to_meta()})
    assert caps.Capabilities.from_meta(json.loads(json.dumps(h.meta))) == GOVERSE_FAST
    assert caps.Capabilities.from_meta({"slo_ms": 1000.0}) is None  # recorded before declarations
    with pytest.raises(ValueError, match="history meta 'capabilities' is malformed"):
        caps.Capabilities.from_meta({caps.META_KEY: {"stack": "goverse"}})


def test_the_stored_state_rule_is_explicit() -> None:
    assert caps.stored_state_reason(REFERENCE) is None  # persists before acknowledging
    assert caps.stored_state_reason(caps.for_stack("goverse", 9.5)) is None  # 3 × 10 s fit in 30 s
    reason = caps.stored_state_reason(caps.for_stack("goverse", 9.6))
    assert reason is not None and "every 9.6 s" in reason and "at most 30 s" in reason
    assert caps.stored_state_wait(GOVERSE_DEFAULT) == (300.5, 30.0)  # never waits past the cap


def test_a_scenario_records_the_declaration_in_its_history(tmp_path: Path) -> None:
    from harness.scenario import Scenario

    class Dep:
        spec = StackSpec(stack="goverse", goverse_persistence_interval=1.0)

    sc = Scenario("s", tmp_path, Dep(), injector=None, settings=None, seed_tag="t")  # type: ignore[arg-type]
    sc.recorder.close()
    h = History.load(tmp_path / "history.jsonl")
    assert caps.Capabilities.from_meta(h.meta) == GOVERSE_FAST and h.meta["slo_ms"] == 1000.0
    bare = Scenario("b", tmp_path / "b", deployment=None, injector=None, settings=None, seed_tag="t")  # type: ignore[arg-type]
    bare.recorder.close()
    assert caps.META_KEY not in History.load(tmp_path / "b" / "history.jsonl").meta  # no stack, no declaration


# ---- O: single ownership -----------------------------------------------------------------------------------
def test_ownership_is_not_applicable_when_the_stack_declares_no_epochs() -> None:
    c = single_ownership()(recorded("kill_node_no_epochs", GOVERSE_FAST))
    assert c.verdict is Verdict.NOT_APPLICABLE
    assert "stack goverse exposes no ownership epochs on call answers" in c.detail and "X-Goverse-Epoch" in c.detail


def test_ownership_is_unknown_when_declared_epochs_are_missing() -> None:
    c = single_ownership()(recorded("kill_node_no_epochs", REFERENCE))
    assert c.verdict is Verdict.UNKNOWN
    assert "stack reference declares ownership epochs, but no ok op carried" in c.detail


def test_ownership_judges_epochs_that_are_there_whatever_was_declared() -> None:
    assert single_ownership()(recorded("stale_reads", GOVERSE_FAST)).verdict is Verdict.FAIL


# ---- the stored state --------------------------------------------------------------------------------------
def _ops_and_stored(stored_value: int | None) -> list[Event]:
    ev = [Event(t=1.0, type="invoke", process="c", f="increment", key="a", value=3, op_id=1),
          Event(t=1.1, type="ok", process="c", f="increment", key="a", value=3, op_id=1)]
    if stored_value is not None:
        ev.append(Event(t=9.0, type="sample", process="oracle", f="persisted",
                        value={"keys": ["a"], "values": {"a": stored_value}}))
    return ev


def test_stored_state_is_not_applicable_on_a_five_minute_save() -> None:
    h = declared(History(events=_ops_and_stored(None)), GOVERSE_DEFAULT)
    c = persisted_not_behind(h)
    assert c.verdict is Verdict.NOT_APPLICABLE and "persists objects only every 300 s" in c.detail
    h_behind = declared(History(events=_ops_and_stored(0)), GOVERSE_DEFAULT)
    assert persisted_not_behind(h_behind).verdict is Verdict.NOT_APPLICABLE  # lagging is by design there


def test_stored_state_is_judged_when_the_save_interval_fits_the_wait() -> None:
    assert persisted_not_behind(declared(History(events=_ops_and_stored(None)), GOVERSE_FAST)).verdict \
        is Verdict.UNKNOWN  # declared judgeable, no sample: a defect, shown
    c = persisted_not_behind(declared(History(events=_ops_and_stored(0)), GOVERSE_FAST))
    assert c.verdict is Verdict.FAIL and "stored 0 < acknowledged 3" in c.detail
    assert persisted_not_behind(declared(History(events=_ops_and_stored(3)), REFERENCE)).verdict is Verdict.PASS


# ---- the reference stack's recorded histories are judged as before ----------------------------------------
@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.jsonl")), ids=lambda p: p.stem)
def test_recorded_reference_histories_keep_their_verdicts(path: Path) -> None:
    checkers = (no_lost_writes(), single_ownership(), converged(within_s=5), rto(budget_s=10), persisted_not_behind)
    before = check(History.load(path), *checkers)
    after = check(recorded(path.stem, REFERENCE), *checkers)
    assert [(c.name, c.verdict) for c in after.checks] == [(c.name, c.verdict) for c in before.checks]


# ---- the report shows not-applicable with its reason ------------------------------------------------------
def test_report_run_json_and_junit_show_not_applicable_with_the_reason(tmp_path: Path) -> None:
    run = RunStore(tmp_path).create(now=datetime(2026, 12, 3, 13, 0, tzinfo=UTC), short_id="beef")
    h = recorded("kill_node_recovers", GOVERSE_DEFAULT)
    h = dataclasses.replace(h, events=[e for e in h.events if not (e.extra or {}).get("epoch")])
    passing = check(h, single_ownership(), converged(within_s=5))
    all_na = check(h, single_ownership(), persisted_not_behind)
    for sid, result in (("scenarios/test_restarts.py::test_x[goverse]", passing),
                        ("scenarios/test_chaos.py::test_y[goverse]", all_na)):
        write_scenario_result(run.scenario_dir(sid), ScenarioResult.from_check(sid, result, measure(h), h), h,
                              checks=result)
    finalize(run, {"platform": "local", "stack": "goverse"})

    by_id = {s["id"]: s for s in json.loads(run.run_json.read_text())["scenarios"]}
    ok, na = by_id["scenarios/test_restarts.py::test_x[goverse]"], by_id["scenarios/test_chaos.py::test_y[goverse]"]
    assert passing.verdict is Verdict.PASS and ok["verdict"] == "pass"
    o = next(c for c in ok["checks"] if c["name"] == "single_ownership")
    assert o["verdict"] == "not-applicable" and "exposes no ownership epochs" in o["detail"]
    assert na["verdict"] == "not-applicable" and "exposes no ownership epochs" in na["reason"]

    suite = ET.parse(run.junit_xml).getroot().find("testsuite")
    assert suite is not None and suite.get("skipped") == "1" and suite.get("failures") == "0"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    skipped = cases["test_y[goverse]"].find("skipped")
    assert skipped is not None and skipped.get("message", "").startswith("not applicable: ")
    assert "persists objects only every 300 s" in skipped.get("message", "")
    ok_case = cases["test_x[goverse]"]
    assert ok_case.find("skipped") is None and ok_case.find("failure") is None
    assert "single_ownership [not-applicable]: stack goverse exposes no ownership epochs" in (
        ok_case.findtext("system-out") or "")
    props = {p.get("name"): p.get("value") for p in ok_case.iter("property")}
    assert props["not_applicable_checks"] == "1"

    html = run.report_html.read_text()
    assert 'class="v v-not-applicable">not-applicable</span>' in html
    assert "stack goverse exposes no ownership epochs on call answers" in html


def test_the_stored_state_is_not_read_on_a_stack_that_saves_every_five_minutes(tmp_path: Path) -> None:
    import sys

    from harness.history import Recorder

    sys.path.insert(0, str(ROOT / "scenarios"))
    try:
        import chaos_checks
    finally:
        sys.path.pop(0)

    class Stack:  # a StoredState whose reads would fail loudly: the rule must stop before reading
        spec = StackSpec(stack="goverse")

        def persisted_objects(self, keys: list[str]) -> dict[str, object]:
            raise AssertionError("read the stored state of a stack that saves every 5 min")

    class Sc:
        recorder = Recorder(tmp_path / "h.jsonl", meta={caps.META_KEY: GOVERSE_DEFAULT.to_meta()})

    chaos_checks.record_persisted(Stack(), Sc(), ["a"])
    h = Sc.recorder.history()
    assert [s.value for s in h.samples("persisted")] == [{"not_applicable": caps.stored_state_reason(GOVERSE_DEFAULT)}]
    assert persisted_not_behind(h).verdict is Verdict.NOT_APPLICABLE
    Sc.recorder.close()
