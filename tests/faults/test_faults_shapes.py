"""Partition shapes as pure functions: who can still talk to whom."""

from __future__ import annotations

import random

import pytest

from harness.faults import shapes as sh

TOPO = {
    "node-0": "node", "node-1": "node", "node-2": "node",
    "etcd-0": "etcd", "etcd-1": "etcd", "etcd-2": "etcd",
    "gate-0": "gate", "gate-1": "gate",
    "postgres": "postgres", "inspector": "inspector",
}


def test_complete_grudge_drops_everyone_outside_the_component() -> None:
    g = sh.complete_grudge([["a", "b"], ["c"]])
    assert g == {"a": {"c"}, "b": {"c"}, "c": {"a", "b"}}


def test_invert_never_drops_self() -> None:
    g = sh.invert({"a": {"a", "b"}, "b": {"b"}}, ["a", "b", "c"])
    assert g == {"a": {"c"}, "b": {"a", "c"}, "c": {"a", "b"}}


def test_bisect_first_half_smaller() -> None:
    assert sh.bisect(["a", "b", "c", "d", "e"]) == (["a", "b"], ["c", "d", "e"])
    assert sh.bisect(["a", "b"]) == (["a"], ["b"])


def test_bridge_node_talks_to_both_sides() -> None:
    hosts = ["a", "b", "c", "d", "e"]
    g = sh.bridge(hosts)
    assert "c" not in g  # the bridge drops nobody
    assert all("c" not in dropped for dropped in g.values())  # nobody drops the bridge
    assert g["a"] == {"d", "e"} and g["d"] == {"a", "b"}
    with pytest.raises(sh.ShapeError):
        sh.bridge(["a", "b"])


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 9])
def test_majorities_ring_every_host_sees_a_distinct_majority(n: int) -> None:
    hosts = [f"h{i}" for i in range(n)]
    g = sh.majorities_ring(hosts)
    views = {h: frozenset(set(hosts) - g[h]) for h in hosts}
    for h, view in views.items():
        assert h in view
        assert len(view) == sh.majority(n), (h, view)
    assert len(set(views.values())) == n  # no two hosts see the same majority
    # and it really is a partition: nobody sees everyone
    assert all(g[h] for h in hosts)


def test_isolate_node_cuts_victim_from_everyone_both_ways() -> None:
    g = sh.grudge_for("isolate-node", TOPO, target="node-1")
    others = set(TOPO) - {"node-1"}
    assert g["node-1"] == others
    assert all(g[h] == {"node-1"} for h in others)
    assert not sh.can_reach(g, "node-1", "postgres") and not sh.can_reach(g, "postgres", "node-1")
    assert sh.can_reach(g, "node-0", "postgres")


def test_node_etcd_only_cuts_etcd() -> None:
    g = sh.grudge_for("node-etcd", TOPO, target="node-0")
    assert g == {"node-0": {"etcd-0", "etcd-1", "etcd-2"}, "etcd-0": {"node-0"},
                 "etcd-1": {"node-0"}, "etcd-2": {"node-0"}}
    assert sh.can_reach(g, "node-0", "postgres")


def test_node_postgres_and_gates_node() -> None:
    assert sh.grudge_for("node-postgres", TOPO, target="node-2") == {
        "node-2": {"postgres"}, "postgres": {"node-2"}}
    g = sh.grudge_for("gates-node", TOPO, target="node-2")
    assert g == {"gate-0": {"node-2"}, "gate-1": {"node-2"}, "node-2": {"gate-0", "gate-1"}}


def test_one_way_keeps_only_the_victim_side() -> None:
    g = sh.grudge_for("isolate-node", TOPO, target="node-1", one_way_=True)
    assert set(g) == {"node-1"}
    assert not sh.can_reach(g, "postgres", "node-1")  # victim hears nothing
    assert sh.can_reach(g, "node-1", "postgres")  # but is still heard
    g = sh.grudge_for("gates-node", TOPO, target="node-0", one_way_=True)
    assert g == {"node-0": {"gate-0", "gate-1"}}


