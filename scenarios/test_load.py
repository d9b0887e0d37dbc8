"""Seed §7.2 load testing: throughput and latency at a steady rate, the knee of a step load, and latency
and errors while every node is restarted, while nodes are added and removed, and across a node SIGKILL.

Given the 3-node, 2-gate reference stack and locust (headless master + one worker per core, FastHttpUser
on the gate API: counter increments and reads, wallet reliable deposits with call_ids) at a constant
offered rate, when the operation happens, then each phase's offered vs achieved rate, error rate and
exact p50/p95/p99/max (raw samples, not locust's rounded buckets) are reported in run.json
(``extra.load``) with throughput and latency plots, the budgets below hold, and no acknowledged write
is lost (L), reads never go backwards (M), no key has two owners (O) and no reliable call is applied
twice (D) — load is no excuse for wrong answers.

Durations come from the load profile: ``GVH_LOAD_PROFILE=short`` (default, CI: a few seconds per
phase) or ``release`` (minutes per phase for release load reports), ``GVH_LOAD_SCALE`` to stretch them.
docs/load-testing.md explains every number.

Every operation is a fault applied by the nemesis, so each has its window in the history and a
guaranteed undo: the rolling restart (one ``Restart`` per node, held ``hold_s``, each ready and the
shard map converged before the next) and the scale step (``ScaleTo``, whose heal is the scale-down back).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import budgets
from harness.checkers import (
    converged,
    linearizable_counters,
    monotonic_reads,
    no_lost_writes,
    reads_see_acknowledged,
    reliable_calls_once,
    rto,
    single_ownership,
)
from harness.checkers.load import (
    achieved_at_least,
    error_rate_at_most,
    generator_not_saturated,
    knee_reported,
    p99_at_most,
    samples_complete,
)
from harness.faults.spec import Kill, Restart, ScaleTo
from harness.load.driver import LoadDriver

pytestmark = [pytest.mark.e2e, pytest.mark.load]

# Budgets for the reference stack on a 2-core machine shared by the stack and the generator.
ACHIEVED_RATIO = 0.9  # achieved ≥ 0.9 × offered where the stack is healthy
STEADY_ERROR_RATE = 0.005  # healthy phases: at most 0.5 % of calls fail or time out
STEADY_P99_MS = 500.0  # healthy phases at the baseline rate (well under the knee)
ROLLING_ERROR_RATE = 0.08  # while every node is restarted in turn (calls to handed-over shards fail)
REBALANCE_ERROR_RATE = 0.10  # while nodes join and leave (calls to migrating shards fail)
OPERATION_P99_MS = 3000.0  # p99 of the calls that succeed during an operation


def sigkill_error_budget(nodes: int) -> float:
    """During a SIGKILL only the dead node's keys may fail: about 1/nodes of the calls, plus slack."""
    return round(1.0 / nodes + 0.1, 3)


def correctness(load: LoadDriver) -> list:
    """L, M, O over the load's counters; D whenever the mix deposits into wallets."""
    checks = [no_lost_writes(), reads_see_acknowledged(), monotonic_reads(), linearizable_counters(),
              single_ownership()]
    return checks + ([reliable_calls_once()] if load.profile.has_op("deposit") else [])


def generator_checks() -> list:
    return [samples_complete(), generator_not_saturated()]


def wait_healthy(scenario, timers) -> None:
    """Converged in etcd *and* every instance /ready — gates included, whose view of the shard map lags
    etcd by up to a tick. A rollout gated on readiness waits for exactly this before its next step."""
    scenario.wait_converged(budgets.convergence(timers))
    took = scenario.deployment.wait_ready(budgets.convergence(timers))
    scenario.recorder.log("ready", waited_s=round(took, 3))


@pytest.fixture
def load(scenario) -> Iterator[LoadDriver]:
    drv = LoadDriver(scenario)
    drv.inject_from_env()
    try:
        yield drv
    finally:
        drv.close()


def test_load_baseline_steady(stack, scenario, load):
    """Throughput and latency at a steady rate well under the knee: the stack keeps up, no errors."""
    p = load.profile
    with load.running(f"steady:rate={p.rate:g},duration={p.steady_s + p.warmup_s:g}") as run:
        load.wait(run)
    load.record_phase("steady", run.t0 + p.warmup_s, run.t0 + p.warmup_s + p.steady_s,
                      run.offered_between(run.t0 + p.warmup_s, run.t0 + p.warmup_s + p.steady_s))
    load.final_reads()
    result = scenario.conclude(
        *correctness(load), *generator_checks(),
        achieved_at_least(ACHIEVED_RATIO, ["steady"]), error_rate_at_most(STEADY_ERROR_RATE, ["steady"]),
        p99_at_most(STEADY_P99_MS, ["steady"]),
        extra=load.report(),
    )
    assert result.passed, result.explain()


def test_load_baseline_step_knee(stack, scenario, load):
    """A step load from well under to past the stack's capacity: where do p99 or errors jump (the knee)?
    Past the knee calls may time out; that is measured, not a failure — correctness still holds."""
    with load.running(load.profile.step_shape()) as run:
        load.wait(run)
    load.record_stages(run)
    load.final_reads()
    result = scenario.conclude(
        *correctness(load), *generator_checks(), knee_reported(ACHIEVED_RATIO),
        extra=load.report(),
    )
    assert result.passed, result.explain()


