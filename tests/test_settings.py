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
