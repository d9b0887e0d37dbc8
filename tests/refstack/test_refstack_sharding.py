"""Pure shard logic of the reference stack: hashing, routing messages, leader and node decisions."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from harness.refstack.sharding import (
    RouteError,
    ShardEntry,
    fnv1a_32,
    full_map,
    is_converged,
    plan_rebalance,
    plan_targets,
    route,
    shard_of,
    shards_to_claim,
    shards_to_release,
)

A, B, C, D = "10.0.0.1:7001", "10.0.0.2:7001", "10.0.0.3:7001", "10.0.0.4:7001"


# ------------------------------------------------------------------------------------------ hashing
@pytest.mark.parametrize(("data", "expected"), [
    (b"", 0x811C9DC5),
    (b"a", 0xE40C292C),
    (b"foobar", 0xBF9CF968),
    (b"chongo was here!\n", 0xD49930D5),
])
def test_fnv1a_32_matches_published_vectors(data: bytes, expected: int) -> None:
    assert fnv1a_32(data) == expected


def test_shard_of_is_fnv_mod_shards_for_64_and_goverse_default_8192() -> None:
    assert shard_of("foobar", 64) == 0xBF9CF968 % 64
    assert shard_of("foobar", 8192) == 0xBF9CF968 % 8192
    assert shard_of("é", 64) == fnv1a_32("é".encode()) % 64, "the id's UTF-8 bytes are hashed"
    spread = Counter(shard_of(f"Counter-{i}", 8192) for i in range(20000))
    assert len(spread) > 7000, "ids must spread over almost all of 8192 shards"


@pytest.mark.parametrize(("object_id", "expected"), [
    ("shard#5/monitor", 5),
    ("shard#63/x", 63),
    ("shard#64/x", fnv1a_32(b"shard#64/x") % 64),  # out of range: hashed like Goverse
    ("shard#5", fnv1a_32(b"shard#5") % 64),  # no slash: hashed
    ("shard#x5/y", fnv1a_32(b"shard#x5/y") % 64),
])
def test_pinned_shard_ids_follow_goverse(object_id: str, expected: int) -> None:
    assert shard_of(object_id, 64) == expected


# ------------------------------------------------------------------------------------------ entries
def test_shard_entry_round_trips_goverse_values() -> None:
    assert ShardEntry.parse(f"{A},{A}") == ShardEntry(A, A)
    assert ShardEntry.parse(f"{B},") == ShardEntry(B, "")
    assert ShardEntry.parse(f"{A},{B},f=pinned", 7) == ShardEntry(A, B, ("f=pinned",), 7)
    assert ShardEntry(A, B, ("f=pinned",)).format() == f"{A},{B},f=pinned"
    assert ShardEntry(B, "").format() == f"{B},"
    assert ShardEntry(A, B).migrating and not ShardEntry(A, A).migrating and not ShardEntry(A, "").migrating


# ------------------------------------------------------------------------------------------ routing
def test_route_errors_use_goverse_messages() -> None:
    key = "Counter-1"
    s = shard_of(key, 8)
    live = {A, B}
    cases = [
        (None, "shard mapping not available"),
        ({}, f"no node assigned to shard {s}"),
        ({s: ShardEntry(A, "")}, f"shard {s} has no current node (not yet claimed)"),
        ({s: ShardEntry(C, C)}, f"current node {C} for shard {s} is not in active node list"),
        ({s: ShardEntry(B, A)}, f"shard {s} is in migration from {A} to {B}"),
    ]
    for entries, cause in cases:
        with pytest.raises(RouteError) as err:
            route(entries, live, key, 8)
        assert str(err.value) == f"cannot determine node for object {key}: {cause}"
    assert route({s: ShardEntry(A, A)}, live, key, 8) == (s, A)
    assert route({s: ShardEntry("", A)}, live, key, 8) == (s, A), "empty target: the current owner serves"


# ---------------------------------------------------------------------------------------- leadership
def test_bootstrap_waits_for_stability_then_assigns_all_balanced() -> None:
    assert plan_targets({}, 64, {A, B, C}, stable=False) == {}
    plan = plan_targets({}, 64, {A, B, C}, stable=True)
    assert sorted(plan) == list(range(64))
    assert sorted(Counter(plan.values()).values()) == [21, 21, 22]


def test_balanced_assignment_for_goverse_default_8192_shards() -> None:
    plan = plan_targets({}, 8192, {A, B, C, D}, stable=True)
    assert len(plan) == 8192 and set(Counter(plan.values()).values()) == {2048}


def test_dead_owner_is_replaced_only_when_stable_and_goes_to_least_loaded() -> None:
    entries = {0: ShardEntry(A, A), 1: ShardEntry(A, A), 2: ShardEntry(B, B), 3: ShardEntry(C, C),
               4: ShardEntry(C, C), 5: ShardEntry(C, C)}
    assert plan_targets(entries, 6, {B, C}, stable=False) == {}
    plan = plan_targets(entries, 6, {B, C}, stable=True)
    assert plan == {0: B, 1: B}


def test_gracefully_handed_over_shards_are_reassigned_at_once() -> None:
    entries = {0: ShardEntry(A, ""), 1: ShardEntry(A, ""), 2: ShardEntry(B, B), 3: ShardEntry(C, C)}
    assert plan_targets(entries, 4, {B, C}, stable=False) == {0: B, 1: C}


def test_empty_or_dead_target_with_live_current_stays_on_current() -> None:
    entries = {0: ShardEntry("", B), 1: ShardEntry(A, C), 2: ShardEntry(B, B), 3: ShardEntry(C, C)}
    assert plan_targets(entries, 4, {B, C}, stable=False) == {0: B, 1: C}


def test_hold_keeps_a_dead_nodes_shards_in_place() -> None:
    entries = {0: ShardEntry(A, A), 1: ShardEntry(B, B)}
    assert plan_targets(entries, 2, {B}, stable=True, hold=lambda n: n == A) == {}
    assert plan_targets(entries, 2, {B}, stable=True, hold=lambda n: False) == {0: B}


def test_rebalance_moves_settled_shards_in_batches_until_within_one() -> None:
    entries = {s: ShardEntry(A if s < 32 else B, A if s < 32 else B) for s in range(64)}
    live = {A, B, C}
    moves_total: dict[int, str] = {}
    for _ in range(20):
        plan = plan_targets(entries, 64, live, stable=True, rebalance_batch=4)
        if not plan:
            break
        assert len(plan) <= 4 and set(plan.values()) == {C}
        for s, t in plan.items():
            entries[s] = ShardEntry(t, t)  # the move completes
        moves_total.update(plan)
    counts = Counter(e.target for e in entries.values())
    assert max(counts.values()) - min(counts.values()) <= 1 and counts[C] == 21
    assert len(moves_total) == 21, "only the needed shards move"


def test_rebalance_skips_shards_already_migrating_and_needs_stability() -> None:
    entries = {0: ShardEntry(A, A), 1: ShardEntry(A, A), 2: ShardEntry(A, A), 3: ShardEntry(B, A)}
    assert plan_targets(entries, 4, {A, B}, stable=False) == {}
    plan = plan_rebalance(entries, {A, B}, batch=10)
    assert plan == {2: B}, "3 is migrating already; one more move balances 2/2"
    assert plan_rebalance(entries, {A}, batch=10) == {}


def test_random_maps_always_end_converged_and_balanced() -> None:
    rng = random.Random(7)
    nodes = [A, B, C, D]
    for _ in range(200):
        live = set(rng.sample(nodes, rng.randint(1, 4)))
        entries = {s: ShardEntry(rng.choice(nodes + [""]), rng.choice(nodes + [""])) for s in range(32)}
        for _step in range(200):
            plan = plan_targets(entries, 32, live, stable=True, rebalance_batch=3)
            for s, t in plan.items():
                entries[s] = ShardEntry(t, entries[s].current)
            for n in live:  # every live node releases and claims like the real ones
                for s in shards_to_release(entries, n):
                    entries[s] = entries[s].with_current("")
                for s in shards_to_claim(entries, n, live, owned=[s for s, e in entries.items() if e.current == n]):
                    entries[s] = entries[s].with_current(n)
            if not plan and is_converged(entries, 32, live):
                break
        assert is_converged(entries, 32, live), entries
        counts = Counter(e.current for e in entries.values())
        assert max(counts.values()) - min(counts.get(n, 0) for n in live) <= 1


# --------------------------------------------------------------------------------------- node rules
def test_claim_when_targeted_and_current_is_empty_dead_or_us_without_epoch() -> None:
    entries = {0: ShardEntry(A, ""), 1: ShardEntry(A, C), 2: ShardEntry(A, B), 3: ShardEntry(A, A),
               4: ShardEntry(A, A), 5: ShardEntry(B, "")}
    assert shards_to_claim(entries, A, {A, B}, owned={4}) == [0, 1, 3]


def test_release_when_the_target_moved_away() -> None:
    entries = {0: ShardEntry(B, A), 1: ShardEntry(A, A), 2: ShardEntry("", A), 3: ShardEntry(A, B)}
    assert shards_to_release(entries, A) == [0]


def test_convergence_oracle() -> None:
    settled = {s: ShardEntry(A, A) for s in range(4)}
    assert is_converged(settled, 4, {A})
    assert not is_converged(settled, 5, {A}), "a missing shard key is not converged"
    assert not is_converged(settled, 4, {B}), "the owner must be alive"
    assert not is_converged({**settled, 2: ShardEntry(B, A)}, 4, {A, B}), "migrating is not converged"
    assert full_map({1: ShardEntry(A, A)}, 3)[0] == ShardEntry()
