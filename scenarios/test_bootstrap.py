"""Seed §7.1 cluster bootstrap: a cold start of etcd, PostgreSQL, 3 nodes, 2 gates and the inspector.

Given nothing running, when the platform deploys the stack, then the shard map converges (every shard
target == current, owner alive) within the bootstrap budget, every instance reports ready, and every
probe key — spread over distinct shards — is served through every gate. Time-to-ready is reported.
"""

from __future__ import annotations

import pytest

from harness import budgets
from harness.checkers import availability_at_least, converged
from harness.checkers.lifecycle import ready_within

pytestmark = [pytest.mark.e2e]





def test_bootstrap(stack, scenario):
    t = stack.spec.timers
    timings = dict(getattr(stack, "timings", {}) or {})
    wl = scenario.workload(counter_rate=0)  # probe only: every probe key through every gate
    with scenario.observing(), wl.running(load=False):
        scenario.settle(3.0, "probe every key")
    result = scenario.conclude(
        ready_within(timings, budgets.bootstrap(t)),
        converged(within_s=0.0),
        availability_at_least(1.0),
        extra={"time_to_ready_s": timings.get("total_s"), "bringup": timings},
    )
    assert result.passed, result.explain()
