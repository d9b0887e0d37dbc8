"""Shard arithmetic and the decisions made from a shard map — pure functions, no I/O.

Why pure: shard mapping, routing, leader assignment, claims and releases are where distributed bugs
hide; as functions of (map, live nodes) they are tested exhaustively without etcd. The etcd layout and
error strings follow Goverse v0.1.1 (contract §2.6, §4.1–§4.4): ``<prefix>/shard/<i>`` holds
``"<target>,<current>[,f=<flag>...]"`` where both are node advertise addresses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from harness.sharding import fnv1a32, shard_of  # noqa: F401 - re-exported for the stack

# Goverse's object -> shard mapping lives in harness.sharding (the workload needs the same function).
fnv1a_32 = fnv1a32


@dataclass(frozen=True, slots=True)
class ShardEntry:
    """One ``<prefix>/shard/<i>`` value plus the etcd ``mod_revision`` it was read at (0 = absent)."""

    target: str = ""
    current: str = ""
    flags: tuple[str, ...] = ()
    mod_revision: int = 0

    @staticmethod
    def parse(value: str, mod_revision: int = 0) -> ShardEntry:
        parts = value.split(",")
        target = parts[0] if parts else ""
        current = parts[1] if len(parts) > 1 else ""
        flags = tuple(p for p in parts[2:] if p)
        return ShardEntry(target, current, flags, mod_revision)

    def format(self) -> str:
        return ",".join([self.target, self.current, *self.flags])

    def with_target(self, target: str) -> ShardEntry:
        return ShardEntry(target, self.current, self.flags, self.mod_revision)

    def with_current(self, current: str) -> ShardEntry:
        return ShardEntry(self.target, current, self.flags, self.mod_revision)

    @property
    def migrating(self) -> bool:
        return bool(self.target) and bool(self.current) and self.target != self.current


EMPTY = ShardEntry()


class RouteError(Exception):
    """The call cannot be routed; the message is Goverse's (contract §2.6)."""


def route(entries: Mapping[int, ShardEntry] | None, live: Collection[str], object_id: str,
          shards: int) -> tuple[int, str]:
    """(shard, owner advertise address) for a call, or ``RouteError`` with Goverse's message."""
    prefix = f"cannot determine node for object {object_id}: "
    if entries is None:
        raise RouteError(prefix + "shard mapping not available")
    shard = shard_of(object_id, shards)
    entry = entries.get(shard, EMPTY)
    if not entry.target and not entry.current:
        raise RouteError(prefix + f"no node assigned to shard {shard}")
    if not entry.current:
        raise RouteError(prefix + f"shard {shard} has no current node (not yet claimed)")
    if entry.current not in live:
        raise RouteError(prefix + f"current node {entry.current} for shard {shard} is not in active node list")
    if entry.target and entry.target != entry.current:
        raise RouteError(prefix + f"shard {shard} is in migration from {entry.current} to {entry.target}")
    return shard, entry.current


def full_map(entries: Mapping[int, ShardEntry], shards: int) -> dict[int, ShardEntry]:
    """Every shard 0..shards-1, absent ones as the empty entry."""
    return {s: entries.get(s, EMPTY) for s in range(shards)}


def plan_targets(
    entries: Mapping[int, ShardEntry],
    shards: int,
    live: Collection[str],
    *,
    stable: bool,
    hold: Callable[[str], bool] = lambda node: False,
    rebalance_batch: int = 1,
) -> dict[int, str]:
    """The leader's decision for one tick: shard -> new target.

    - A shard whose target is empty or not alive goes to its current owner if that one is alive,
      otherwise to the least-loaded live node (ties by name, so the result is deterministic).
    - Shards that were never assigned, or whose dead current owner has not handed them over, wait
      until membership is ``stable`` (Goverse's stability window: don't act on a flapping view).
      Shards handed over gracefully (current cleared) are reassigned at once.
    - ``hold(dead_node)`` keeps a dead owner's shards where they are (the ``slow-failover`` bug).
    - If nothing needs assigning and membership is stable, move up to ``rebalance_batch`` shards from
      the most to the least loaded node while they differ by 2 or more.
    """
    alive = sorted(set(live))
    if not alive:
        return {}
    load: Counter[str] = Counter({n: 0 for n in alive})
    table = full_map(entries, shards)
    for e in table.values():
        if e.target in load:
            load[e.target] += 1
    changes: dict[int, str] = {}
    for s, e in table.items():
        if e.target and e.target in load:
            continue
        if e.current and e.current in load:
            new = e.current
        else:
            never_assigned = not e.target and not e.current
            dead_owner = bool(e.current)
            if (never_assigned or dead_owner) and not stable:
                continue
            if dead_owner and hold(e.current):
                continue
            new = min(alive, key=lambda n: (load[n], n))
        changes[s] = new
        load[new] += 1
    if changes or not stable:
        return changes
    return plan_rebalance(table, alive, rebalance_batch)


def plan_rebalance(entries: Mapping[int, ShardEntry], live: Collection[str], batch: int) -> dict[int, str]:
    """Up to ``batch`` moves from the most to the least loaded live node while loads differ by >= 2.
    Only settled shards (target == current) move, so a shard is never moved twice at once."""
    alive = sorted(set(live))
    if len(alive) < 2 or batch < 1:
        return {}
    load: Counter[str] = Counter({n: 0 for n in alive})
    movable: dict[str, list[int]] = {n: [] for n in alive}
    for s, e in sorted(entries.items()):
        if e.target in load:
            load[e.target] += 1
            if e.current == e.target:
                movable[e.target].append(s)
    changes: dict[int, str] = {}
    while len(changes) < batch:
        most = max(alive, key=lambda n: (load[n], n))
        least = min(alive, key=lambda n: (load[n], n))
        if load[most] - load[least] < 2 or not movable[most]:
            break
        s = movable[most].pop()
        changes[s] = least
        load[most] -= 1
        load[least] += 1
    return changes


def shards_to_claim(entries: Mapping[int, ShardEntry], me: str, live: Collection[str],
                    owned: Collection[int]) -> list[int]:
    """Shards targeted to ``me`` whose current owner is empty or dead — or is ``me`` without our
    holding it (after a lease loss we must claim again to get a new epoch before serving)."""
    out = []
    for s, e in sorted(entries.items()):
        if e.target != me:
            continue
        if not e.current or e.current not in live or (e.current == me and s not in owned):
            out.append(s)
    return out


def shards_to_release(entries: Mapping[int, ShardEntry], me: str) -> list[int]:
    """Shards currently held by ``me`` whose target moved to another node: hand them over."""
    return [s for s, e in sorted(entries.items()) if e.current == me and e.target and e.target != me]


def balance_counts(entries: Mapping[int, ShardEntry], field: str = "target") -> dict[str, int]:
    """Shards per node by ``target`` or ``current`` (empty owner not counted)."""
    counts: Counter[str] = Counter()
    for e in entries.values():
        owner = getattr(e, field)
        if owner:
            counts[owner] += 1
    return dict(counts)


def is_converged(entries: Mapping[int, ShardEntry], shards: int, live: Collection[str]) -> bool:
    """Every shard has target == current and that owner is alive (the harness's oracle C)."""
    live_set = set(live)
    table = full_map(entries, shards)
    return all(e.current and e.target == e.current and e.current in live_set for e in table.values())
