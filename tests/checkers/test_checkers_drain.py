"""drained_in_flight on crafted histories: a graceful restart whose in-flight calls complete passes, one
that cuts them fails, one with nothing held near the grace period is unknown."""

from __future__ import annotations

from typing import Any

from harness.checkers import Verdict
from harness.checkers.drain import drained_in_flight
from harness.history import Event, History

TERM = 10.0  # the SIGTERM (apply_began_at); the stop returned (t_inject) at 14.2


def history(calls: list[tuple[str, float, float, str]], graceful: bool = True) -> History:
    """``calls``: (key, t_invoke, t_complete, type) increments; a graceful restart of node-0 at TERM."""
    evs: list[Event] = [
        Event(t=14.2, type="nemesis", process="nemesis", f="start",
              value={"id": "f1", "kind": "restart", "target": ["node-0"],
                     "params": {"graceful": graceful, "apply_began_at": TERM}}),
        Event(t=15.2, type="nemesis", process="nemesis", f="stop",
              value={"id": "f1", "kind": "restart", "target": ["node-0"], "result": {}}),
    ]
    for i, (key, t0, t1, typ) in enumerate(calls):
        evs.append(Event(t=t0, type="invoke", process=f"c{i}", f="increment", key=key, value=1, op_id=i))
        extra: dict[str, Any] = {"error": None if typ == "ok" else "CALL_TIMEOUT: connection reset"}
        evs.append(Event(t=t1, type=typ, process=f"c{i}", f="increment", key=key,
                         value=None if typ != "ok" else 1, op_id=i, **extra))
    return History(sorted(evs, key=lambda e: e.t))


CHECK = drained_in_flight({"a", "b"}, call_timeout_s=5.0, held_s=3.0)


def test_calls_held_near_the_grace_period_and_completed_pass() -> None:
    c = CHECK(history([("a", 9.0, 13.5, "ok"), ("b", 9.5, 12.0, "ok"), ("z", 9.0, 10.5, "info")]))
    assert c.verdict is Verdict.PASS, c.detail
    assert c.data["judged"] == 2 and c.data["held"] == 1


def test_a_drain_that_gives_up_early_fails_naming_the_call() -> None:
    # held 3 s by PostgreSQL, the process exited 3 s after SIGTERM: the gate saw the connection reset
    c = CHECK(history([("a", 9.0, 13.5, "ok"), ("b", 9.2, 13.05, "info")]))
    assert c.verdict is Verdict.FAIL
    assert "op 1 on b" in c.detail and "3.05s after the SIGTERM" in c.detail


def test_calls_refused_after_sigterm_or_timed_out_are_not_judged() -> None:
    calls = [("a", 9.0, 10.01, "fail"),  # refused (it did not run): allowed
             ("b", 8.0, 13.0, "info"),  # waited the whole call timeout (queued behind another call)
             ("a", 9.0, 13.4, "ok")]
    c = CHECK(history(calls))
    assert c.verdict is Verdict.PASS, c.detail
    assert c.data["judged"] == 1


def test_nothing_held_near_the_grace_period_is_unknown() -> None:
    c = CHECK(history([("a", 9.0, 10.5, "ok")]))
    assert c.verdict is Verdict.UNKNOWN and "not exercised" in c.detail
    assert CHECK(history([("a", 9.0, 13.5, "ok")], graceful=False)).verdict is Verdict.UNKNOWN
    assert drained_in_flight(set(), 5.0, 3.0)(history([])).verdict is Verdict.UNKNOWN


def test_a_call_sent_just_before_sigterm_and_cut_fails() -> None:
    c = CHECK(history([("a", 9.0, 13.5, "ok"), ("b", 9.95, 13.1, "info")]))
    assert c.verdict is Verdict.FAIL and "op 1 on b" in c.detail
