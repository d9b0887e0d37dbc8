"""Pure helpers of the Kubernetes operator actions (harness/platforms/kubernetes/opshelpers.py), on
container specs and pod objects shaped as the API returns them, and on the rendered manifests."""

from __future__ import annotations

import shutil

import pytest

from harness.cluster_state import ClusterState
from harness.platforms.kubernetes import render
from harness.platforms.kubernetes.opshelpers import (
    EnvSource,
    container_start_delay,
    containers_started,
    converged_and_balanced,
    env_source,
    is_balanced,
    roll_stamp,
    session_node,
    with_env,
)


def test_env_source_reads_value_from_and_env_from_with_kubernetes_precedence() -> None:
    c = {"name": "node", "env": [
        {"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "goverse-env-abc", "key": "LOG_LEVEL"}}},
        {"name": "LOG_FORMAT", "value": "json"}],
        "envFrom": [{"configMapRef": {"name": "extra"}}, {"configMapRef": {"name": "pfx"}, "prefix": "GV_"}]}
    assert env_source(c, "LOG_LEVEL") == EnvSource("configmap", "goverse-env-abc", "LOG_LEVEL")
    assert env_source(c, "LOG_FORMAT") == EnvSource("literal")  # an explicit env entry shadows envFrom
    assert env_source(c, "OTHER") == EnvSource("configmap", "extra", "OTHER")
    assert env_source(c, "GV_X") == EnvSource("configmap", "pfx", "X")
    assert env_source({"name": "gate"}, "LOG_LEVEL") == EnvSource("absent")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not on PATH")
def test_reference_manifests_deliver_log_level_through_a_configmap() -> None:
    docs = render.kustomize_build(render.overlay_dir("kind", "reference"))
    maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    for d in docs:
        if d["kind"] in ("StatefulSet", "Deployment") and d["metadata"]["name"] in (
                "goverse-node", "goverse-gate", "goverse-inspector"):
            c = d["spec"]["template"]["spec"]["containers"][0]
            src = env_source(c, "LOG_LEVEL")
            assert src.kind == "configmap", d["metadata"]["name"]
            assert maps[src.name]["data"][src.key] == "info"


def test_with_env_sets_or_replaces_only_in_the_named_containers_and_copies() -> None:
    containers = [{"name": "node", "env": [{"name": "A", "value": "1"}, {"name": "V", "value": "old"}]},
                  {"name": "sidecar", "env": [{"name": "V", "value": "keep"}]}]
    out = with_env(containers, ["node"], "V", "B")
    assert out[0]["env"] == [{"name": "A", "value": "1"}, {"name": "V", "value": "B"}]
    assert out[1]["env"] == [{"name": "V", "value": "keep"}]
    assert containers[0]["env"][1] == {"name": "V", "value": "old"}  # input untouched
    assert with_env([{"name": "gate"}], ["gate"], "V", "B")[0]["env"] == [{"name": "V", "value": "B"}]


def test_roll_stamp_is_new_per_roll_and_hides_parameter_values() -> None:
    a = roll_stamp("config-update", {"key": "LOG_LEVEL", "value": "warn"}, 1)
    assert a != roll_stamp("config-update", {"key": "LOG_LEVEL", "value": "warn"}, 2)
    assert a != roll_stamp("config-update", {"key": "LOG_LEVEL", "value": "info"}, 1)
    assert "warn" not in a and a.startswith("config-update-1-")


def test_session_node_maps_application_names_of_both_stacks() -> None:
    pods = {"goverse-node-0": "node-0", "goverse-node-2": "node-2"}
    assert session_node("refstack-goverse-node-2", pods) == "node-2"
    assert session_node("goverse-goverse-node-0", pods) == "node-0"
    assert session_node("refstack-goverse-node-7", pods) is None  # not a ready node now
    assert session_node("goverse-harness", pods) is None
    assert session_node("", pods) is None


def test_is_balanced_uses_the_rebalance_tolerance() -> None:
    assert is_balanced({"a": 22, "b": 21, "c": 21}, {"a", "b", "c"}, 64)
    assert not is_balanced({"a": 40, "b": 12, "c": 12}, {"a", "b", "c"}, 64)
    assert not is_balanced({"a": 32, "b": 32}, {"a", "b", "c"}, 64)  # a ready node with no shard
    assert not is_balanced({}, set(), 64)


NAMES = {"10.244.0.57:7001": "node-0", "10.244.0.58:7001": "node-1", "10.244.0.59:7001": "node-2"}
A0, A1, A2 = NAMES


def shard_state(owners: list[str], nodes: set[str], targets: dict[int, str] | None = None) -> ClusterState:
    """64 shards, shard i owned by ``owners[i]`` (target the same unless ``targets`` moves it)."""
    shards = {i: ((targets or {}).get(i, o), o) for i, o in enumerate(owners)}
    return ClusterState(shards=shards, nodes=nodes, gates=set(), leader=A1, num_shards=len(owners))


def test_converged_and_balanced_waits_for_the_rejoined_nodes_share() -> None:
    # the load sigkill run in CI: node-0 back (Ready, registered), the shard map still converged on two
    # nodes — its rebalance, with migration errors, came during the phase measured as healthy
    two = shard_state([A1, A2] * 32, {A0, A1, A2})
    assert two.converged
    assert not converged_and_balanced(two, NAMES, {"node-0", "node-1", "node-2"}, 64)
    three = shard_state(([A0, A1, A2] * 22)[:64], {A0, A1, A2})
    assert converged_and_balanced(three, NAMES, {"node-0", "node-1", "node-2"}, 64)


def test_converged_and_balanced_is_over_ready_nodes_live_in_etcd() -> None:
    two = shard_state([A1, A2] * 32, {A0, A1, A2})
    # node-0 held down (its pod not Ready) or its lease gone from etcd: balanced over the other two
    assert converged_and_balanced(two, NAMES, {"node-1", "node-2"}, 64)
    assert converged_and_balanced(shard_state([A1, A2] * 32, {A1, A2}), NAMES, {"node-0", "node-1", "node-2"}, 64)
    # an owner whose pod is not Ready yet (probe lag after a restart): not done
    assert not converged_and_balanced(two, NAMES, {"node-2"}, 64)


def test_converged_and_balanced_needs_convergence_first() -> None:
    moving = shard_state(([A0, A1, A2] * 22)[:64], {A0, A1, A2}, targets={5: A0})
    assert not moving.converged
    assert not converged_and_balanced(moving, NAMES, {"node-0", "node-1", "node-2"}, 64)


def test_container_start_delay_reads_started_at_of_the_named_container() -> None:
    """startedAt has whole seconds (rounded down): 12:00:03Z after a request at 12:00:00.4 is 2.6 s."""
    from datetime import UTC, datetime

    t_req = datetime(2026, 12, 3, 12, 0, 0, 400000, tzinfo=UTC).timestamp()
    pod = {"status": {"containerStatuses": [
        {"name": "sidecar", "state": {"running": {"startedAt": "2026-12-03T12:00:09Z"}}},
        {"name": "node", "state": {"running": {"startedAt": "2026-12-03T12:00:03Z"}}}]}}
    assert container_start_delay(pod, "node", t_req) == 2.6
    waiting = {"status": {"containerStatuses": [{"name": "node", "state": {"waiting": {"reason": "x"}}}]}}
    assert container_start_delay(waiting, "node", t_req) is None
    assert container_start_delay({"status": {}}, "node", t_req) is None
    early = {"status": {"containerStatuses": [{"name": "node", "state": {"running": {
        "startedAt": "2026-12-03T11:59:59Z"}}}]}}
    assert container_start_delay(early, "node", t_req) == 0.0


def _pod(name: str, container: str, state: dict, deleting: bool = False) -> dict:
    meta: dict = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-03T22:10:00Z"
    return {"metadata": meta, "status": {"containerStatuses": [{"name": container, "state": state}]}}


def test_containers_started_counts_running_containers_of_live_pods() -> None:
    running = {"running": {"startedAt": "2026-12-03T22:10:01Z"}}
    waiting = {"waiting": {"reason": "ContainerCreating"}}
    pods = {"goverse-node-0": _pod("goverse-node-0", "node", running),
            "goverse-node-1": _pod("goverse-node-1", "node", waiting),
            "goverse-node-2": _pod("goverse-node-2", "node", running, deleting=True)}
    done, seen = containers_started(pods, "node", 2)
    assert not done and "1/2" in seen and "goverse-node-0" in seen
    pods["goverse-node-1"] = _pod("goverse-node-1", "node", running)
    assert containers_started(pods, "node", 2)[0]
    assert not containers_started(pods, "gate", 1)[0]  # another container's name
