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


def _goverse_bins(tmp_path):
    bins = {}
    for name in ("node", "gate", "pgadmin"):
        p = tmp_path / name
        p.write_text("")
        bins[f"goverse_{name}_bin"] = str(p)
    return bins


def test_goverse_timer_defaults_apply_unless_a_source_sets_them(tmp_path):
    f = tmp_path / "gvh.yaml"
    f.write_text("stability: 4\n")
    s = load_settings({"stack": "goverse", **_goverse_bins(tmp_path), "call_timeout": 12}, env={"GVH_TICK": "2"},
                      config_file=f)
    assert (s.lease_ttl, s.stability, s.tick, s.call_timeout, s.shutdown_grace) == (15.0, 4.0, 2.0, 12.0, 30.0)
    ref = load_settings({}, env={})
    assert (ref.lease_ttl, ref.tick, ref.call_timeout) == (3.0, 0.25, 5.0)  # the reference stack keeps its own


def test_goverse_needs_pgadmin_and_a_positive_persistence_interval(tmp_path):
    bins = _goverse_bins(tmp_path)
    del bins["goverse_pgadmin_bin"]
    with pytest.raises(SettingsError, match=r"goverse_pgadmin_bin: required with stack=goverse"):
        load_settings({"stack": "goverse", **bins}, env={})
    with pytest.raises(SettingsError, match=r"^goverse_persistence_interval: .*greater than 0"):
        load_settings({"stack": "goverse", **_goverse_bins(tmp_path), "goverse_persistence_interval": 0}, env={})
    spec = load_settings({"stack": "goverse", **_goverse_bins(tmp_path), "goverse_persistence_interval": 2},
                         env={}).stack_spec()
    assert spec.goverse_persistence_interval == 2.0 and spec.goverse_pgadmin_bin.endswith("pgadmin")
