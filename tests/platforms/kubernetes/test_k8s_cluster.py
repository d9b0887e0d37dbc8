"""Against a real cluster (marker ``k8s``): deploy, kill, chaos, partition fallback, teardown.

Skipped with the reason when no cluster answers or the context is not a test cluster. CI (and you)
run them on kind after building and loading the reference image::

    docker build -f docker/refstack.Dockerfile -t goverse-harness/refstack:dev .
    kind create cluster --name gvh && kind load docker-image goverse-harness/refstack:dev --name gvh
    pytest -m k8s tests/platforms/kubernetes/test_k8s_cluster.py            # uses the current context (kind-gvh)

``GVH_KUBE_CONTEXT`` picks another context, ``GVH_ALLOW_CONTEXT`` allows a non-kind/k3d one,
``GVH_IMAGE`` names the image.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from harness.platforms.base import StackSpec, Unsupported
from harness.platforms.kubernetes import apply as k8s
from harness.platforms.kubernetes import chaos, naming
from tests.support.kubecluster import deployed, platform_or_skip

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    platform = platform_or_skip()
    platform.opts.deploy_timeout = 600
    with deployed(platform, StackSpec(nodes=3, gates=2, etcd_members=1), tmp_path_factory.mktemp("k8s-run")) as dep:
        yield dep


def test_deploy_converges_with_every_instance_ready(deployment) -> None:
    names = {i.name for i in deployment.instances() if i.running}
    assert {"node-0", "node-1", "node-2", "gate-0", "gate-1", "etcd-0", "postgres", "inspector"} <= names
    assert deployment.live_nodes() == {"node-0", "node-1", "node-2"}
    assert len(deployment.endpoints().gates) == 2


def test_sigkill_node_pod_is_replaced_and_shards_reconverge(deployment) -> None:
    deployment.kill("node-1", signal.SIGKILL)
    deployment.start("node-1")
    deployment.wait_converged(deployment.spec.timers.failover_budget(60))


def test_node_access_partition_cuts_and_heals(deployment) -> None:
    from harness.faults.spec import Partition
    from harness.platforms.kubernetes import nodeaccess
    from harness.platforms.kubernetes.injector import KubernetesInjector

    if deployment.chaos.available() or not deployment.node_access():
        pytest.skip("partitions go through Chaos Mesh, or the harness does not run on the node")
    inj = KubernetesInjector(deployment)
    injected = inj.inject(Partition(shape="node-etcd", target="node-0"))
    assert injected.detail["how"].startswith("nft in pod network namespaces")
    uid = deployment.pod_uid("node-0")
    pid = nodeaccess.netns_pid(uid)
    import subprocess

    def rules() -> str:
        return subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "nft", "list", "ruleset"],
                              capture_output=True, text=True, check=True).stdout

    assert nodeaccess.TABLE in rules()
    injected.heal()
    assert nodeaccess.TABLE not in rules()
    deployment.wait_converged(deployment.spec.timers.failover_budget(60))


def test_restart_gate_keeps_its_slot(deployment) -> None:
    before = deployment.pod_name("gate-0")
    deployment.restart("gate-0", graceful=True)
    assert deployment.pod_name("gate-0") != before
    assert len(deployment.endpoints().gates) == 2


def test_pause_freezes_with_node_access_else_is_unsupported_with_a_reason(deployment) -> None:
    if not deployment.node_access():
        with pytest.raises(Unsupported, match="SIGSTOP"):
            deployment.pause("node-0")
        return
    from harness.platforms.kubernetes import nodeaccess

    uid, container = deployment.pod_uid("node-0"), deployment.container_id("node-0")
    deployment.pause("node-0")
    try:  # the node's container, not its pod: the pg-proxy sidecar keeps running (a stopped process)
        assert nodeaccess.is_frozen(nodeaccess.freezer_files(uid, container)[0])
        if deployment.pg_proxied():
            assert deployment.pg_proxy("node-0").state()["toxics"] == []
    finally:
        deployment.resume("node-0")
    assert not nodeaccess.is_frozen(nodeaccess.freezer_files(uid, container)[0])
    deployment.wait_converged(deployment.spec.timers.failover_budget(60))


def test_chaos_mesh_experiment_injects_and_recovers(deployment) -> None:
    if not deployment.chaos.available():
        pytest.skip("Chaos Mesh is not installed in this cluster")
    sel = chaos.PodSelector(deployment.namespace, pods=("goverse-node-2",))
    cr = chaos.scope(chaos.stress_cpu(f"gvh-{deployment.run_id}-cpu-t", sel, workers=1), deployment.namespace,
                     deployment.run_id)
    deployment.chaos.inject(cr, timeout=120)
    assert deployment.chaos.recover(cr, timeout=120), f"finalizer had to be forced: {deployment.chaos.forced}"


def test_networkpolicy_partition_fallback_heals(deployment) -> None:
    from harness.faults.spec import Partition
    from harness.platforms.kubernetes.injector import KubernetesInjector

    inj = KubernetesInjector(deployment)
    if deployment.chaos.available():
        pytest.skip("Chaos Mesh present: partitions go through NetworkChaos")
    # called directly: on a cluster whose node the harness runs on, inject() prefers nft in the pods
    injected = inj._netpol_partition(Partition(shape="node-etcd", target="node-0"), inj.topology())
    pol = k8s.resource(deployment.dyn, "networking.k8s.io/v1", "NetworkPolicy")
    mine = pol.get(namespace=deployment.namespace, label_selector=naming.run_selector(deployment.run_id))
    assert any(p["metadata"]["name"].startswith("gvh-partition-") for p in mine.to_dict()["items"])
    injected.heal()
    left = pol.get(namespace=deployment.namespace, label_selector="goverse-harness/partition").to_dict()["items"]
    assert left == []
    deployment.wait_converged(deployment.spec.timers.failover_budget(60))
