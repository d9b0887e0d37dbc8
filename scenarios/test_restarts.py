"""Seed §7.1 pod restart / §7.3 pod deletion: restart a node gracefully, SIGKILL a node, restart a gate.

Given a 3-node, 2-gate stack under counter load and the 20 Hz probe (node restarts also under wallet
deposits), when one instance goes away and comes back, then no acknowledged increment is lost (L), reads
per key never go backwards (M), no key is served by a stale owner (O), each reliable call applies once
per call_id (D), the cluster converges again (C), and the outage of the affected keys stays within
budgets derived from the stack's timers (harness/budgets.py).
"""

from __future__ import annotations

import pytest
from chaos_checks import DENSE_WALLETS, owned_keys, require_capability

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
from harness.checkers.drain import drained_in_flight
from harness.checkers.lifecycle import exited_cleanly
from harness.checkers.readiness import ready_means_serving
from harness.faults.spec import Kill, Latency, Restart
from harness.platforms.base import Timers
from harness.scenario import unsupported_is_skip

pytestmark = [pytest.mark.e2e]

BASELINE_S = 2.0
AFTER_S = 3.0
# Wallet deposits under restarts (D): the workload re-sends a share of acknowledged deposits with the
# same call_id, and deposits of unknown outcome (a SIGKILL leaves some), so `--bug no-dedup`
# double-applies; dense enough that deposits are in flight at every fault (DENSE_WALLETS).





def test_restart_node_graceful(stack, scenario):
    t = stack.spec.timers
    wl = scenario.workload(**DENSE_WALLETS)
    with scenario.observing(readiness=True), wl.running():
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
        exited_cleanly(codes, t.shutdown_grace), ready_means_serving(budgets.ready_serving(t)),
    )
    assert result.passed, result.explain()


# ---- drain near the grace period ---------------------------------------------------------------------
# The reference node keeps 5 s of its grace for flush, handover, revoke and closing its servers and
# pool after draining; a call may be held at most that close to the grace, and never past the gates'
# call timeout.
DRAIN_MARGIN_S = 5.5
# Many keys at a low rate: writes held seconds by PostgreSQL must not queue behind each other (per
# object, or in the node's 4-statement write batches: a queued batch waits a whole hold more and ends
# as a gate timeout, which says nothing about the drain), and a burst of writes fired 20 ms before the
# SIGTERM makes sure some are in flight inside the node when it lands.
DRAIN_LOAD = {"counter_keys": 128, "counter_rate": 6.0, "read_ratio": 0.5, "burst_at_inject": 8,
              "burst_keys": 8}


def near_grace_hold(t: Timers) -> float:
    """How long the victim's writes are held in PostgreSQL: min(grace − margin, call timeout − 1 s)
    (4 s with the fast timers; conformance 2.2 holds its one call 2.5 s)."""
    return round(min(t.shutdown_grace - DRAIN_MARGIN_S, t.call_timeout - 1.0), 2)


def test_sigterm_drain_near_grace(stack, scenario):
    """Writes on node-0 are held by PostgreSQL (its link slowed to ``near_grace_hold``), so calls are
    in flight inside it when it is SIGTERMed; none of them may be cut (drained_in_flight), and the
    cluster converges. (Exit 0 within the grace is judged by test_restart_node_graceful; here the
    exit codes are recorded in ``extra``.)"""
    t = stack.spec.timers
    require_capability(stack, "latency")
    hold = near_grace_hold(t)
    victim = "node-0"
    wl = scenario.workload(**DRAIN_LOAD)
    with scenario.observing(), wl.running():
        # every key's object active first: a cold key's call costs a load and a write (two held round
        # trips, over the call timeout) and holds one of the victim's few open connections meanwhile,
        # so no call is held for one round trip and the drain goes unexercised (seen on the correct build)
        warmed = wl.warm()
        scenario.settle(BASELINE_S, "baseline")
        owners = stack.shard_map()
        with unsupported_is_skip():
            slow, _ = scenario.nemesis.inject(Latency((victim, "postgres"), ms=int(hold * 1000)))
        try:
            scenario.settle(1.0, "the victim's writes are held in flight")
            stop, injected = scenario.nemesis.inject(Restart(victim, graceful=True))  # returns at exit
        finally:
            scenario.nemesis.heal(slow)
        scenario.nemesis.heal(stop)  # start it again
        scenario.wait_converged(budgets.convergence(t))
        scenario.settle_clean(AFTER_S, "after", budgets.convergence(t))
    wl.final_reads()
    keys = owned_keys(owners, stack.spec.shards, [victim], wl.counter_keys)
    result = scenario.conclude(
        no_lost_writes(), reads_see_acknowledged(), monotonic_reads(), linearizable_counters(),
        single_ownership(), converged(within_s=budgets.convergence(t)),
        drained_in_flight(keys, t.call_timeout, held_s=hold - 1.5),
        extra={"hold_s": hold, "victim_keys": len(keys), "warmed_keys": warmed,
               "exit_codes": injected.detail.get("exit_codes")},
    )
    assert result.passed, result.explain()


