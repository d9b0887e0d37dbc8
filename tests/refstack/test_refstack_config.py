"""Reference-stack configuration: Goverse's YAML schema, GOVERSE_*/POD_* overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.refstack.config import ConfigError, Flags, load_settings, parse_duration, read_password

BASE = {
    "version": 1,
    "cluster": {"shards": 64, "provider": "etcd", "etcd": {"endpoints": ["127.0.0.1:2379", "http://127.0.0.2:2379"],
                                                          "prefix": "/goverse"},
                "cluster_state_stability_duration": "2s", "default_call_timeout": "4s",
                "lease_ttl": "3s", "management_tick": "250ms", "shutdown_grace": "8s"},
    "postgres": {"host": "127.0.0.1", "port": 5433, "user": "goverse", "password": "pw", "database": "goverse"},
    "inspector": {"grpc_addr": "127.0.0.1:8081", "http_addr": "127.0.0.1:8080"},
    "nodes": [{"id": "node-0", "grpc_addr": "0.0.0.0:7001", "advertise_addr": "10.1.1.1:7001",
               "http_addr": ":9001"},
              {"id": "node-1", "grpc_addr": "127.0.0.1:7002", "advertise_addr": "127.0.0.1:7002"}],
    "gates": [{"id": "gate-0", "grpc_addr": "127.0.0.1:8001", "http_addr": "127.0.0.1:8101",
               "ops_addr": "127.0.0.1:8201"}],
}


def load(role: str, doc: object = BASE, env: dict[str, str] | None = None, **flags: str):  # noqa: ANN201
    text = yaml.safe_dump(doc) if doc is not None else None
    return load_settings(role, Flags(config_text=text, **flags), env or {})


def error_of(role: str, doc: object = BASE, env: dict[str, str] | None = None, **flags: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load(role, doc, env, **flags)
    assert "\n" not in str(err.value), "one line"
    return err.value


def with_(path: str, value: object) -> dict:
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    cur = doc
    parts = path.split(".")
    for p in parts[:-1]:
        cur = cur[int(p)] if isinstance(cur, list) else cur[p]
    if value is ...:
        del cur[parts[-1]]
    else:
        cur[parts[-1]] = value
    return doc


# ---------------------------------------------------------------------------------------- happy path
def test_node_settings_from_goverse_yaml() -> None:
    s = load("node", node_id="node-0", bugs="no-dedup,ready-latched", version_tag="B")
    c = s.cluster
    assert c.shards == 64 and c.prefix == "/goverse"
    assert c.etcd_endpoints == ("http://127.0.0.1:2379", "http://127.0.0.2:2379"), "every endpoint kept"
    assert (c.stability, c.call_timeout, c.lease_ttl, c.tick, c.shutdown_grace) == (2.0, 4.0, 3.0, 0.25, 8.0)
    assert c.create_timeout == 4.0, "create/delete timeouts default to the call timeout"
    assert s.instance.id == "node-0" and s.instance.advertise_addr == "10.1.1.1:7001"
    assert s.instance.listen_addr == "0.0.0.0:7001" and s.instance.ops_addr == ":9001"
    assert s.postgres.port == 5433 and s.postgres.password == "pw"
    assert s.bugs == {"no-dedup", "ready-latched"} and s.version_tag == "B"
    assert "pw" not in repr(s.postgres), "the password never shows in a repr/log"
    assert any("inspector.grpc_addr" in w for w in s.warnings)


def test_gate_defaults_advertise_to_grpc_addr_and_inspector_needs_http_addr() -> None:
    g = load("gate", gate_id="gate-0")
    assert g.instance.advertise_addr == "127.0.0.1:8001" and g.instance.http_addr == "127.0.0.1:8101"
    assert g.instance.ops_addr == "127.0.0.1:8201"
    i = load("inspector")
    assert i.instance.http_addr == "127.0.0.1:8080"
    assert load("inspector", with_("postgres", ...)).cluster.shards == 64, "only nodes need PostgreSQL"


def test_defaults_are_the_fast_test_timers() -> None:
    doc = {"version": 1, "cluster": {"shards": 8192, "etcd": {"endpoints": ["127.0.0.1:2379"]}},
           "inspector": {"http_addr": ":8080"}}
    c = load("inspector", doc).cluster
    assert (c.lease_ttl, c.stability, c.tick, c.call_timeout, c.shutdown_grace) == (3.0, 1.0, 0.25, 5.0, 10.0)
    assert c.prefix == "/goverse" and c.shards == 8192


@pytest.mark.parametrize(("text", "seconds"), [
    ("3s", 3.0), ("250ms", 0.25), ("1m30s", 90.0), ("1.5s", 1.5), ("2", 2.0), (4, 4.0), (0.5, 0.5),
    ("1h", 3600.0), ("500us", 0.0005),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, "x") == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "3 s", "-1s", "0s", "abc", "1x", True, [1], "s"])
def test_bad_durations_name_the_setting(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"^cluster\.lease_ttl: expected a positive duration"):
        parse_duration(bad, "cluster.lease_ttl")


# -------------------------------------------------------------------------------------- environment
def test_every_cluster_value_can_come_from_the_environment_alone() -> None:
    env = {"GOVERSE_ETCD_ENDPOINTS": "10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379", "GOVERSE_ETCD_PREFIX": "/g2",
           "GOVERSE_SHARDS": "128", "GOVERSE_STABILITY_DURATION": "500ms", "GOVERSE_LEASE_TTL": "5s",
           "GOVERSE_MANAGEMENT_TICK": "1s", "GOVERSE_CALL_TIMEOUT": "7s", "GOVERSE_SHUTDOWN_GRACE": "20s",
           "GOVERSE_POSTGRES_HOST": "db", "GOVERSE_POSTGRES_PORT": "6543", "GOVERSE_POSTGRES_USER": "u",
           "GOVERSE_POSTGRES_PASSWORD": "secret", "GOVERSE_POSTGRES_DATABASE": "d",
           "POD_NAME": "goverse-node-2", "POD_IP": "10.244.1.7", "GOVERSE_GRPC_ADDR": ":50051",
           "GOVERSE_HTTP_ADDR": ":8080"}
    s = load("node", None, env)
    assert s.cluster.etcd_endpoints == ("http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379")
    assert (s.cluster.prefix, s.cluster.shards, s.cluster.stability, s.cluster.lease_ttl) == ("/g2", 128, 0.5, 5.0)
    assert (s.cluster.tick, s.cluster.call_timeout, s.cluster.shutdown_grace) == (1.0, 7.0, 20.0)
    assert (s.postgres.host, s.postgres.port, s.postgres.user, s.postgres.database) == ("db", 6543, "u", "d")
    assert s.postgres.password == "secret"
    assert s.instance.id == "goverse-node-2", "POD_NAME is the node id when none is given"
    assert s.instance.advertise_addr == "10.244.1.7:50051", "POD_IP + listen port is the advertise address"
    assert s.instance.listen_addr == ":50051" and s.instance.ops_addr == ":8080"


def test_environment_overrides_yaml_and_flags_override_environment() -> None:
    env = {"GOVERSE_SHARDS": "32", "GOVERSE_NODE_ID": "node-1", "GOVERSE_ADVERTISE_ADDR": "node1.svc:7002",
           "REFSTACK_BUGS": "no-dedup"}
    s = load("node", BASE, env)
    assert s.cluster.shards == 32 and s.instance.id == "node-1" and s.instance.advertise_addr == "node1.svc:7002"
    assert s.bugs == {"no-dedup"}
    s = load("node", BASE, env, node_id="node-0", bugs="")
    assert s.instance.id == "node-0" and s.bugs == frozenset(), "--bugs (even empty) wins over REFSTACK_BUGS"


def test_seeded_bug_env_ignored_drops_goverse_and_pod_variables() -> None:
    env = {"GOVERSE_ETCD_ENDPOINTS": "10.9.9.9:2379", "POD_NAME": "node-1"}
    s = load("node", BASE, env, bugs="env-ignored", node_id="node-0")
    assert s.cluster.etcd_endpoints[0] == "http://127.0.0.1:2379"
    err = error_of("node", BASE, {"POD_NAME": "node-1"}, bugs="env-ignored")
    assert err.setting == "--node-id"


def test_unknown_goverse_variables_are_reported_not_fatal() -> None:
    s = load("node", BASE, {"GOVERSE_ETCD_ENDPOINT": "x:1"}, node_id="node-0")
    assert any("GOVERSE_ETCD_ENDPOINT: unknown" in w for w in s.warnings)


def test_password_file_wins_and_is_reread(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("first\n")
    s = load("node", with_("postgres.password_file", str(pw)), node_id="node-0")
    assert read_password(s.postgres) == "first"
    pw.write_text("second")
    assert read_password(s.postgres) == "second"


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("doc", "flags", "env", "setting", "fragment"), [
    (with_("cluster.shardz", 3), {}, {}, "cluster.shardz", "unknown key; allowed here:"),
    (with_("nodes.0.port", 3), {}, {}, "nodes[0].port", "unknown key"),
    (with_("cluster.shards", "many"), {}, {}, "cluster.shards", "expected an integer >= 1, got 'many'"),
    (with_("cluster.shards", 0), {}, {}, "cluster.shards", "expected an integer >= 1"),
    (with_("version", 2), {}, {}, "version", "unsupported config version 2; must be 1"),
    (with_("version", ...), {}, {}, "version", "required; must be 1"),
    (with_("cluster.provider", "consul"), {}, {}, "cluster.provider", 'must be "etcd"'),
    (with_("cluster.etcd.endpoints", []), {}, {}, "cluster.etcd.endpoints", "required"),
    (with_("cluster.etcd.endpoints", ["nohost"]), {}, {}, "cluster.etcd.endpoints[0]", "expected host:port"),
    (with_("cluster.etcd.prefix", "goverse"), {}, {}, "cluster.etcd.prefix", 'must start with "/"'),
    (with_("cluster.lease_ttl", "500ms"), {}, {}, "cluster.lease_ttl", "must be >= 1s"),
    (with_("cluster.management_tick", "2s"), {}, {}, "cluster.management_tick", "half the lease TTL"),
    (with_("postgres.host", ""), {}, {}, "postgres.host", "required for nodes"),
    (with_("postgres.password", ""), {}, {}, "postgres.password", "required"),
    (with_("postgres.sslmode", "maybe"), {}, {}, "postgres.sslmode", "must be one of"),
    (with_("postgres.password_file", "/nonexistent/pw"), {}, {}, "postgres.password_file", "cannot read"),
    (BASE, {"node_id": "node-9"}, {}, "--node-id", "no nodes[] entry with id 'node-9'"),
    (BASE, {}, {}, "--node-id", "required (or GOVERSE_NODE_ID / POD_NAME)"),
    (with_("nodes.1.id", "node-0"), {}, {}, "nodes[1].id", "duplicate node id: node-0"),
    (with_("nodes.0.advertise_addr", "0.0.0.0:7001"), {}, {}, "nodes[0].advertise_addr", "must be an address"),
    (with_("nodes.0.advertise_addr", ...), {}, {}, "nodes[0].advertise_addr", "required"),
    (with_("nodes.0.grpc_addr", "7001"), {}, {}, "nodes[0].grpc_addr", "expected host:port"),
    (BASE, {"bugs": "no-dedup,typo"}, {}, "--bugs", "unknown seeded bug 'typo'; known:"),
    (BASE, {}, {"REFSTACK_BUGS": "nope"}, "REFSTACK_BUGS", "unknown seeded bug 'nope'"),
    (BASE, {}, {"LOG_FORMAT": "xml"}, "LOG_FORMAT", "must be one of text, json"),
    (BASE, {}, {"LOG_LEVEL": "loud"}, "LOG_LEVEL", "must be one of"),
    (BASE, {}, {"GOVERSE_SHARDS": "-4"}, "GOVERSE_SHARDS", "expected an integer >= 1"),
    (BASE, {}, {"GOVERSE_LEASE_TTL": "soon"}, "GOVERSE_LEASE_TTL", "expected a positive duration"),
])
def test_bad_configuration_names_the_setting(doc: object, flags: dict, env: dict, setting: str,
                                             fragment: str) -> None:
    flags = {"node_id": "node-0", **flags} if "node_id" not in flags and setting != "--node-id" else flags
    err = error_of("node", doc, env, **flags)
    assert err.setting == setting, str(err)
    assert fragment in str(err)
    assert str(err).startswith(f"{setting}: ")


def test_invalid_yaml_and_non_mapping_documents() -> None:
    with pytest.raises(ConfigError, match=r"^config: invalid YAML at line 2: "):
        load_settings("node", Flags(config_text="version: 1\ncluster: : x\n"), {})
    with pytest.raises(ConfigError, match=r"^cluster: expected a mapping, got list"):
        load_settings("node", Flags(config_text="version: 1\ncluster: [1]\n"), {})


def test_gate_without_http_addr_is_an_error() -> None:
    err = error_of("gate", with_("gates.0.http_addr", ...), gate_id="gate-0")
    assert err.setting == "gates[0].http_addr"