def test_halves_mix_roles_and_leave_clients_alone() -> None:
    g = sh.grudge_for("halves", TOPO)
    first = {"node-0", "etcd-0", "node-1"}
    second = {"etcd-1", "node-2", "etcd-2"}
    assert all(g[h] == second for h in first) and all(g[h] == first for h in second)
    for h in ("gate-0", "postgres", "inspector"):
        assert h not in g and all(h not in d for d in g.values())
    one = sh.grudge_for("halves", TOPO, one_way_=True)
    assert set(one) == first


def test_random_target_is_reproducible_with_a_seeded_rng() -> None:
    a = sh.grudge_for("isolate-node", TOPO, rng=random.Random(7))
    b = sh.grudge_for("isolate-node", TOPO, rng=random.Random(7))
    assert a == b
    victims = {next(h for h, d in sh.grudge_for("isolate-node", TOPO, rng=random.Random(s)).items()
                    if len(d) > 1) for s in range(30)}
    assert victims == {"node-0", "node-1", "node-2"}
    h1 = sh.grudge_for("halves", TOPO, target="random", rng=random.Random(3))
    assert h1 == sh.grudge_for("halves", TOPO, target="random", rng=random.Random(3))


def test_shape_errors_are_explicit() -> None:
    with pytest.raises(sh.ShapeError, match="unknown partition shape"):
        sh.grudge_for("triangle", TOPO)
    with pytest.raises(sh.ShapeError, match="needs a postgres"):
        sh.grudge_for("node-postgres", {"node-0": "node"})
    with pytest.raises(sh.ShapeError, match="not in the topology"):
        sh.grudge_for("isolate-node", TOPO, target="node-9")
    with pytest.raises(sh.ShapeError):
        sh.grudge_for("halves", TOPO, target="node-0")


def test_links_cut_and_normalise() -> None:
    g = sh.normalise({"a": {"a", "b"}, "b": set()})
    assert g == {"a": {"b"}}
    assert sh.links_cut(sh.cut(["a"], ["b", "c"])) == {("a", "b"), ("a", "c"), ("b", "a"), ("c", "a")}


def test_natural_order() -> None:
    topo = {f"node-{i}": "node" for i in (10, 2, 1)}
    assert sh.hosts_with_role(topo, "node") == ["node-1", "node-2", "node-10"]


# ---- stale-view shapes: gates and nodes cut from etcd ------------------------------------------------
ETCD = {"etcd-0", "etcd-1", "etcd-2"}


def test_gate_etcd_cuts_one_gate_from_etcd_only() -> None:
    g = sh.grudge_for("gate-etcd", TOPO, target="gate-1")
    assert g == {"gate-1": ETCD, **{e: {"gate-1"} for e in ETCD}}
    assert sh.can_reach(g, "gate-1", "node-0") and sh.can_reach(g, "node-0", "gate-1")
    one = sh.grudge_for("gate-etcd", TOPO, target="gate-0", one_way_=True)
    assert one == {"gate-0": ETCD}  # the gate hears nothing from etcd; etcd still hears the gate
    picked = sh.grudge_for("gate-etcd", TOPO, rng=random.Random(3))
    assert [h for h in picked if h.startswith("gate")][0] in ("gate-0", "gate-1")


def test_gate_etcd_refuses_a_node_victim() -> None:
    with pytest.raises(sh.ShapeError, match="cuts a gate"):
        sh.grudge_for("gate-etcd", TOPO, target="node-0")
    with pytest.raises(sh.ShapeError, match="cuts a node"):
        sh.grudge_for("node-etcd", TOPO, target="gate-0")


def test_node_gate_etcd_keeps_the_stale_pair_talking() -> None:
    g = sh.grudge_for("node-gate-etcd", TOPO, target="node-2")
    assert g == {"node-2": ETCD, "gate-0": ETCD, **{e: {"node-2", "gate-0"} for e in ETCD}}
    assert sh.can_reach(g, "gate-0", "node-2") and sh.can_reach(g, "node-2", "postgres")
    assert sh.can_reach(g, "gate-1", "etcd-0")  # the other gate sees the moves
    one = sh.grudge_for("node-gate-etcd", TOPO, target="node-2", one_way_=True)
    assert one == {"node-2": ETCD, "gate-0": ETCD}
