"""The chaos scenarios' checkers (``harness/checkers/chaos.py``) and helpers (``scenarios/chaos_checks.py``)
on small hand-built histories: each passes on a good history and fails — naming the keys and numbers — on a bad one.

Why here: a checker that cannot fail proves nothing. The stored-state oracle is what catches the
seeded bugs ``no-fencing`` and ``stale-overwrite-on-rejoin`` (see the scenarios), so its failure modes
are pinned down without a stack.
"""

from __future__ import annotations

import sys
from typing import Any

from harness.checkers import chaos
from harness.checkers.verdict import Verdict
from harness.history import Event, History
from tests.support.paths import ROOT

sys.path.insert(0, str(ROOT / "scenarios"))
import chaos_checks as cc  # noqa: E402 - the scenarios directory is not a package

_ids = iter(range(1, 10_000))


def op(t: float, f: str, key: str, value: Any = None, type_: str = "ok", result: Any = None,
       dt: float = 0.01, error: str | None = None) -> list[Event]:
    i = next(_ids)
    return [Event(t=t, type="invoke", process="client-0", f=f, key=key, value=value, op_id=i),
            Event(t=t + dt, type=type_, process="client-0", f=f, key=key, value=result, op_id=i, error=error)]


def fault(t0: float, t1: float, kind: str = "partition", params: dict[str, Any] | None = None,
          result: dict[str, Any] | None = None) -> list[Event]:
    return [Event(t=t0, type="nemesis", process="nemesis", f="start",
                  value={"id": "f1", "kind": kind, "target": ["node-0"], "params": params or {}}),
            Event(t=t1, type="nemesis", process="nemesis", f="stop",
                  value={"id": "f1", "kind": kind, "target": ["node-0"], "result": result or {}})]


def history(*parts: list[Event]) -> History:
    return History(events=sorted((e for p in parts for e in p), key=lambda e: e.t))


def stored(values: dict[str, int], keys: list[str]) -> list[Event]:
    return [Event(t=99.0, type="sample", process="oracle", f="persisted", value={"keys": keys, "values": values})]


# ---- the stored-state oracle ------------------------------------------------------------------------------
def test_stored_state_at_least_what_was_acknowledged_passes() -> None:
    h = history(op(1, "increment", "a", 3), op(2, "increment", "a", 2), op(3, "increment", "a", 4, "info"),
                stored({"a": 9}, ["a"]))
    assert chaos.persisted_not_behind(h).verdict is Verdict.PASS  # 5 acknowledged, 4 indeterminate


def test_stored_state_behind_the_acknowledged_fails_with_the_key() -> None:
    h = history(op(1, "increment", "a", 3), op(2, "increment", "a", 2), op(3, "increment", "b", 1),
                stored({"a": 3, "b": 1}, ["a", "b"]))
    c = chaos.persisted_not_behind(h)
    assert c.verdict is Verdict.FAIL and "key a: stored 3 < acknowledged 5" in c.detail
    assert c.data["behind"] == ["key a: stored 3 < acknowledged 5"]


def test_stored_state_ahead_of_anything_written_fails() -> None:
    h = history(op(1, "increment", "a", 3), stored({"a": 7}, ["a"]))
    c = chaos.persisted_not_behind(h)
    assert c.verdict is Verdict.FAIL and "stored 7 > acknowledged 3" in c.detail


def test_a_missing_row_counts_as_zero_and_an_unreadable_store_is_unknown() -> None:
    assert chaos.persisted_not_behind(history(op(1, "increment", "a", 3), stored({}, ["a"]))).verdict is Verdict.FAIL
    broken = [Event(t=9, type="sample", process="oracle", f="persisted", value={"error": "connection refused"})]
    c = chaos.persisted_not_behind(history(op(1, "increment", "a", 3), broken))
    assert c.verdict is Verdict.UNKNOWN and "connection refused" in c.detail


