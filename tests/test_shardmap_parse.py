"""The convergence oracle over Goverse's etcd layout (contract §4.1)."""

from harness.cluster_state import ClusterState, parse_shard_value


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


def test_balance_tolerance_follows_goverse_rule():
    from harness.platforms.local.deploy import is_balanced

    nodes = {"node-0", "node-1", "node-2"}
    assert is_balanced({"node-0": 22, "node-1": 21, "node-2": 21}, nodes, 64)
    assert not is_balanced({"node-0": 32, "node-1": 32}, nodes, 64)  # node-2 owns nothing yet
    assert is_balanced({"node-0": 2800, "node-1": 2700, "node-2": 2692}, nodes, 8192)  # within 20 %
    assert not is_balanced({}, set(), 64)
