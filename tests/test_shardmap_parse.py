"""The convergence oracle over Goverse's etcd layout (contract §4.1)."""

from harness.platforms.local.shardmap import ClusterState, parse_shard_value


def test_parse_shard_values():
    assert parse_shard_value("a:1,a:1") == ("a:1", "a:1")
    assert parse_shard_value("b:1,") == ("b:1", "")
    assert parse_shard_value("a:1,a:1,f=pinned") == ("a:1", "a:1")
    assert parse_shard_value("a:1,f=pinned") == ("a:1", "")


def test_converged_needs_every_shard_owned_by_a_live_target():
    live = {"a", "b"}
    good = ClusterState({0: ("a", "a"), 1: ("b", "b")}, live, set(), "a", 2)
    assert good.converged and good.owners() == {"a": 1, "b": 1}
    migrating = ClusterState({0: ("a", "a"), 1: ("a", "b")}, live, set(), "a", 2)
    assert not migrating.converged and migrating.unconverged() == [1]
    dead_owner = ClusterState({0: ("a", "a"), 1: ("c", "c")}, live, set(), "a", 2)
    assert dead_owner.unconverged() == [1]
    missing = ClusterState({0: ("a", "a")}, live, set(), "a", 2)
    assert not missing.converged
    assert missing.summary({"a": "node-0"})["owners"] == {"node-0": 1}