# ---- recovery of writes after the heal --------------------------------------------------------------------
def test_writes_recovering_within_budget_pass_and_late_failures_fail() -> None:
    good = history(fault(1, 5), op(5.5, "increment", "a", 1, "info"), op(6.0, "increment", "a", 1))
    assert chaos.writes_recover_after_heal(2.0)(good).verdict is Verdict.PASS
    late = history(fault(1, 5), op(8.5, "increment", "a", 1, "fail", error="boom"), op(9.0, "increment", "a", 1))
    c = chaos.writes_recover_after_heal(2.0)(late)
    assert c.verdict is Verdict.FAIL and "3.50s after the heal" in c.detail
    never = history(fault(1, 5), op(6.0, "increment", "a", 1, "fail"))
    assert chaos.writes_recover_after_heal(2.0)(never).verdict is Verdict.FAIL


# ---- evidence that a fault bit ------------------------------------------------------------------------
def test_evidence_reads_the_start_parameters_and_the_heal_result() -> None:
    def judge(params: dict[str, Any], result: dict[str, Any]) -> tuple[bool, str]:
        return result.get("throttled", 0) > 0, f"throttled {result.get('throttled')}"

    bit = history(fault(1, 5, "cpu-stress", {"quota": 0.02}, {"throttled": 40}))
    assert chaos.evidence("cpu", "cpu-stress", judge)(bit).verdict is Verdict.PASS
    idle = history(fault(1, 5, "cpu-stress", {"quota": 0.02}, {"throttled": 0}))
    c = chaos.evidence("cpu", "cpu-stress", judge)(idle)
    assert c.verdict is Verdict.FAIL and "did not bite" in c.detail
    assert chaos.evidence("cpu", "cpu-stress", judge)(history(op(1, "probe", "p"))).verdict is Verdict.UNKNOWN


def test_latency_shift_compares_medians_before_and_during_the_fault() -> None:
    before = [e for i in range(5) for e in op(0.1 * i, "increment", "a", 1, dt=0.005)]
    during = [e for i in range(5) for e in op(2 + 0.1 * i, "increment", "a", 1, dt=0.210)]
    h = history(fault(1.9, 3.5, "latency"), before, during)
    assert chaos.latency_shift("increment", {"a"}, 150)(h).verdict is Verdict.PASS
    assert chaos.latency_shift("increment", {"a"}, 250)(h).verdict is Verdict.FAIL
    assert chaos.latency_shift("increment", {"b"}, 150)(h).verdict is Verdict.UNKNOWN  # no ops on the judged keys


def test_latency_shift_leaves_out_the_calls_that_activated_each_key() -> None:
    """Goverse's first deposits to a wallet took 650-1300 ms (activation), later ones 70-400 ms: the
    activations, all in the short baseline, hid a +50 ms disk latency. Left out, the shift shows."""
    # six calls invoked before the first answer: counted, they would make the baseline median 1000 ms
    activation = [e for i in range(6) for e in op(0.01 * i, "deposit", "w", 1, dt=1.0)]
    before = [e for i in range(5) for e in op(1.1 + 0.1 * i, "deposit", "w", 1, dt=0.100)]
    during = [e for i in range(5) for e in op(2 + 0.1 * i, "deposit", "w", 1, dt=0.160)]
    h = history(fault(1.9, 3.5, "disk-latency"), activation, before, during)
    c = chaos.latency_shift("deposit", None, 50)(h)
    assert c.verdict is Verdict.PASS and c.data["before"] == 5 and c.data["p50_before_ms"] < 110, c.detail


def test_owned_keys_reads_the_current_owner() -> None:
    from harness.sharding import shard_of

    keys = [f"k{i}" for i in range(40)]
    owners = {s: ("node-1", "node-0" if s % 2 == 0 else "node-1") for s in range(64)}
    got = cc.owned_keys(owners, 64, ["node-0"], keys)
    assert got == {k for k in keys if shard_of(k, 64) % 2 == 0} and got
