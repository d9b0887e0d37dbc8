"""PostgreSQL's volume made by the harness for disk faults on Kubernetes (``kubernetes/pgvolume.py``):
real mounts (tmpfs + FUSE) written by uid 70, and on a real cluster (marker ``k8s``) a real PV that
PostgreSQL's claim binds to, a pod that writes into it as uid 70 and meets ENOSPC, and nothing left after
a teardown or a Ctrl-C in the middle of a deploy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.platforms.kubernetes import pgvolume
from harness.platforms.local import diskfault
from harness.waiting import wait_until
from tests.support.interrupt import ctrl_c, reaped

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting filesystems needs root")


def test_prebound_pv_names_the_claim_keeps_its_data_and_stays_on_this_node() -> None:
    pv = pgvolume.prebound_pv("r1abc", "gvh-r1abc", "/tmp/x/data", "gvh-node", "standard", "1Gi")
    spec = pv["spec"]
    assert spec["claimRef"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "gvh-r1abc",
                                "name": "data-goverse-postgres-0"}
    assert spec["hostPath"] == {"path": "/tmp/x/data", "type": "Directory"}  # never created by the kubelet
    assert spec["persistentVolumeReclaimPolicy"] == "Retain" and spec["storageClassName"] == "standard"
    assert spec["capacity"] == {"storage": "1Gi"}  # at least the claim's request, or it would not bind
    term = spec["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term == {"key": "kubernetes.io/hostname", "operator": "In", "values": ["gvh-node"]}
    labels = pv["metadata"]["labels"]
    assert labels["goverse-harness/run-id"] == "r1abc" and "goverse-harness/provisioned" not in labels
    with pytest.raises(ValueError):
        pgvolume.pv_name("Not A Run Id")


def _write_as_pg(path: Path, blocks: int) -> tuple[str, float]:
    """``dd`` of ``blocks`` × 64 KiB with an fsync, as uid/gid 70 (PostgreSQL in the pod): its output
    and how long it took."""
    def drop() -> None:
        os.setgid(pgvolume.PG_UID)
        os.setgroups([])
        os.setuid(pgvolume.PG_UID)
    t = time.monotonic()
    r = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=65536", f"count={blocks}", "conv=fsync"],
                       capture_output=True, text=True, timeout=60, preexec_fn=drop, check=False)
    return (f"rc={r.returncode} {r.stderr.strip()}", time.monotonic() - t)


@pytest.fixture
def volume() -> Iterator[pgvolume.PostgresFaultVolume]:
    vol = pgvolume.PostgresFaultVolume(None, "t" + os.urandom(4).hex(), "unused", "unused", "standard",
                                       size_mb=16)  # under /tmp, as for a run: uid 70 can reach it
    try:
        yield vol
    finally:
        vol.remove()
        assert diskfault.leftovers(vol.prefix) == [], "mounts or FUSE daemons left behind"
        assert not vol.root.exists()


@needs_root
def test_volume_is_written_by_uid_70_fills_to_enospc_slows_and_leaves_nothing(volume) -> None:
    view = volume.mount()
    st = view.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (70, 70, 0o700)
    assert diskfault.is_mounted(volume.root / "disk")
    out, _ = _write_as_pg(view / "f", 4)
    assert out.startswith("rc=0"), out
    assert (volume.root / "disk" / "data" / "f").stat().st_uid == 70  # the real file, under the small fs
    # "full": the ballast in the small filesystem, outside PostgreSQL's files; uid 70 gets ENOSPC
    from harness.faults.spec import DiskFault
    from harness.platforms.local.diskinject import inject_pg_disk

    injected = inject_pg_disk(DiskFault("postgres", "full"), volume.disk, volume.layer, volume.unwired)
    assert injected.detail["free_bytes"] == 0 and injected.detail["ballast_bytes"] > 8 * 2**20
    out, _ = _write_as_pg(view / "g", 4)
    assert out.startswith("rc=1") and "No space left on device" in out, out
    assert injected.heal()["free_bytes"] > 8 * 2**20
    assert _write_as_pg(view / "g", 4)[0].startswith("rc=0")
    if volume.layer is None:
        pytest.skip(f"FUSE layer unavailable: {volume.unwired}")
    injected = inject_pg_disk(DiskFault("postgres", "latency", latency_ms=100), volume.disk, volume.layer,
                              volume.unwired)
    out, took = _write_as_pg(view / "h", 3)
    injected.heal()
    assert out.startswith("rc=0") and took >= 0.3, (out, took)  # 3 writes + fsync, each delayed 100 ms
    injected = inject_pg_disk(DiskFault("postgres", "eio"), volume.disk, volume.layer, volume.unwired)
    out, _ = _write_as_pg(view / "i", 1)
    injected.heal()
    assert out.startswith("rc=1") and "Input/output error" in out, out


# --- on a real cluster whose node is this machine ------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Any:
    from tests.support.kubecluster import platform_or_skip

    plat = platform_or_skip()
    from harness.platforms.kubernetes import client

    api = client.api_client(plat.opts.kubeconfig, plat.opts.context)
    from kubernetes import client as kc

    node, why = pgvolume.local_node(kc.CoreV1Api(api))
    if node is None:
        pytest.skip(f"no node access: {why}")
    if os.geteuid() != 0:
        pytest.skip("mounting filesystems needs root")
    return plat, api, node


def render_postgres() -> list[dict[str, Any]]:
    """The manifests a run renders (kind overlay, reference stack)."""
    import tempfile

    from harness.platforms.base import StackSpec
    from harness.platforms.kubernetes import render, stackconfig
    spec = StackSpec()
    opts = render.RunOptions(run_id="r0test", platform="kind", stack="reference", nodes=1, gates=1, inspector=False,
                             etcd_members=1, images={}, bugs=())
    with tempfile.TemporaryDirectory() as d:
        return render.kustomize_build(render.write_run_kustomization(Path(d), opts, stackconfig.stack_config(spec)))


def test_the_claim_request_is_read_from_the_rendered_statefulset() -> None:
    assert pgvolume.claim_request(render_postgres()) == "1Gi"  # the kind overlay's PostgreSQL claim
    with pytest.raises(ValueError, match="goverse-postgres"):
        pgvolume.claim_request([])


def _pod(image: str) -> dict[str, Any]:
    script = ("id -u; echo hello > /data/hello && echo wrote; "
              "dd if=/dev/zero of=/data/big bs=1M count=64 2>&1; echo dd=$?")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "writer"},
            "spec": {"restartPolicy": "Never", "enableServiceLinks": False,
                     "securityContext": {"runAsUser": 70, "runAsGroup": 70, "fsGroup": 70},
                     "containers": [{"name": "w", "image": image, "imagePullPolicy": "Never",
                                     "command": ["sh", "-c", script],
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": pgvolume.CLAIM}}]}}


@pytest.mark.k8s
def test_claim_binds_the_harness_volume_and_a_uid_70_pod_meets_enospc(cluster: Any) -> None:
    from harness.platforms.kubernetes import apply as k8s
    from harness.platforms.kubernetes import naming, render, watch
    from harness.platforms.kubernetes.platform import delete_run

    plat, api, node = cluster
    dyn = k8s.dynamic(api)
    run_id = naming.new_run_id()
    ns = naming.namespace_for(run_id)
    # the claim as the kind overlay renders it: a request larger than the small filesystem
    request = pgvolume.claim_request(render_postgres())
    vol = pgvolume.PostgresFaultVolume(dyn, run_id, ns, node, pgvolume.default_storage_class(dyn),
                                       capacity=request, size_mb=32)
    image = render.BACKUP_SHELL_IMAGE  # postgres:16-alpine, loaded for the stack: sh and dd as uid 70
    try:
        vol.create()
        k8s.apply(dyn, {"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": ns, "labels": naming.run_labels(run_id)}})
        k8s.apply(dyn, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": pgvolume.CLAIM, "namespace": ns},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": request}}}})
        claims = k8s.resource(dyn, "v1", "PersistentVolumeClaim")
        watch.wait_object(dyn, claims, ns, pgvolume.CLAIM,
                          lambda o: (bool(o) and o.get("status", {}).get("phase") == "Bound",
                                     str(o and o.get("status"))), 60, "the claim bound")
        pvc = claims.get(name=pgvolume.CLAIM, namespace=ns).to_dict()
        assert pvc["spec"]["volumeName"] == pgvolume.pv_name(run_id)  # ours, not the provisioner's
        from kubernetes import client as kc

        assert pgvolume.bound_here(kc.CoreV1Api(api), ns, run_id)[0]
        ok, why = pgvolume.bound_here(kc.CoreV1Api(api), ns, "someoneelse")  # the injector's refusal
        assert not ok and pgvolume.pv_name(run_id) in why
        k8s.apply(dyn, {**_pod(image), "metadata": {"name": "writer", "namespace": ns}})
        watch.wait_object(dyn, k8s.resource(dyn, "v1", "Pod"), ns, "writer",
                          lambda o: (bool(o) and o.get("status", {}).get("phase") in ("Succeeded", "Failed"),
                                     str(o and o.get("status", {}).get("phase"))), 180, "the writer pod ran")
        from kubernetes import client as kc

        log = kc.CoreV1Api(api).read_namespaced_pod_log("writer", ns)
        assert "wrote" in log and "No space left on device" in log, log
        data = vol.root / "disk" / "data"
        assert (data / "hello").read_text() == "hello\n" and (data / "hello").stat().st_uid == 70
    finally:
        delete_run(dyn, ns, run_id)
        vol.remove()
    assert not k8s.resource(dyn, "v1", "PersistentVolume").get(
        label_selector=naming.run_selector(run_id)).to_dict()["items"]
    assert diskfault.leftovers(vol.prefix) == [] and not vol.root.exists()


CHILD = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from harness.platforms.base import StackSpec
    from harness.platforms.kubernetes.platform import KubernetesPlatform, options_from
    opts = options_from("kubernetes", os.environ.get("GVH_KUBE_CONTEXT"), os.environ.get("GVH_ALLOW_CONTEXT"),
                        "unused", False, False, os.environ.get("GVH_IMAGE", "goverse-harness/refstack:dev"))
    plat = KubernetesPlatform(opts)
    plat.deploy(StackSpec(nodes=1, gates=1, etcd_members=1, disk_faults=True), sys.argv[1])
    print("deployed", flush=True)
""")