# Committed but unanswered at the kill, certainly (issue 15): PostgreSQL's replies to the victim are held
# from just before a burst of increments and deposits aimed at the victim's keys until the SIGKILL
# (HOLD_REPLIES_MS after the burst was sent: its transactions commit, their answers are lost with the
# process); the clients re-send deposits of unknown outcome with the same call_id, so a node that does
# not deduplicate applies them twice (D). Where the platform has no fault proxy the kill is plain.
HOLD_REPLIES_MS = 300.0
# The burst goes to 12 distinct keys of the victim (32 counter keys: ~10 live on it): per-object locks
# let one write per key reach PostgreSQL at a time, and the node has 4 statements in flight.
KILL_LOAD = {**DENSE_WALLETS, "counter_keys": 32, "burst_at_inject": 12, "burst_keys": 12}


def test_restart_node_sigkill(stack, scenario):
    """The node stays dead longer than the failover budget, so the RTO measures failover (its shards
    moving to live nodes), not the node's own restart."""
    t = stack.spec.timers
    victim = "node-0"
    wl = scenario.workload(**KILL_LOAD)
    hold = HOLD_REPLIES_MS if not stack.capabilities().get("latency") else 0.0
    with scenario.observing(readiness=True), wl.running():
        scenario.settle(BASELINE_S, "baseline")
        aimed = wl.aim_burst({s for s, (_, current) in stack.shard_map().items() if current == victim})
        scenario.recorder.log("burst aimed at the victim", counter_keys=aimed[0], wallets=aimed[1])
        scenario.nemesis.apply(Kill(victim, "SIGKILL", hold_replies_ms=hold), hold=budgets.failover(t) + 2.0)
        scenario.wait_converged(budgets.convergence(t))
        scenario.settle_clean(AFTER_S, "after", budgets.convergence(t))
    wl.final_reads()
    result = scenario.conclude(
        no_lost_writes(), reads_see_acknowledged(), monotonic_reads(), linearizable_counters(),
        single_ownership(), reliable_calls_once(),
        converged(within_s=budgets.convergence(t)), rto(budget_s=budgets.failover(t)),
        ready_means_serving(budgets.ready_serving(t)),
    )
    assert result.passed, result.explain()


def test_restart_gate(stack, scenario):
    t = stack.spec.timers
    wl = scenario.workload()
    with scenario.observing(readiness=True), wl.running():
        scenario.settle(BASELINE_S, "baseline")
        scenario.nemesis.apply(Restart("gate-0", graceful=True), hold=1.0)
        scenario.wait_converged(budgets.convergence(t))
        scenario.settle_clean(AFTER_S, "after", budgets.convergence(t))
    wl.final_reads()
    result = scenario.conclude(
        no_lost_writes(), reads_see_acknowledged(), converged(within_s=budgets.convergence(t)),
        rto(budget_s=budgets.gate_restart(t)), ready_means_serving(budgets.ready_serving(t)),
    )
    assert result.passed, result.explain()
