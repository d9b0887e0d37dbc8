"""Scenario preconditions come from what the stack promises (its timers), not from the reference
stack's behaviour: the pause scenario's "calls were stuck at the paused node" floor and the shard-gauge
wait. Real Goverse (lease 15 s, call timeout 30 s) cancels calls to a stopped node when its lease
expires, well before its call timeout; the reference stack (lease 3 s, call timeout 5 s) lets them run."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

from harness import budgets
from harness.checkers import chaos as chaos_checkers
from harness.checkers.verdict import Verdict
from harness.platforms.base import Timers
from tests.support.paths import ROOT


@cache
def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, mod)
    spec.loader.exec_module(mod)
    return mod


def chaos() -> ModuleType:
    sys.path.insert(0, str(ROOT / "scenarios"))  # test_chaos imports chaos_checks beside it
    try:
        return _load("gvh_scenarios_test_chaos", ROOT / "scenarios" / "test_chaos.py")
    finally:
        sys.path.remove(str(ROOT / "scenarios"))


def builder() -> object:
    return _load("make_histories", ROOT / "tests" / "data" / "make_histories.py").Builder(0)


GOVERSE = Timers.goverse_defaults()
REFERENCE = Timers()


def test_stuck_floor_follows_the_lease_when_it_is_shorter_than_the_call_timeout() -> None:
    floor = budgets.stuck_call_floor
    assert floor(GOVERSE) == 9.5  # 2/3 of the 15 s lease, not 29.5 s (30 s call timeout - 0.5)
    assert floor(REFERENCE) == 1.5
    assert floor(Timers(lease_ttl=60, call_timeout=5)) == 4.5  # the call timeout when it comes first


def _pause_history(call_latency: float) -> object:
    b = builder()
    b.fault("pause", "node-1", 10.0, 40.0)
    b.op("client-0", "increment", "k1", 1, 9.9, call_latency, "info", error="CANCELLED: node left")
    b.op("client-0", "increment", "k2", 1, 12.0, 30.0, "info", error="TIMEOUT: client timeout")  # other node's key
    return b.history()  # type: ignore[attr-defined]


def test_goverse_cancelling_at_lease_expiry_counts_as_stuck_but_a_quick_error_does_not() -> None:
    check = chaos_checkers.queued_at_paused_node({"k1"}, budgets.stuck_call_floor(GOVERSE))
    passed = check(_pause_history(13.5))  # cancelled when the lease expired, 13.5 s after the pause
    assert passed.verdict is Verdict.PASS, passed.detail
    assert passed.data["stuck_floor_s"] == 9.5
    failed = check(_pause_history(2.0))  # gave up after 2 s: nothing was queued at the node
    assert failed.verdict is Verdict.FAIL and "stuck ≥ 9.5 s" in failed.detail


def test_shard_gauge_wait_is_the_stacks_own_tick() -> None:
    sys.path.insert(0, str(ROOT / "scenarios"))
    try:
        conf = _load("gvh_scenarios_test_conformance", ROOT / "scenarios" / "test_conformance.py")
    finally:
        sys.path.remove(str(ROOT / "scenarios"))
    assert conf.gauge_settle_s(GOVERSE) == 12.0 > 5.0  # two of Goverse's 5 s ticks, plus margin
    assert conf.gauge_settle_s(REFERENCE) == 2.5


def test_link_faults_judge_the_operation_the_stack_persists_on_the_call_path() -> None:
    class Spec:
        def __init__(self, stack: str) -> None:
            self.stack = stack

    class Stack:
        def __init__(self, stack: str) -> None:
            self.spec = Spec(stack)

    mod = chaos()
    assert mod.persisted_on_call(Stack("reference")) == ("increment", {})
    op, load = mod.persisted_on_call(Stack("goverse"))  # plain calls are saved only periodically there
    assert op == "deposit" and load["wallet_rate"] > 0


def test_stored_state_settles_over_the_stacks_persistence_interval() -> None:
    class Spec:
        def __init__(self, stack: str, every: float | None) -> None:
            self.stack, self.goverse_persistence_interval = stack, every

    class Stack:
        def __init__(self, stack: str, every: float | None = None) -> None:
            self.spec = Spec(stack, every)

    sys.path.insert(0, str(ROOT / "scenarios"))
    try:
        checks = _load("chaos_checks", ROOT / "scenarios" / "chaos_checks.py")
    finally:
        sys.path.remove(str(ROOT / "scenarios"))
    assert checks.stored_settle(Stack("reference")) == (0.5, 5.0)  # persisted before the ack
    assert checks.stored_settle(Stack("goverse", 1.0)) == (1.5, 5.0)  # reads a save apart
    assert checks.stored_settle(Stack("goverse", 4.0)) == (4.5, 13.5)
    assert checks.stored_settle(Stack("goverse", 9.0)) == (9.5, 28.5)  # the longest interval still judged
    assert checks.stored_settle(Stack("goverse")) == (300.5, 30.0)  # Goverse's 5 min default: capped


def test_migration_error_budget_is_the_stacks_handover_promise() -> None:
    """E for keys moved by a graceful scale, roll or config update: SCENARIOS.md's 3 s on the fast
    timers, and what Goverse's timers promise on Goverse (its new owner waits 10 s of stable
    membership: 15.6 s of errors on a scale-down was judged against 3 s)."""
    assert budgets.migration_errors(Timers()) == 3.0
    assert budgets.migration_errors(Timers.goverse_defaults()) == 31.0
    for name in ("test_scaling", "test_upgrade", "test_config_and_secrets"):
        text = (ROOT / "scenarios" / f"{name}.py").read_text()
        assert "error_window(budget_s=budgets.migration_errors(t)" in text, name
