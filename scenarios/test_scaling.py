"""Seed §7.1 node scaling and gate scaling, under the counter and wallet workloads.

Given a 3-node, 2-gate stack under load, when nodes are added (3 → 5) or removed (5 → 3), then shards
rebalance, the shard map converges and is balanced within the convergence budget after each step, no
acknowledged write is lost (L), reads never go backwards (M), no key is served by two owners (O),
reliable calls apply once (D), and the keys whose shard moved see errors for at most E(3 s) — on the
fast timers; the stack's handover promise (budgets.migration_errors: stability + 4 ticks + 1 s) in
general, 31 s on Goverse, whose new owner waits for 10 s of stable membership.
When gates are added (2 → 3) and removed (3 → 1), the clients of a removed gate move on within E(3 s).

Every step is an operator-action fault (``ScaleTo``) applied by the nemesis: a window in the history
and a guaranteed undo. The scenario heals it itself under the same load (the undo scales back to the
shape before: 5 → 3 after the scale-up, 3 → 5 after the scale-down), and the checks judge the undo
step too; had the scenario failed first, the final heal would still put the shape back.

How clients learn about gates: the workload's gate list is fixed at creation, so the operations
publish the serving gates to ``Workload.set_gates`` (the local stand-in for a Service's endpoints):
an added gate gets traffic once ready; a removed gate is dropped from the list only *after* it has
stopped (an endpoint controller lags), so its clients first fail over through ``GatePicker``'s
cool-off on connection errors — the path E(3 s) judges.

``--bug lose-state-on-handover`` must fail ``test_scale_nodes_down`` (L): shards handed over by the
leaving nodes are activated fresh by their new owners.
"""

from __future__ import annotations

from typing import Any

import pytest
from chaos_checks import DENSE_WALLETS

from harness import budgets
from harness.checkers import (
    converged,
    error_window,
    linearizable_counters,
    monotonic_reads,
    no_lost_writes,
    reads_see_acknowledged,
    reliable_calls_once,
    single_ownership,
)
from harness.checkers.lifecycle import every_gate_served
from harness.checkers.operations import steps_converged_within
from harness.checkers.readiness import ready_means_serving
from harness.faults.spec import ScaleTo
from harness.platforms.base import Timers
from harness.scenario import Scenario, unsupported_is_skip
from harness.sharding import migrating_keys

pytestmark = [pytest.mark.e2e]

BASELINE_S = 2.0
AFTER_S = 3.0  # ≥ availability window (1 s) + stable window (2 s): the RTO of the last step is measurable
GATE_E_S = 3.0  # SCENARIOS.md: E(3 s) for clients of a removed gate (client fail-over, no timer)


def step_budget(t: Timers) -> float:
    """A scale step converges (balanced) within lease + stability + 8 ticks + 4 s: 10 s on fast timers."""
    return budgets.convergence(t, allowance=4.0)


def shape(scenario: Scenario, nodes: int, gates: int) -> None:
    """Set-up outside the experiment (no window recorded): bring the module's stack to a shape."""
    with unsupported_is_skip():
        ops = scenario.operations(record=False)
    ops.scale("node", nodes)
    ops.scale("gate", gates)


def node_scenario(stack: Any, scenario: Any, start: int, to: int) -> None:
    t = stack.spec.timers
    shape(scenario, start, 2)
    wl = scenario.workload(**DENSE_WALLETS)
    ops = scenario.operations(on_endpoints=wl.set_gates)
    wl.set_gates(ops.serving_gates())
    with scenario.observing(readiness=True), wl.running():
        scenario.settle(BASELINE_S, f"baseline: {start} nodes")
        fid, scaled = scenario.nemesis.inject(ScaleTo("node", to))
        step = scaled.outcome
        scenario.settle_clean(AFTER_S, f"after: {to} nodes", budgets.convergence(t))
        scenario.nemesis.heal(fid)  # the undo: back to `start` nodes, judged under the same load
        scenario.settle_clean(AFTER_S, f"after the undo: {start} nodes", budgets.convergence(t))
    wl.final_reads()
    moving = migrating_keys(wl.probe_keys + wl.counter_keys, stack.spec.shards, step.shard_map_before,
                            step.shard_map_after)
    result = scenario.conclude(
        no_lost_writes(), reads_see_acknowledged(), monotonic_reads(), linearizable_counters(),
        single_ownership(), reliable_calls_once(),
        steps_converged_within(step_budget(t)), converged(within_s=step_budget(t)),
        error_window(budget_s=budgets.migration_errors(t), keys=set(moving)),  # E(3 s) on fast timers
        ready_means_serving(budgets.ready_serving(t)),
        extra={"scale": f"{start}->{to}", "step_converged_s": step.converged_s, "migrating_keys": len(moving),
               "changed": step.changed,
               "undo_converged_s": scaled.undone.converged_s if scaled.undone is not None else None},
    )
    assert result.passed, result.explain()


def test_scale_nodes_up(stack, scenario):
    """3 → 5 nodes: the new nodes take their share of shards (handover from the old owners)."""
    node_scenario(stack, scenario, 3, 5)


def test_scale_nodes_down(stack, scenario):
    """5 → 3 nodes: the leaving nodes hand their shards over on SIGTERM (graceful, one at a time)."""
    node_scenario(stack, scenario, 5, 3)


def test_scale_gates(stack, scenario):
    """2 → 3 → 1 gates; nodes untouched."""
    t = stack.spec.timers
    shape(scenario, 3, 2)
    wl = scenario.workload()
    ops = scenario.operations(on_endpoints=wl.set_gates)
    wl.set_gates(ops.serving_gates())
    with scenario.observing(readiness=True), wl.running():
        scenario.settle(BASELINE_S, "baseline: 2 gates")
        up_fid, up = scenario.nemesis.inject(ScaleTo("gate", 3))
        scenario.settle(BASELINE_S, "3 gates")
        down_fid, down = scenario.nemesis.inject(ScaleTo("gate", 1, drain_endpoints=False))
        scenario.settle_clean(AFTER_S, "after: 1 gate", budgets.convergence(t))
        scenario.nemesis.heal(down_fid)  # the undos, newest first: 1 → 3, then 3 → 2 gates
        scenario.nemesis.heal(up_fid)
        scenario.settle_clean(AFTER_S, "after the undo: 2 gates", budgets.convergence(t))
    wl.final_reads()
    served = {g for g, n in gate_use(scenario.recorder.history()).items() if n}
    result = scenario.conclude(
        no_lost_writes(), reads_see_acknowledged(), converged(within_s=budgets.convergence(t)),
        error_window(budget_s=GATE_E_S),
        every_gate_served(served, set(up.outcome.changed) | {"gate-0", "gate-1"}),
        ready_means_serving(budgets.ready_serving(t)),
        extra={"gates_added": up.outcome.changed, "gates_removed": down.outcome.changed,
               "gates_that_served": sorted(served)},
    )
    assert result.passed, result.explain()


def gate_use(history: Any) -> dict[str, int]:
    """ok client calls per gate (``node`` of a client op is the gate it was sent to)."""
    out: dict[str, int] = {}
    for op in history.ops():
        if op.type == "ok" and op.node:
            out[op.node] = out.get(op.node, 0) + 1
    return out


