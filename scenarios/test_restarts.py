"""Seed §7.1 pod restart / §7.3 pod deletion: restart a node gracefully, SIGKILL a node, restart a gate.

Given a 3-node, 2-gate stack under counter load and the 20 Hz probe (node restarts also under wallet
deposits), when one instance goes away and comes back, then no acknowledged increment is lost (L), reads
per key never go backwards (M), no key is served by a stale owner (O), each reliable call applies once
per call_id (D), the cluster converges again (C), and the outage of the affected keys stays within
budgets derived from the stack's timers (harness/budgets.py).
"""

from __future__ import annotations

import pytest

from harness import budgets
from harness.checkers import (
    converged,
    error_window,
    linearizable_counters,
    monotonic_reads,
    no_lost_writes,
    reads_see_acknowledged,
    reliable_calls_once,
    rto,
    single_ownership,
)
from harness.checkers.lifecycle import exited_cleanly
from harness.faults.spec import Kill, Restart

pytestmark = [pytest.mark.e2e]

BASELINE_S = 2.0
AFTER_S = 3.0
# Wallet deposits under restarts (D): the workload re-sends a share of acknowledged deposits with the
# same call_id, and a SIGKILL leaves some outcomes unknown, so `--bug no-dedup` double-applies.
WALLET_RATE = 4.0





def test_restart_node_graceful(stack, scenario):
    t = stack.spec.timers
    wl = scenario.workload(wallet_rate=WALLET_RATE)
    with scenario.observing(), wl.running():
        scenario.settle(BASELINE_S, "baseline")
        injected = scenario.nemesis.apply(Restart("node-0", graceful=True), hold=1.0)
        scenario.wait_converged(budgets.convergence(t))
        scenario.settle_clean(AFTER_S, "after", budgets.convergence(t))
    wl.final_reads()
    codes = injected.detail.get("exit_codes", {})
    result = scenario.conclude(
        no_lost_writes(), reads_see_acknowledged(), monotonic_reads(), linearizable_counters(),
        single_ownership(), reliable_calls_once(),
        converged(within_s=budgets.convergence(t)), error_window(budget_s=2.0),
        exited_cleanly(codes, t.shutdown_grace),
    )
    assert result.passed, result.explain()


def test_restart_node_sigkill(stack, scenario):
    """The node stays dead longer than the failover budget, so the RTO measures failover (its shards
    moving to live nodes), not the node's own restart."""
    t = stack.spec.timers
    wl = scenario.workload(wallet_rate=WALLET_RATE)
    with scenario.observing(), wl.running():
        scenario.settle(BASELINE_S, "baseline")
        scenario.nemesis.apply(Kill("node-0", "SIGKILL"), hold=budgets.failover(t) + 2.0)
        scenario.wait_converged(budgets.convergence(t))
        scenario.settle_clean(AFTER_S, "after", budgets.convergence(t))
    wl.final_reads()
    result = scenario.conclude(
        no_lost_writes(), reads_see_acknowledged(), monotonic_reads(), linearizable_counters(),
        single_ownership(), reliable_calls_once(),
        converged(within_s=budgets.convergence(t)), rto(budget_s=budgets.failover(t)),
    )
    assert result.passed, result.explain()


def test_restart_gate(stack, scenario):
    t = stack.spec.timers
    wl = scenario.workload()
    with scenario.observing(), wl.running():
        scenario.settle(BASELINE_S, "baseline")
        scenario.nemesis.apply(Restart("gate-0", graceful=True), hold=1.0)
        scenario.wait_converged(budgets.convergence(t))
        scenario.settle_clean(AFTER_S, "after", budgets.convergence(t))
    wl.final_reads()
    result = scenario.conclude(
        no_lost_writes(), reads_see_acknowledged(), converged(within_s=budgets.convergence(t)),
        rto(budget_s=budgets.gate_restart(t)),
    )
    assert result.passed, result.explain()
