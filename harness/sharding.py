"""Goverse's object → shard mapping (FNV-1a 32-bit of the id bytes, mod shard count).

Why here and not only in the reference stack: the workload picks keys that cover distinct shards so a
partial outage (one node's shards) shows as partial availability, and it must compute shards exactly as
Goverse does (contract §4.2), including the ``shard#<N>/<x>`` pinned-id form.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

FNV32_OFFSET = 0x811C9DC5
FNV32_PRIME = 0x01000193


def fnv1a32(data: bytes) -> int:
    h = FNV32_OFFSET
    for b in data:
        h ^= b
        h = (h * FNV32_PRIME) & 0xFFFFFFFF
    return h


def shard_of(object_id: str, shards: int) -> int:
    """FNV-1a 32 of the id mod the shard count. ``shard#N/x`` pins to shard N when 0 <= N < shards;
    otherwise (no slash, not a number, out of range) the whole id is hashed, as Goverse's
    ``sharding.GetShardID`` does."""
    if shards <= 0:
        raise ValueError(f"shards must be > 0, got {shards}")
    if object_id.startswith("shard#"):
        head, slash, _ = object_id[len("shard#"):].partition("/")
        if slash and head.isdigit() and int(head) < shards:
            return int(head)
    return fnv1a32(object_id.encode("utf-8")) % shards


def keys_covering_shards(prefix: str, count: int, shards: int) -> list[str]:
    """``count`` ids ``<prefix><i>`` chosen so they fall on distinct shards (as many as possible)."""
    chosen: list[str] = []
    seen: set[int] = set()
    i = 0
    while len(chosen) < count and i < count * 1000:
        key = f"{prefix}{i}"
        s = shard_of(key, shards)
        if s not in seen or len(seen) >= shards:
            seen.add(s)
            chosen.append(key)
        i += 1
    return chosen


def migrating_keys(keys: Iterable[str], shards: int, before: Mapping[int, tuple[str, str]],
                   after: Mapping[int, tuple[str, str]]) -> list[str]:
    """Keys whose shard's current owner differs between two shard maps (``shard -> (target, current)``)."""
    out = []
    for k in keys:
        s = shard_of(k, shards)
        if before.get(s, ("", ""))[1] != after.get(s, ("", ""))[1]:
            out.append(k)
    return sorted(out)
