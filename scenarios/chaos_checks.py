"""What the chaos scenarios (test_partitions.py, test_chaos.py) share: running a fault as an explained
skip when the platform cannot apply it, finding the keys a fault hit, the after phase, and recording the
stored state. Their checkers (stored state, write recovery, evidence that a fault bit) are pure and
live in ``harness/checkers/chaos.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from harness.capabilities import for_spec, stored_state_reason, stored_state_wait
from harness.checkers.chaos import PERSISTED_F
from harness.checkers.verdict import Check
from harness.history import History
from harness.platforms.base import StoredState, Timers
from harness.sharding import shard_of
from harness.waiting import WaitTimeout, wait_until

Checker = Callable[[History], Check]


def heal_fast(t: Timers) -> float:
    """H for a component that comes back with ownership unchanged (a healed link, a freed disk): one
    lease TTL of client/pool backoff, a few ticks and 1 s allowance (5 s with the fast timers, as in
    SCENARIOS.md)."""
    return round(t.lease_ttl + 4 * t.tick + 1.0, 2)


# ---- running a fault -------------------------------------------------------------------------------
def require_capability(stack: Any, kind: str) -> None:
    reason = stack.capabilities().get(kind, f"the platform does not report {kind!r} faults")
    if reason:
        pytest.skip(f"unsupported on this platform: {reason}")


# D decides in every scenario with wallets (issue 15): 20 deposits/s over 12 wallets (some live on every
# node; the old 4/s over 4 wallets left whole nodes without one and 0-1 deposits in flight at a fault),
# deposits of unknown outcome re-sent with their call_id (the retry where duplicates live), and a burst
# of 8 increments + 2 deposits right before every fault, so deposits are in flight at each
# (reliable_calls_once's ``in_flight_at_faults``).
DENSE_WALLETS: dict[str, Any] = {"wallet_rate": 20.0, "wallet_keys": 12, "retry_unknown": True, "burst_at_inject": 8}


def owned_keys(owners: dict[int, tuple[str, str]], shards: int, nodes: list[str], keys: list[str]) -> set[str]:
    """The keys whose shard one of ``nodes`` owned (current owner) in the shard map ``owners``."""
    return {k for k in keys if owners.get(shard_of(k, shards), ("", ""))[1] in nodes}


def wait_failover(stack: Any, live_before: set[str], timeout: float) -> bool:
    """Until a node has dropped out of the cluster and the rest own every shard (or ``timeout``)."""
    def moved() -> bool:
        return stack.live_nodes() < live_before and stack.cluster_state().converged
    try:
        wait_until(moved, timeout, "the cut node's shards to move to the others", interval=0.1)
    except WaitTimeout:
        return False
    return True


def wait_ops_ok(scenario: Any, timeout: float, fs: tuple[str, ...] = ("probe",), window_s: float = 1.0) -> bool:
    """Until every ``fs`` op of a recent ``window_s`` completed ok, or ``timeout``. Why: the after phase
    must cover the measurement's stability window *after* service came back, or a late recovery reads
    as "never recovered" because the history ended."""
    return bool(scenario.wait_ops_ok(timeout, fs, window_s=window_s))


def after_the_heal(stack: Any, scenario: Any, timeout: float, after_s: float) -> None:
    """The after phase: wait (bounded) for convergence, readiness and successful probes and writes,
    then keep the load on for ``after_s``. A wait that runs out is logged, not raised: the checkers
    (C, H, R, L) then judge what happened and name the invariant, instead of the scenario ending in
    an exception."""
    for what, wait in (("converged", lambda: scenario.wait_converged(timeout)),
                       ("ready", lambda: stack.wait_ready(timeout))):
        try:
            wait()
        except WaitTimeout as exc:
            scenario.recorder.log(f"not {what} within {timeout:g}s after the heal", error=str(exc)[:500])
    wait_ops_ok(scenario, timeout, ("probe", "increment"))
    scenario.settle_clean(after_s, "after the heal", timeout, fs=("probe", "increment"))


def converged_or_logged(scenario: Any, timeout: float) -> None:
    """Wait for convergence before the final reads; a timeout is logged for the C checker to judge."""
    try:
        scenario.wait_converged(timeout)
    except WaitTimeout as exc:
        scenario.recorder.log(f"not converged within {timeout:g}s before the final reads", error=str(exc)[:500])


def final_reads_and_stored(stack: Any, scenario: Any, timeout: float, *workloads: Any) -> None:
    """After the load stopped: wait (logged, not raised) for convergence, read every key of
    ``workloads`` once more (L, M need it) and sample what PostgreSQL stores for their counters."""
    converged_or_logged(scenario, timeout)
    for wl in workloads:
        wl.final_reads()
    record_persisted(stack, scenario, [k for wl in workloads for k in wl.counter_keys])


# ---- the stored state oracle ----------------------------------------------------------------------------
def stored_settle(stack: Any) -> tuple[float, float]:
    """(interval between two reads that must agree, deadline) for the stored state, from what the stack
    declares (harness.capabilities.stored_state_wait): the reference stack persists before
    acknowledging; real Goverse saves every persistence interval, so two reads must be one interval
    apart to prove it has nothing left to save, and it gets a few intervals (capped) to catch up."""
    return stored_state_wait(for_spec(stack.spec))


def record_persisted(stack: Any, scenario: Any, keys: list[str]) -> None:
    """Sample what PostgreSQL holds for ``keys`` into the history (for :func:`persisted_not_behind`),
    once it has settled: two reads 0.5 s apart agree (bounded by ``stored_settle``), so a stack that
    legitimately persists a moment after acknowledging is judged on what it stores, not on its lag.
    Call it after the load stopped. A stack whose periodic save is longer than a scenario waits
    (harness.capabilities.stored_state_reason) is not read at all: the checker says not-applicable."""
    skip = stored_state_reason(for_spec(stack.spec))
    if skip is not None:
        scenario.recorder.sample(PERSISTED_F, {"not_applicable": skip})
        return
    if not isinstance(stack, StoredState):
        scenario.recorder.sample(PERSISTED_F, {"error": "the platform gives no access to the stored state"})
        return
    reader = stack.persisted_objects
    seen: list[dict[str, Any]] = []
    errors: list[str] = []

    def settled() -> bool:
        try:
            rows = reader(keys)
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, then recorded
            errors.append(repr(exc)[:300])
            raise
        seen.append({k: (d or {}).get("value") for k, d in rows.items() if isinstance(d, dict)})
        return len(seen) > 1 and seen[-1] == seen[-2]

    gap, deadline = stored_settle(stack)
    with contextlib.suppress(WaitTimeout):  # still moving: judge the last read, it says how far behind
        wait_until(settled, deadline, "the stored state to settle", interval=gap)
    if not seen:
        why = errors[-1] if errors else "no read completed"
        scenario.recorder.sample(PERSISTED_F, {"error": f"the stored state could not be read: {why}"})
        return
    scenario.recorder.sample(PERSISTED_F, {"keys": keys, "values": seen[-1], "reads": len(seen)})
