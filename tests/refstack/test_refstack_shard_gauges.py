"""The reference stack's shard gauges drop the series of a node that left (a pod back under a new IP)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from harness.refstack import metrics
from harness.refstack.sharding import ShardEntry


def _series() -> dict[str, float]:
    out = {}
    for fam in REGISTRY.collect():
        if fam.name == "goverse_shards_total":
            out.update({s.labels["node"]: s.value for s in fam.samples})
    return out


def test_a_departed_node_series_is_removed_so_the_sum_stays_the_shard_count() -> None:
    a, old_b, new_b = "10.244.0.5:7001", "10.244.0.6:7001", "10.244.0.9:7001"
    metrics.update_shard_gauges({i: ShardEntry(a, a if i < 2 else old_b) for i in range(4)}, {a, old_b})
    assert _series() == {a: 2, old_b: 2}
    # node b restarted as a new pod: new IP, its shards handed to a meanwhile, then half back
    metrics.update_shard_gauges({i: ShardEntry(a, a) for i in range(4)}, {a})
    metrics.update_shard_gauges({i: ShardEntry(a, a if i < 2 else new_b) for i in range(4)}, {a, new_b})
    series = _series()
    assert old_b not in series
    assert series == {a: 2, new_b: 2} and sum(series.values()) == 4
