"""Stale views of the cluster (seed §7.1 network partitions, §7.3 pause): a gate or a node that keeps
acting on what it last read from etcd while the rest of the cluster moves on.

Why a family of its own: the other partition scenarios cut a node off, and the gates then stop routing
to it the moment its lease expires, so nothing ever reaches a component with a stale view. Here the
component that routes (a gate) or serves (a node) is the one cut from etcd:

- ``partition gate-etcd`` (both directions, and one-way: the gate hears nothing from etcd while etcd
  still hears it): the gate routes with the shard map it last read. Nothing moves, so a correct stack
  keeps serving; the gate's lease expires and it must register again after the heal.
- ``partition node-etcd`` one-way: the node stops hearing etcd (its keepalive replies are lost), its
  lease expires, its shards move.
- ``partition node-gate-etcd``: a node *and* the first gate cut from etcd together, still talking to
  each other. The gate keeps sending the node's old shards to it after they moved: a correct node
  refuses them (its local lease deadline passed); a node that serves until etcd tells it otherwise
  (seeded bug ``no-lease-deadline``) answers reads from stale memory — O and the linearizable-counter
  check see it.
- ``pause gate``: a gate SIGSTOPped past its lease TTL, resumed with calls waiting in its sockets.
- ``partition gate-etcd during kill`` (a composed fault, two overlapping nemesis windows): one gate cut
  from etcd, then a node SIGKILLed; the node's shards move while the gate cannot see it; the cut is
  healed, then the node restarts and shards rebalance. A correct gate reads the new map within a tick
  of the heal; a gate whose view never resumes after an etcd error (seeded bug
  ``gate-watch-not-resumed``) keeps routing to the old owners: its clients never recover (H), and
  reading every key through each gate after convergence shows which gate and keys (every_gate_routes).

Then: L (client view and stored state), M, linearizable counters, O, C, every gate routing by the
current map, and recovery after every heal within budgets derived from the stack's timers.
"""

from __future__ import annotations

from typing import Any

import pytest
from chaos_checks import (
    after_the_heal,
    final_reads_and_stored,
    heal_fast,
    require_capability,
    wait_failover,
)

from harness import budgets
from harness.checkers import (
    converged,
    linearizable_counters,
    monotonic_reads,
    no_lost_writes,
    reads_see_acknowledged,
    recovery_after_heal,
    single_ownership,
)
from harness.checkers.chaos import persisted_not_behind
from harness.checkers.routing import every_gate_routes
from harness.faults.spec import Fault, Kill, Partition, Pause
from harness.platforms.base import Timers
from harness.scenario import unsupported_is_skip

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

BASELINE_S = 2.0
AFTER_S = 2.5  # ≥ the 2 s window in which recovered availability must hold (H)
STALE_WINDOW_S = 3.0  # after the failover, the stale side keeps being asked this long
# hot keys, half reads: reads and writes of one key interleave across both gates; the rate is the
# default one, so the harness itself is not starved on a loaded 2-core machine
HOT = {"counter_keys": 12, "counter_rate": 40.0, "read_ratio": 0.5}


def invariants(t: Timers) -> list[Any]:
    """L (client view and stored state), M, linearizable counters, O, C, and every gate routing by the
    current map once converged (a plain yes/no per gate and key, judged even on a starved run)."""
    return [no_lost_writes(), persisted_not_behind, reads_see_acknowledged(), monotonic_reads(),
            linearizable_counters(), single_ownership(), converged(within_s=budgets.convergence(t)),
            every_gate_routes()]


def lease_hold(t: Timers) -> float:
    """Past the victim's lease TTL and the gates' call timeout, so its lease expires and calls queued
    behind it time out."""
    return t.lease_ttl + t.call_timeout + 1.0


@pytest.mark.parametrize(("fault", "failover"), [
    pytest.param(Partition("gate-etcd", "gate-0"), False, id="partition-gate-etcd-gate0"),
    pytest.param(Partition("gate-etcd", "gate-0", one_way=True), False, id="partition-gate-etcd-gate0-oneway"),
    pytest.param(Partition("node-etcd", one_way=True), True, id="partition-node-etcd-oneway"),
    pytest.param(Partition("node-gate-etcd"), True, id="partition-node-gate-etcd"),
    pytest.param(Pause("gate-0"), False, id="pause-gate0"),
])
def test_stale_view(stack, scenario, fault: Fault, failover: bool):
    """Cut a gate and/or a node from etcd (or pause a gate) under hot-key load; where the victim
    node's shards move, hold until they have and the stale side was asked for a while; heal; judge."""
    t = stack.spec.timers
    require_capability(stack, "pause" if isinstance(fault, Pause) else "partition")
    wl = scenario.workload(**HOT)
    moved = None
    with scenario.observing(), wl.running():
        scenario.settle(BASELINE_S, "baseline")
        live = stack.live_nodes()
        with unsupported_is_skip(), scenario.nemesis.fault(fault) as injected:
            t_inject = scenario.recorder.now()
            if failover:
                moved = wait_failover(stack, live, budgets.failover(t))
                scenario.settle(STALE_WINDOW_S, "the new owners serve; the stale side is still asked")
            scenario.settle(max(0.0, lease_hold(t) - (scenario.recorder.now() - t_inject)), "the cut holds")
        after_the_heal(stack, scenario, budgets.convergence(t), AFTER_S)
    wl.reads_through_each_gate()
    final_reads_and_stored(stack, scenario, budgets.convergence(t), wl)
    budget = budgets.failover(t) if failover else heal_fast(t)
    result = scenario.conclude(*invariants(t), recovery_after_heal(budget_s=budget),
                               extra={"victims": injected.targets, "failover_seen": moved})
    assert result.passed, result.explain()


def test_partition_gate_etcd_during_kill(stack, scenario):
    """Composed: gate-0 cut from etcd; a node SIGKILLed while the cut holds; its shards move (gate-1
    follows, gate-0 cannot); the cut heals, then the node restarts and shards rebalance."""
    t = stack.spec.timers
    require_capability(stack, "partition")
    require_capability(stack, "kill")
    wl = scenario.workload()
    with scenario.observing(), wl.running():
        scenario.settle(BASELINE_S, "baseline")
        live = stack.live_nodes()
        with unsupported_is_skip(), scenario.nemesis.fault(Partition("gate-etcd", "gate-0")):
            scenario.settle(1.0, "gate-0 cut from etcd, nothing moved yet")
            kill, killed = scenario.nemesis.inject(Kill("one-node", "SIGKILL"))
            try:
                moved = wait_failover(stack, live, budgets.failover(t))
                scenario.settle(STALE_WINDOW_S, "gate-0 routes with the map from before the kill")
            except BaseException:
                scenario.nemesis.heal(kill)
                raise
        try:
            scenario.settle(heal_fast(t), "cut healed, the killed node still down")
        finally:
            scenario.nemesis.heal(kill)  # the node restarts: shards rebalance onto it
        after_the_heal(stack, scenario, budgets.convergence(t), AFTER_S)
    wl.reads_through_each_gate()
    final_reads_and_stored(stack, scenario, budgets.convergence(t), wl)
    result = scenario.conclude(*invariants(t), recovery_after_heal(budget_s=budgets.failover(t)),
                               extra={"killed": killed.targets, "failover_seen": moved})
    assert result.passed, result.explain()
