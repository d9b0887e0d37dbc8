"""Operator actions against a real cluster (marker ``k8s``): KubernetesOperations scales gates through
replicas, rolls a ConfigMap setting out, refuses what a ConfigMap cannot reach, and leaves the
StatefulSet's partition at 0. Skipped with the reason when no cluster answers (see test_k8s_cluster.py
for how to point them at one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.history import Recorder
from harness.operation_kinds import CONFIG_F
from harness.platforms.base import StackSpec, Unsupported
from harness.platforms.kubernetes import apply as k8s
from tests.support.kubecluster import deployed, platform_or_skip

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    platform = platform_or_skip()
    with deployed(platform, StackSpec(nodes=2, gates=2, etcd_members=1, inspector=False),
                  tmp_path_factory.mktemp("k8s-ops")) as dep:
        yield platform, dep


def test_scale_gates_removes_the_highest_slot_and_comes_back(deployment) -> None:
    platform, dep = deployment
    ops = platform.operations(dep)
    pod_of_gate0 = dep.pod_name("gate-0")
    down = ops.scale("gate", 1)
    assert down.changed == ["gate-1"] and ops.running("gate") == ["gate-0"]
    assert dep.pod_name("gate-0") == pod_of_gate0  # the controller removed the pod with the lower deletion cost
    up = ops.scale("gate", 2)
    assert up.changed == ["gate-1"] and up.converged_s is not None
    with pytest.raises(Unsupported, match="only node and gate"):
        ops.scale("inspector", 2)


def test_update_config_rolls_log_level_from_the_configmap_and_verifies_it(deployment, tmp_path: Path) -> None:
    platform, dep = deployment
    rec = Recorder(tmp_path / "history.jsonl")
    ops = platform.operations(dep, rec)
    before = {n: dep.pod_name(n) for n in ("gate-0", "gate-1")}
    roll = ops.update_config("LOG_LEVEL", "warn", components=("gate",))
    assert [s.exit_code for s in roll.steps] == [0, 0]
    assert {s.name for s in roll.steps} == {"gate-0", "gate-1"}
    assert all(dep.pod_name(n) != p for n, p in before.items()), "every gate pod was replaced"
    assert roll.verified and all(v["ok"] for v in roll.verified.values()), roll.verified
    samples = rec.history().samples(CONFIG_F)
    assert samples and samples[-1].value["value"] == "warn"
    windows = [w for w in rec.history().faults() if w.kind == "config-update"]
    assert len(windows) == 2 and all(w.t_stop is not None for w in windows)


def test_update_config_refuses_a_setting_written_into_the_pod_template(deployment) -> None:
    platform, dep = deployment
    with pytest.raises(Unsupported, match="LOG_FORMAT of node is literal"):
        platform.operations(dep).update_config("LOG_FORMAT", "text")


def test_rolling_restart_of_nodes_steps_the_partition_and_resets_it(deployment) -> None:
    platform, dep = deployment
    ops = platform.operations(dep)
    uids = {n: dep.pod_uid(n) for n in ("node-0", "node-1")}
    roll = ops.rolling_restart(components=("node",))
    assert [s.name for s in roll.steps] == ["node-1", "node-0"]  # highest ordinal first
    assert [s.exit_code for s in roll.steps] == [0, 0]
    assert all(dep.pod_uid(n) != u for n, u in uids.items())
    sts = k8s.resource(dep.dyn, "apps/v1", "StatefulSet").get(name="goverse-node", namespace=dep.namespace)
    assert sts.spec.updateStrategy.rollingUpdate.partition == 0


def test_versions_are_scraped_from_every_instance(deployment) -> None:
    platform, dep = deployment
    ops = platform.operations(dep)
    seen = ops.versions()
    assert set(seen) == set(ops.running()) and len(seen) >= 4
    assert all(len(v) == 1 and not v[0].startswith("<") for v in seen.values()), seen
    assert ops.version_of("gate-1") == seen["gate-1"][0]
