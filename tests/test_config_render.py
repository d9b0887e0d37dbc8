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
