"""Settings for real Goverse (stack=goverse): its timer defaults, pgadmin, the persistence interval."""

import pytest

from harness.settings import SettingsError, load_settings


def _goverse_bins(tmp_path):
    bins = {}
    for name in ("node", "gate", "pgadmin"):
        p = tmp_path / name
        p.write_text("#!/bin/sh\n")
        p.chmod(0o755)  # the settings refuse a binary that is not executable
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
