"""Bad settings stop the run before anything is deployed, with one message naming the setting."""

import pytest

from harness.settings import SettingsError, load_settings


def test_defaults_are_the_reference_stack_on_local():
    s = load_settings({}, env={})
    assert (s.platform, s.stack, s.nodes, s.gates, s.shards) == ("local", "reference", 3, 2, 64)


def test_priority_cli_over_env_over_file(tmp_path):
    f = tmp_path / "gvh.yaml"
    f.write_text("nodes: 5\ngates: 3\nseed: 1\n")
    s = load_settings({"nodes": 4}, env={"GVH_GATES": "1"}, config_file=f)
    assert (s.nodes, s.gates, s.seed) == (4, 1, 1)


@pytest.mark.parametrize(
    ("cli", "env", "message"),
    [
        ({"nodes": "three"}, {}, r"^nodes: .*valid integer.*command line"),
        ({}, {"GVH_PLATFORM": "docker"}, r"^platform: .*'local', 'kind' or 'kubernetes'.*GVH_PLATFORM"),
        ({"bugs": ["no-such-bug"]}, {}, r"^bugs: unknown seeded bug no-such-bug; allowed: ack-before-persist"),
        ({"frobnicate": 1}, {}, r"^frobnicate: unknown setting"),
        ({"nodes": 0}, {}, r"^nodes: .*greater than or equal to 1"),
        ({"stack": "goverse"}, {}, r"goverse_node_bin: required with stack=goverse"),
        ({"stack": "goverse", "bugs": ["no-dedup"]}, {}, r"seeded bugs exist only in the reference stack"),
    ],
)
def test_bad_values_give_one_clear_error(cli, env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(cli, env=env)


def test_bugs_accept_comma_lists():
    s = load_settings({"bugs": ["no-fencing,slow-failover"]}, env={})
    assert s.bugs == ("no-fencing", "slow-failover")
    assert s.stack_spec().bugs == ("no-fencing", "slow-failover")


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(SettingsError, match="config file: .*does not exist"):
        load_settings({}, env={}, config_file=tmp_path / "nope.yaml")


# ---- what a person types (issue 16, point 12) ----------------------------------------------------
def test_numbers_and_durations_as_typed() -> None:
    from harness.settings import parse_duration

    assert load_settings({}, env={"GVH_ETCD_MEMBERS": "3"}).etcd_members == 3
    s = load_settings({}, env={"GVH_LEASE_TTL": "3s", "GVH_TICK": "250ms", "GVH_SHUTDOWN_GRACE": "1m30s"})
    assert (s.lease_ttl, s.tick, s.shutdown_grace) == (3.0, 0.25, 90.0)
    assert parse_duration("2.5") == 2.5 and parse_duration("3 parsecs") == "3 parsecs"
    with pytest.raises(SettingsError, match=r"lease_ttl: a duration is .*3s, 250ms.*GVH_LEASE_TTL"):
        load_settings({}, env={"GVH_LEASE_TTL": "3 parsecs"})
    with pytest.raises(SettingsError, match=r"etcd_members: .*1 or 3.*got 2"):
        load_settings({}, env={"GVH_ETCD_MEMBERS": "2"})


def test_unusable_binaries_and_artifacts_are_one_clear_error(tmp_path) -> None:
    plain = tmp_path / "goverse-node"
    plain.write_text("not a program")
    with pytest.raises(SettingsError, match=r"goverse_node_bin: .* is not executable"):
        load_settings({"stack": "goverse", "goverse_node_bin": str(plain), "goverse_gate_bin": str(plain)}, env={})
    with pytest.raises(SettingsError, match=r"artifacts: cannot create or write /proc/nope"):
        load_settings({"artifacts": "/proc/nope"}, env={})
    assert load_settings({"artifacts": str(tmp_path / "a" / "b")}, env={}).artifacts == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checking creates nothing


def test_starvation_threshold_default_env_and_one_clear_error() -> None:
    assert load_settings({}, env={}).starved_lag_ms == 250.0
    assert load_settings({}, env={"GVH_STARVED_LAG_MS": "400"}).starved_lag_ms == 400.0
    for bad in ("0", "-5", "5", "999999", "soon"):
        with pytest.raises(SettingsError, match=r"^starved_lag_ms: .*got '" + bad + "' from environment "
                                                r"GVH_STARVED_LAG_MS"):
            load_settings({}, env={"GVH_STARVED_LAG_MS": bad})


def test_observer_priority_is_refused_on_the_local_platform() -> None:
    """On local the stack's processes are the harness's children: they would share its CPU weight."""
    with pytest.raises(SettingsError, match=r"observer_priority: allowed with --platform kubernetes or kind only"):
        load_settings({"observer_priority": True}, env={})
    assert load_settings({"observer_priority": True, "platform": "kubernetes"}, env={}).observer_priority
