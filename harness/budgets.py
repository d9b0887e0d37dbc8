"""Scenario budgets derived from the stack's timers, never hard-coded in scenario bodies.

Why derived: the same scenario runs against the reference stack with fast timers (lease 3 s, stability
1 s, tick 0.25 s) and against real Goverse v0.1.1 (15 s, 10 s, 5 s). A node's shards can only move after
its lease expired, membership was stable for the stability window and a few management ticks passed, so
every failover budget is that sum plus a fixed allowance for process start and client timeouts. With the
fast timers these give the numbers in SCENARIOS.md (e.g. RTO ≤ 10 s for a node SIGKILL).
"""

from __future__ import annotations

from harness.platforms.base import Timers


def failover(t: Timers, allowance: float = 5.0) -> float:
    """A dead node's shards are served again: lease expiry + stability + 4 ticks + allowance."""
    return round(t.lease_ttl + t.stability + 4 * t.tick + allowance, 2)


def handover(t: Timers, allowance: float = 1.0) -> float:
    """A graceful handover (no lease expiry to wait for): stability + 4 ticks + allowance."""
    return round(t.stability + 4 * t.tick + allowance, 2)


def migration_errors(t: Timers) -> float:
    """E for a key whose shard changes owner gracefully (a node added, removed or rolled): the new owner
    claims it after the stability window and a few ticks — :func:`handover`, 3 s on the fast timers
    (SCENARIOS.md's E(3 s)), 31 s on Goverse v0.1.1's, which waits 10 s of stable membership."""
    return handover(t)


def gate_restart(t: Timers, allowance: float = 4.0) -> float:
    """A gate restart: clients fail over to another gate; the restarted gate needs its shard map."""
    return round(4 * t.tick + allowance, 2)


def convergence(t: Timers, allowance: float = 5.0) -> float:
    """Cluster back to target == current everywhere after the last heal."""
    return round(t.lease_ttl + t.stability + 8 * t.tick + allowance, 2)


def bootstrap(t: Timers, allowance: float = 8.0) -> float:
    """Cold start to converged: stability window + a few ticks + process start allowance."""
    return t.bootstrap_budget(allowance)


def stuck_call_floor(t: Timers) -> float:
    """How long a call stuck at a stopped node lasts at least, by what a stack promises from its
    timers: the gate gives up at the call timeout, or earlier when the node's lease expires and the
    gate drops the node (real Goverse cancels such calls then); a lease is renewed every third of its
    TTL, so a call in flight when the node stopped lasts at least two thirds of the TTL."""
    return max(0.5, min(t.call_timeout, 2 * t.lease_ttl / 3) - 0.5)


def ready_serving(t: Timers, margin: float = 0.25) -> float:
    """After /ready 200, calls to the instance's shards succeed within two ticks (the gates' view of the
    shard map refreshes once a tick) and a margin for the recorder's poll: 0.75 s on the fast timers."""
    return round(2 * t.tick + margin, 2)
