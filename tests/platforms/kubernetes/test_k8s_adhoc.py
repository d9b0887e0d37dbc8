"""Ad-hoc pods against a real cluster (marker ``k8s``): an extra node pod in its own etcd prefix and
database starts, serves, takes a real SIGTERM, drains and exits 0 with its exit code and log kept; an
environment override reaches it (and a seeded bug that ignores the environment shows); nothing of
it is left afterwards.

Needs a cluster whose pods this machine routes to (the binaries provider, ``goverse-harness cluster
up``); skipped with the reason otherwise. ``GVH_KUBE_CONTEXT``/``GVH_ALLOW_CONTEXT``/``GVH_IMAGE`` as
in tests/platforms/kubernetes/test_k8s_cluster.py.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.conformance.adhoc import AdhocCluster
from harness.conformance.judges_config import judge_identity
from harness.conformance.live import http_status
from harness.platforms.base import AdhocInstances, StackSpec
from harness.platforms.kubernetes import adhocspec
from harness.platforms.kubernetes import apply as k8s
from harness.waiting import wait_until
from tests.support.kubecluster import cluster_or_skip

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from harness.platforms.kubernetes.platform import KubernetesPlatform, options_from

    ctx = cluster_or_skip()
    opts = options_from("kubernetes", ctx, os.environ.get("GVH_ALLOW_CONTEXT"), "unused", False, False,
                        os.environ.get("GVH_IMAGE", "goverse-harness/refstack:dev"))
    opts.deploy_timeout = 600
    run_dir: Path = tmp_path_factory.mktemp("k8s-adhoc")
    d = KubernetesPlatform(opts).deploy(StackSpec(nodes=1, gates=1, inspector=False, etcd_members=1), str(run_dir))
    try:
        if not d._direct():
            pytest.skip("this machine does not route to pod IPs (ad-hoc pods are probed there)")
        yield d
    finally:
        d.teardown()
        ns = k8s.resource(d.dyn, "v1", "Namespace").get().to_dict()["items"]
        assert d.namespace not in {n["metadata"]["name"] for n in ns}, "teardown left the run namespace"


def test_adhoc_node_pod_lives_drains_and_leaves_nothing(dep) -> None:
    assert isinstance(dep, AdhocInstances)
    cluster = AdhocCluster.create(dep, "t")
    node = cluster.node_addr("t-node")
    try:
        proc = cluster.spawn("node", "node", cluster.write("node", cluster.config([node])),
                             env={"GOVERSE_POSTGRES_PASSWORD": dep.postgres_password()},
                             args=["--node-id", node.id])
        host = cluster.host_of(proc, node.host)
        assert host.startswith("10.") and host != node.host  # the pod's IP, not the configured loopback
        obs = cluster.observe("node", proc, 90.0, [dep.postgres_password()], f"{host}:{node.api_port}")
        assert obs.registered and obs.node_id == "t-node" and obs.advertise == f"{host}:{node.api_port}"
        wait_until(lambda: http_status(f"http://{host}:{node.ops_port}/ready") == 200, 60, "ad-hoc node ready")
        # the password went in through the Secret: the pod object never holds it
        pod = dep.core.read_namespaced_pod(proc.pod, dep.namespace)
        env = {e.name: e for e in pod.spec.containers[0].env}
        assert env["GOVERSE_POSTGRES_PASSWORD"].value is None
        assert env["GOVERSE_POSTGRES_PASSWORD"].value_from.secret_key_ref.name == "goverse-postgres"

        proc.signal(signal.SIGTERM)  # a real signal, the pod stays: its status keeps the exit code
        assert proc.wait(30.0) == 0
        assert f"{host}:{node.api_port}" not in cluster.registered_nodes()  # it revoked its lease itself
        assert "SIGTERM" in cluster.log("node")  # read from the pod logs API while the pod exists
        assert cluster.stop("node") == 0
        saved = Path(dep.run_dir, "logs", "cf-t-node.log").read_text()
        assert "registered" in saved and "SIGTERM" in saved and dep.postgres_password() not in saved
    finally:
        dep.stop_all_adhoc()
    assert dep.adhoc_leftovers() == {}


def test_environment_reaches_the_pod_and_a_bug_ignoring_it_fails_the_check(dep) -> None:
    cluster = AdhocCluster.create(dep, "e")
    try:
        procs = {}
        for name, bugs in (("good", None), ("bugged", "env-ignored")):
            addr = cluster.node_addr(f"id-{name}")  # the config has its entry; only the env names it
            env = {"GOVERSE_NODE_ID": f"id-{name}"}
            if bugs:
                env["REFSTACK_BUGS"] = bugs
            procs[name] = (cluster.spawn("node", name, cluster.write(name, cluster.config([addr])), env=env), addr)
        judged = {}
        for name, (proc, addr) in procs.items():
            obs = cluster.observe(name, proc, 90.0, [], f"{cluster.host_of(proc, addr.host)}:{addr.api_port}")
            judged[name] = judge_identity(obs, f"id-{name}", "GOVERSE_NODE_ID (no --node-id)")
        assert judged["good"].verdict == "pass", judged["good"].evidence
        # env-ignored drops GOVERSE_* and POD_*: no id at all, the node exits at start-up
        assert judged["bugged"].verdict == "fail", judged["bugged"].evidence
        assert procs["bugged"][0].returncode not in (None, 0)
    finally:
        dep.stop_all_adhoc()
    assert dep.adhoc_leftovers() == {}
    sel = f"app.kubernetes.io/name={adhocspec.ADHOC_NAME}"
    assert dep.core.list_namespaced_pod(dep.namespace, label_selector=sel).items == []