def test_load_rolling_restart(stack, scenario, load):
    """Every node restarted gracefully in turn (waiting for convergence between nodes, as a rollout
    gated on readiness does) at a constant offered rate."""
    t, p = stack.spec.timers, load.profile
    nodes = sorted(i.name for i in stack.instances("node") if i.running)
    wl = scenario.workload()
    with scenario.observing(), wl.running(load=False), load.running(f"steady:rate={p.rate:g}"):
        scenario.settle(p.warmup_s, "load warm-up")
        with load.phase("before"):
            scenario.settle(p.before_s, "baseline under load")
        with load.phase("rolling-restart"):
            # paced like a rollout with minReadySeconds: each node restarted through the nemesis (its own
            # window and heal), held ``hold_s``, healthy again before the next. RollingRestart rolls without
            # pacing, so the phase would be shorter with the same failed calls per restart, and its error
            # rate (budgeted for the paced rollout) would double
            op = scenario.recorder.nemesis_start("rolling-restart", target=nodes, params={"graceful": True})
            try:
                for n in nodes:
                    scenario.nemesis.apply(Restart(n, graceful=True), hold=p.hold_s)
                    wait_healthy(scenario, t)
            finally:
                scenario.recorder.nemesis_stop(op, "rolling-restart", target=nodes)
        with load.phase("after"):
            scenario.settle(p.after_s, "after the rollout")
    load.final_reads()
    result = scenario.conclude(
        *correctness(load), *generator_checks(), converged(within_s=budgets.convergence(t)),
        achieved_at_least(ACHIEVED_RATIO, ["before", "after"]),
        error_rate_at_most(STEADY_ERROR_RATE, ["before", "after"]),
        error_rate_at_most(ROLLING_ERROR_RATE, ["rolling-restart"]),
        p99_at_most(STEADY_P99_MS, ["before", "after"]), p99_at_most(OPERATION_P99_MS, ["rolling-restart"]),
        extra=load.report(),
    )
    assert result.passed, result.explain()


def test_load_rebalancing_scale_nodes(stack, scenario, load):
    """Nodes scaled up by two and back down at a constant offered rate: shards migrate both ways."""
    t, p = stack.spec.timers, load.profile
    n = len([i for i in stack.instances("node") if i.running])
    wl = scenario.workload()
    with scenario.observing(), wl.running(load=False), load.running(f"steady:rate={p.rate:g}"):
        scenario.settle(p.warmup_s, "load warm-up")
        with load.phase("before"):
            scenario.settle(p.before_s, "baseline under load")
        with load.phase("rebalancing"):  # on a failure the nemesis's final heal scales back all the same
            with load.phase("scale-up"):
                fid, _ = scenario.nemesis.inject(ScaleTo("node", n + 2))
                wait_healthy(scenario, t)
            with load.phase("scaled-up"):
                scenario.settle(p.hold_s, f"{n + 2} nodes")
            with load.phase("scale-down"):
                scenario.nemesis.heal(fid)  # the undo: back to n nodes
                wait_healthy(scenario, t)
        with load.phase("after"):
            scenario.settle(p.after_s, f"back to {n} nodes")
    load.final_reads()
    result = scenario.conclude(
        *correctness(load), *generator_checks(), converged(within_s=budgets.convergence(t)),
        achieved_at_least(ACHIEVED_RATIO, ["before", "after"]),
        error_rate_at_most(STEADY_ERROR_RATE, ["before", "after"]),
        error_rate_at_most(REBALANCE_ERROR_RATE, ["rebalancing"]),
        p99_at_most(STEADY_P99_MS, ["before", "after"]),
        p99_at_most(OPERATION_P99_MS, ["rebalancing"]),
        extra=load.report(),
    )
    assert result.passed, result.explain()


def test_load_sigkill_node(stack, scenario, load):
    """One node SIGKILLed under load and kept dead past the failover budget, then started again: only
    its keys fail meanwhile, the probe's RTO stays within the failover budget, and throughput and
    latency return afterwards."""
    t, p = stack.spec.timers, load.profile
    nodes = len([i for i in stack.instances("node") if i.running])
    wl = scenario.workload()
    with scenario.observing(), wl.running(load=False), load.running(f"steady:rate={p.rate:g}"):
        scenario.settle(p.warmup_s, "load warm-up")
        with load.phase("before"):
            scenario.settle(p.before_s, "baseline under load")
        with load.phase("sigkill"):
            scenario.nemesis.apply(Kill("node-0", "SIGKILL"), hold=budgets.failover(t) + 2.0)
        with load.phase("recovery"):
            wait_healthy(scenario, t)
        with load.phase("after"):
            scenario.settle(p.after_s, "after recovery")
    load.final_reads()
    result = scenario.conclude(
        *correctness(load), *generator_checks(), converged(within_s=budgets.convergence(t)),
        rto(budget_s=budgets.failover(t)),
        achieved_at_least(ACHIEVED_RATIO, ["before", "after"]),
        error_rate_at_most(STEADY_ERROR_RATE, ["before", "after"]),
        error_rate_at_most(sigkill_error_budget(nodes), ["sigkill"]),
        p99_at_most(STEADY_P99_MS, ["before", "after"]),
        extra=load.report(),
    )
    assert result.passed, result.explain()