@pytest.mark.k8s
def test_ctrl_c_during_deploy_removes_the_pv_mounts_and_fuse_daemon(cluster: Any, tmp_path: Path) -> None:
    from harness.platforms.kubernetes import apply as k8s
    from harness.platforms.kubernetes import naming

    plat, api, _node = cluster
    dyn = k8s.dynamic(api)
    pvs = k8s.resource(dyn, "v1", "PersistentVolume")
    before = {p["metadata"]["name"] for p in pvs.get().to_dict()["items"]}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    with reaped(child):
        def ours() -> list[str]:
            if child.poll() is not None:
                raise AssertionError(f"the deploy ended early: {child.stderr.read() if child.stderr else ''}")
            return [n for n in (p["metadata"]["name"] for p in pvs.get().to_dict()["items"])
                    if n not in before and n.endswith("-pgdata")]
        name = wait_until(ours, 120, "the run's PostgreSQL volume exists")[0]
        run_id = name[len("gvh-"):-len("-pgdata")]
        prefix = f"gvh-{run_id}-pgvol"
        assert any(x.startswith("mount") for x in diskfault.leftovers(prefix))
        # interrupted while PostgreSQL and etcd come up on it
        pods = k8s.resource(dyn, "v1", "Pod")
        wait_until(lambda: pods.get(namespace=naming.namespace_for(run_id)).to_dict()["items"], 120,
                   "the run's pods exist")
        _, err = ctrl_c(child, timeout=400)
    assert child.returncode != 0 and "KeyboardInterrupt" in err, err[-2000:]
    names = {p["metadata"]["name"] for p in pvs.get().to_dict()["items"]}
    assert name not in names, "the PV outlived the interrupted run"
    assert diskfault.leftovers(prefix) == [], "mounts or the FUSE daemon outlived the interrupted run"
    ns = {n["metadata"]["name"] for n in k8s.resource(dyn, "v1", "Namespace").get().to_dict()["items"]}
    assert naming.namespace_for(run_id) not in ns


def test_the_stack_asks_for_disk_faults_only_when_a_selected_scenario_of_its_module_injects_one() -> None:
    import types

    from harness.faults.spec import DiskFault, Kill
    from harness.pytest_plugin import asks_disk_faults

    chaos, other = types.ModuleType("test_chaos"), types.ModuleType("test_other")

    def item(module: types.ModuleType, fault: object | None) -> types.SimpleNamespace:
        params = {} if fault is None else {"fault": fault}
        return types.SimpleNamespace(module=module, callspec=types.SimpleNamespace(params=params))

    kill, full = item(chaos, Kill("node-0", "SIGKILL")), item(chaos, DiskFault("postgres", "full"))
    assert asks_disk_faults([kill, full], chaos)
    assert not asks_disk_faults([kill, item(chaos, None)], chaos)
    assert not asks_disk_faults([kill, item(other, DiskFault("postgres", "latency", latency_ms=50))], chaos)
