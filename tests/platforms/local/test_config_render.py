"""The rendered Goverse YAML follows the v0.1.1 schema; extension keys only for the reference stack."""

from harness.platforms.base import StackSpec, Timers
from harness.platforms.local.config_render import GateAddr, NodeAddr, Topology, render_config


def _topo():
    return Topology(etcd_endpoints=["http://10.0.0.2:2379", "http://10.0.0.3:2379"], pg_host="10.0.0.9",
                    pg_port=5432, pg_user="goverse", pg_database="goverse", pg_password_file="/run/pw",
                    nodes=[NodeAddr("node-0", "10.0.0.4", 7001, 9101)],
                    gates=[GateAddr("gate-0", "10.0.0.5", 8080, 9102, 49000)])


def test_reference_config_has_timers_and_password_file_but_no_password():
    doc = render_config(StackSpec(timers=Timers(lease_ttl=3, stability=1, tick=0.25)), _topo())
    assert doc["version"] == 1
    assert doc["cluster"]["etcd"]["endpoints"] == ["http://10.0.0.2:2379", "http://10.0.0.3:2379"]
    assert doc["cluster"]["lease_ttl"] == "3000ms" and doc["cluster"]["management_tick"] == "250ms"
    assert doc["postgres"]["password_file"] == "/run/pw" and "password" not in doc["postgres"]
    assert doc["nodes"][0] == {"id": "node-0", "grpc_addr": "10.0.0.4:7001", "advertise_addr": "10.0.0.4:7001",
                               "http_addr": "10.0.0.4:9101"}
    assert doc["gates"][0]["ops_addr"] == "10.0.0.5:9102"


def test_goverse_config_has_no_extension_keys():
    doc = render_config(StackSpec(stack="goverse"), _topo())
    assert not {"lease_ttl", "management_tick", "shutdown_grace"} & set(doc["cluster"])
    assert "password_file" not in doc["postgres"]


def test_goverse_config_carries_the_password_and_the_kept_copy_does_not():
    from harness.platforms.local.config_render import redacted

    topo = _topo()
    topo.pg_password = "s3cret-pw"
    doc = render_config(StackSpec(stack="goverse"), topo)
    assert doc["postgres"]["password"] == "s3cret-pw"  # Goverse reads only postgres.password
    kept = redacted(doc)
    assert "s3cret-pw" not in repr(kept) and kept["postgres"]["password"] == "<redacted>"
    assert doc["postgres"]["password"] == "s3cret-pw"  # the original is untouched


def test_reference_config_never_carries_a_password_even_if_the_topology_has_one():
    topo = _topo()
    topo.pg_password = "s3cret-pw"
    assert "s3cret-pw" not in repr(render_config(StackSpec(), topo))


def test_with_links_reroutes_one_nodes_postgres_and_etcd_only_in_its_copy():
    from harness.platforms.local.config_render import with_links

    doc = render_config(StackSpec(stack="goverse"), _topo())
    mine = with_links(doc, pg=("10.0.0.1", 40001), etcd=["http://10.0.0.1:40002"])
    assert (mine["postgres"]["host"], mine["postgres"]["port"]) == ("10.0.0.1", 40001)
    assert mine["cluster"]["etcd"]["endpoints"] == ["http://10.0.0.1:40002"]
    assert doc["postgres"]["host"] == "10.0.0.9" and doc["cluster"]["etcd"]["endpoints"][0] == "http://10.0.0.2:2379"
    assert with_links(doc) == doc
