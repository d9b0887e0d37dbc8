"""Which Service ClusterIPs a node-access partition drops besides pod IPs (pure: the real partition
plans over the partition scenarios' topology, no cluster)."""

from __future__ import annotations

from harness.faults.plan import plan_partition
from harness.faults.spec import Partition
from harness.platforms.kubernetes.nodeaccess import service_drops

TOPOLOGY = {"etcd-0": "etcd", "etcd-1": "etcd", "etcd-2": "etcd", "postgres": "postgres",
            "node-0": "node", "node-1": "node", "node-2": "node", "gate-0": "gate", "gate-1": "gate",
            "inspector": "inspector"}
SERVICES = {"goverse-etcd": (["etcd-0", "etcd-1", "etcd-2"], "10.96.0.20"),
            "goverse-postgres": (["postgres"], "10.96.0.30")}


def grudge_of(fault: Partition) -> dict[str, frozenset[str]]:
    return plan_partition(fault, TOPOLOGY).as_sets()


def test_a_one_way_isolated_node_drops_the_etcd_and_postgres_services() -> None:
    # the one-way isolate-node run on the shared cluster: only the victim holds a grudge, and without
    # the etcd ClusterIP its lease stayed alive through the whole 15 s cut (RTO 15.2 s > 10 s)
    grudge = grudge_of(Partition("isolate-node", one_way=True))
    drops = service_drops(grudge, SERVICES)
    (victim,) = grudge
    assert drops == {victim: {"10.96.0.20", "10.96.0.30"}}


def test_a_partial_etcd_grudge_keeps_the_etcd_service() -> None:
    # halves: a node on one side drops some etcd members only; dropping the Service would cut the rest
    grudge = grudge_of(Partition("halves"))
    drops = service_drops(grudge, SERVICES)
    for holder, held in grudge.items():
        etcd_held = {h for h in held if h.startswith("etcd-")}
        if 0 < len(etcd_held) < 3:
            assert "10.96.0.20" not in drops.get(holder, set()), (holder, sorted(held))
    assert any(0 < len({h for h in held if h.startswith("etcd-")}) < 3 for held in grudge.values())


def test_node_postgres_drops_only_the_postgres_service() -> None:
    grudge = grudge_of(Partition("node-postgres"))
    drops = service_drops(grudge, SERVICES)
    assert all(ips == {"10.96.0.30"} for holder, ips in drops.items() if holder.startswith("node-"))
    assert any(holder.startswith("node-") for holder in drops)


def test_no_service_without_members_or_address() -> None:
    grudge = {"node-1": frozenset({"etcd-0"})}
    assert service_drops(grudge, {"goverse-etcd": (["etcd-0"], "")}) == {}
    assert service_drops(grudge, {"empty": ([], "10.96.0.40")}) == {}
