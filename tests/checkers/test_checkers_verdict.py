"""The verdict model: merging, explanations, and that a crashing checker is unknown, never a pass."""

from __future__ import annotations

import pytest

from harness.checkers import (
    Check,
    CheckResult,
    Verdict,
    availability_at_least,
    check,
    converged,
    error_window,
    failures_only_on,
    merge_verdicts,
    monotonic_reads,
    no_lost_writes,
    reads_see_acknowledged,
    recovery_after_heal,
    reliable_calls_once,
    rto,
    single_ownership,
)
from harness.history import Event, History

EMPTY = History(events=[])


def _const(name: str, verdict: Verdict, detail: str = "d"):
    def run(_h: History) -> Check:
        return Check(name, verdict, detail)

    run.checker_name = name  # type: ignore[attr-defined]
    return run


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        (["pass", "pass"], Verdict.PASS),
        (["pass", "unknown"], Verdict.UNKNOWN),
        (["unknown", "fail", "pass"], Verdict.FAIL),
        (["fail"], Verdict.FAIL),
        ([], Verdict.UNKNOWN),
    ],
)
def test_merge_priority_fail_over_unknown_over_pass(verdicts: list[str], expected: Verdict) -> None:
    assert merge_verdicts(verdicts) is expected


def test_verdict_is_a_str_enum() -> None:
    assert Verdict("fail") is Verdict.FAIL
    assert str(Verdict.UNKNOWN) == "unknown"
    with pytest.raises(ValueError):
        Verdict("ok")


def test_all_pass_passes_and_explains_briefly() -> None:
    r = check(EMPTY, _const("a", Verdict.PASS), _const("b", Verdict.PASS))
    assert r.passed and r.verdict is Verdict.PASS
    assert r.explain() == "PASS: 2/2 checks passed\npassed: a, b"
    assert r.reason() == ""


def test_unknown_fails_the_result_and_is_named() -> None:
    r = check(EMPTY, _const("a", Verdict.PASS), _const("epochs", Verdict.UNKNOWN, "stack exposes no epochs"))
    assert not r.passed and r.verdict is Verdict.UNKNOWN
    assert "- epochs [unknown]: stack exposes no epochs" in r.explain()


def test_explain_names_each_failed_invariant_with_its_detail() -> None:
    r = check(EMPTY, _const("no_lost_writes", Verdict.FAIL, "key ctr-01: final 91 < acknowledged 99"),
              _const("rto", Verdict.FAIL, "RTO 14.30s > budget 10s"), _const("m", Verdict.PASS))
    text = r.explain()
    assert text.startswith("FAIL: 1/3 checks passed")
    assert "- no_lost_writes [fail]: key ctr-01: final 91 < acknowledged 99" in text
    assert "- rto [fail]: RTO 14.30s > budget 10s" in text
    assert r.reason() == ("no_lost_writes fail: key ctr-01: final 91 < acknowledged 99; "
                          "rto fail: RTO 14.30s > budget 10s")


def test_a_crashing_checker_is_unknown_with_the_traceback_summary() -> None:
    def broken(_h: History) -> Check:
        return Check("x", Verdict.PASS, str(1 / 0))

    r = check(EMPTY, broken, _const("ok", Verdict.PASS))
    crashed = r.checks[0]
    assert crashed.name == "broken"
    assert crashed.verdict is Verdict.UNKNOWN
    assert crashed.detail.startswith("checker raised ZeroDivisionError: division by zero at test_checkers_verdict.py:")
    assert any("ZeroDivisionError" in line for line in crashed.data["traceback"])
    assert r.verdict is Verdict.UNKNOWN and not r.passed


def test_a_real_checker_crashing_on_malformed_history_is_unknown() -> None:
    # a final-read whose key is an unhashable list: the checker raises; the result must not pass
    bad = History(events=[
        Event(t=0.0, type="invoke", process="client-0", f="increment", key="k", value=1, op_id=1),
        Event(t=0.1, type="ok", process="client-0", f="increment", key="k", value=1, op_id=1),
        Event(t=0.2, type="invoke", process="client-0", f="final-read", key=["k"], op_id=2),  # type: ignore[arg-type]
        Event(t=0.3, type="ok", process="client-0", f="final-read", key=["k"], value=1, op_id=2),  # type: ignore[arg-type]
    ])
    r = check(bad, no_lost_writes())
    assert r.checks[0].name == "no_lost_writes"
    assert r.checks[0].verdict is Verdict.UNKNOWN
    assert "checker raised TypeError" in r.checks[0].detail


ALL_CHECKERS = [no_lost_writes(), reads_see_acknowledged(), monotonic_reads(), single_ownership(),
                reliable_calls_once(), converged(within_s=5), availability_at_least(0.99), rto(10),
                recovery_after_heal(5), error_window(2), failures_only_on({"k"})]


@pytest.mark.parametrize("checker", ALL_CHECKERS, ids=lambda c: c.checker_name)
def test_every_checker_crashing_on_a_corrupt_history_is_unknown_never_pass(checker) -> None:
    corrupt = History(events=[None])  # type: ignore[list-item]  # e.g. a reader bug upstream
    r = check(corrupt, checker)
    assert r.checks[0].verdict is Verdict.UNKNOWN
    assert r.checks[0].name == checker.checker_name
    assert r.checks[0].detail.startswith("checker raised AttributeError")
    assert not r.passed


def test_a_checker_returning_garbage_is_unknown() -> None:
    r = check(EMPTY, lambda _h: True)  # type: ignore[arg-type, return-value]
    assert r.checks[0].verdict is Verdict.UNKNOWN
    assert "not a Check" in r.checks[0].detail


def test_passing_a_factory_instead_of_a_checker_is_a_loud_error() -> None:
    with pytest.raises(TypeError, match=r"pass rto\(...\), not rto"):
        check(EMPTY, rto)  # type: ignore[arg-type]


def test_no_checks_is_unknown() -> None:
    r = CheckResult(())
    assert r.verdict is Verdict.UNKNOWN and not r.passed
    assert r.explain() == "UNKNOWN: no checks were run"


def test_to_list_is_json_ready() -> None:
    r = check(EMPTY, _const("a", Verdict.FAIL, "why"))
    assert r.to_list() == [{"name": "a", "verdict": "fail", "detail": "why", "data": {}}]


def test_check_normalises_string_verdicts_and_rejects_others() -> None:
    assert Check("a", "pass", "d").verdict is Verdict.PASS  # type: ignore[arg-type]
    r = check(EMPTY, lambda _h: Check("a", "maybe", "d"))  # type: ignore[arg-type]
    assert r.checks[0].verdict is Verdict.UNKNOWN and "ValueError" in r.checks[0].detail
