"""The pure planning step both interpreters run (harness/faults/plan.py), over the topologies the
platforms really pass: the local one (running instances of a 3-node, 2-gate, 3-member etcd stack) and a
Kubernetes one (one etcd, the pods' instance names)."""

from __future__ import annotations

import random

import pytest

from harness.faults import shapes
from harness.faults.plan import PartitionPlan, plan_link, plan_partition, plan_targets
from harness.faults.spec import Partition, TargetError
from harness.platforms.base import Unsupported

LOCAL = {"node-0": "node", "node-1": "node", "node-2": "node", "gate-0": "gate", "gate-1": "gate",
         "etcd-0": "etcd", "etcd-1": "etcd", "etcd-2": "etcd", "postgres": "postgres", "inspector": "inspector"}
KUBE = {"node-0": "node", "node-1": "node", "node-2": "node", "gate-0": "gate", "gate-1": "gate",
        "etcd-0": "etcd", "postgres": "postgres", "inspector": "inspector"}


@pytest.mark.parametrize("topo", [LOCAL, KUBE], ids=["local", "kubernetes"])
def test_a_targeted_shape_names_its_victim_and_cuts_only_it(topo) -> None:
    p = plan_partition(Partition("node-etcd", target="node-1"), topo)
    assert p.victim == "node-1" and p.targets == ["node-1"]
    etcd = sorted(h for h, r in topo.items() if r == "etcd")
    assert p.listed()["node-1"] == etcd
    assert all(d == ["node-1"] for h, d in p.listed().items() if h != "node-1")  # the other side drops back
    assert not shapes.can_reach(p.as_sets(), "node-1", etcd[0])


@pytest.mark.parametrize("target", [None, "random", "one-node"])
def test_an_unnamed_victim_is_drawn_once_with_the_rng_and_the_same_seed_draws_the_same(target) -> None:
    a = plan_partition(Partition("isolate-node", target=target), LOCAL, random.Random(7))
    b = plan_partition(Partition("isolate-node", target=target), LOCAL, random.Random(7))
    assert a == b and a.victim in {"node-0", "node-1", "node-2"}
    assert set(a.listed()[a.victim]) == set(LOCAL) - {a.victim}  # isolated from everything


def test_the_same_fault_plans_the_same_on_both_platforms_where_their_topologies_agree() -> None:
    """The planning is the platforms' common ground: same fault, same RNG, same hosts → same plan."""
    f = Partition("gates-node", target="node-2")
    local = plan_partition(f, {h: r for h, r in LOCAL.items() if r != "etcd" or h == "etcd-0"}, random.Random(1))
    kube = plan_partition(f, KUBE, random.Random(1))
    assert local == kube
    assert set(local.detail()) == {"shape", "one_way", "victim", "grudge"}


def test_one_way_keeps_only_the_victims_drops() -> None:
    p = plan_partition(Partition("node-postgres", target="node-0", one_way=True), LOCAL)
    assert p.listed() == {"node-0": ["postgres"]} and p.one_way


def test_a_shape_that_cannot_be_formed_is_unsupported_on_every_platform() -> None:
    """A topology with no PostgreSQL cannot be cut from it; one host cannot be split in halves. Both
    are explained skips (Unsupported), not crashes."""
    with pytest.raises(Unsupported, match="cannot be formed"):
        plan_partition(Partition("node-postgres", target="node-0"), {h: r for h, r in KUBE.items() if r != "postgres"})
    with pytest.raises(Unsupported, match="cannot be formed"):
        plan_partition(Partition("halves"), {"node-0": "node"})


def test_a_victim_that_is_not_a_node_is_the_scenarios_error() -> None:
    with pytest.raises(TargetError, match="cuts one node"):
        plan_partition(Partition("isolate-node", target="gate-0"), LOCAL)
    with pytest.raises(TargetError, match="cuts one node"):
        plan_partition(Partition("isolate-node", target="all-nodes"), LOCAL)


def test_untargeted_shapes_name_every_holder() -> None:
    p = plan_partition(Partition("halves"), LOCAL)
    assert p.victim is None and p.targets == sorted(p.grudge)
    assert p.hosts <= set(LOCAL)
    assert isinstance(p, PartitionPlan) and all(isinstance(d, frozenset) for d in p.grudge.values())


def test_targets_and_links_resolve_against_the_topology_given() -> None:
    assert plan_targets("all-gates", KUBE) == ["gate-0", "gate-1"]
    assert plan_targets("one-node", LOCAL, random.Random(3)) == plan_targets("one-node", LOCAL, random.Random(3))
    assert plan_link(("gates", "node-1"), KUBE) == [("gate-0", "node-1"), ("gate-1", "node-1")]
    with pytest.raises(TargetError, match="no etcd"):
        plan_targets("one-etcd", {"node-0": "node"})
