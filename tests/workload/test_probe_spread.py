"""The probe cycle spaces each node's keys evenly (``runner.interleave``), so a cut of one node is probed
at a steady rate: in hash order one node's keys come in runs and gaps of several probe periods, which
bracketed the end of a one-node outage that coarsely (benchmarks/bench_partition_rto.py)."""

from __future__ import annotations

from harness.sharding import keys_covering_shards, shard_of
from harness.workload.runner import interleave


def gaps(order: list[str], owner: dict[str, str], node: str) -> list[int]:
    """Distances, in probes, between consecutive probes of ``node``'s keys around the cycle."""
    pos = [i for i, k in enumerate(order) if owner[k] == node]
    return [(pos[(j + 1) % len(pos)] - pos[j]) % len(order) or len(order) for j in range(len(pos))]


def test_each_owner_is_probed_every_nth_probe_not_in_runs() -> None:
    keys = keys_covering_shards("gvh-x-probe-", 32, 64)
    # a contiguous assignment of 64 shards to 3 nodes, as a balanced shard map may give
    owner = {k: f"node-{min(2, shard_of(k, 64) * 3 // 64)}" for k in keys}
    before = max(max(gaps(keys, owner, n)) for n in ("node-0", "node-1", "node-2"))
    spread = interleave(keys, owner.__getitem__)
    assert sorted(spread) == sorted(keys)
    for n in ("node-0", "node-1", "node-2"):
        share = sum(owner[k] == n for k in keys)
        assert max(gaps(spread, owner, n)) <= -(-len(keys) // share) + 1, (n, gaps(spread, owner, n))
    assert before > 5  # the hash order had long runs: this test would fail without the spreading


def test_one_owner_or_unknown_owners_keep_their_order() -> None:
    keys = [f"k{i}" for i in range(10)]
    assert interleave(keys, lambda _k: None) == keys
    assert interleave(keys, lambda _k: "node-0") == keys
