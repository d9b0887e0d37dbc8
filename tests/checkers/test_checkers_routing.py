"""every_gate_routes on crafted histories: a gate that serves every key after retries passes, one that
keeps failing some keys fails, no per-gate reads is unknown."""

from __future__ import annotations

from harness.checkers import Verdict
from harness.checkers.routing import every_gate_routes
from harness.history import Event, History


def reads(rows: list[tuple[str, str, str]]) -> History:
    """``rows``: (gate, key, outcome type) in order, one gate-read each."""
    evs = []
    for i, (gate, key, typ) in enumerate(rows):
        evs.append(Event(t=i * 0.1, type="invoke", process="route-check", f="gate-read", key=key, op_id=i, node=gate))
        evs.append(Event(t=i * 0.1 + 0.05, type=typ, process="route-check", f="gate-read", key=key, op_id=i,
                         node=gate, value=3 if typ == "ok" else None,
                         error=None if typ == "ok" else "CALL_FAILED: object k is sharded to node-2, not node-1"))
    return History(evs)


def test_a_gate_that_recovers_within_its_retries_passes() -> None:
    c = every_gate_routes()(reads([("gate-0", "k1", "ok"), ("gate-1", "k1", "fail"), ("gate-1", "k1", "ok")]))
    assert c.verdict is Verdict.PASS, c.detail


def test_a_gate_routing_with_a_stale_map_fails_naming_gate_and_key() -> None:
    c = every_gate_routes()(reads([("gate-0", "k1", "ok"), ("gate-0", "k2", "fail"), ("gate-0", "k2", "fail"),
                                   ("gate-1", "k1", "ok"), ("gate-1", "k2", "ok")]))
    assert c.verdict is Verdict.FAIL
    assert "gate-0: 1 keys never served" in c.detail and "k2 (2 tries" in c.detail
    assert c.data["failing"] == {"gate-0": 1}


def test_no_per_gate_reads_is_unknown() -> None:
    assert every_gate_routes()(History([])).verdict is Verdict.UNKNOWN
