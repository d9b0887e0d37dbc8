"""The binaries cluster provider: pure parts (configs, go.mod, sysctl restore, provisioner, PKI) and,
as root on a machine without a running binaries cluster, a real up → pod with a volume → down that
must leave nothing, and a SIGTERM during up that must leave nothing either (marker ``k8s``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.platforms.kubernetes import guard
from harness.platforms.kubernetes.cluster import configs, gobuild, hostnet, pki, provisioner
from harness.platforms.kubernetes.cluster import versions as v
from tests.support.paths import ROOT

REPO = ROOT
L = configs.Layout(Path("/x/state"))


def test_containerd_restricts_oom_score_adj_and_uses_our_cni() -> None:
    text = configs.containerd_config(L, Path("/c/bin"))
    assert "restrict_oom_score_adj = true" in text
    assert 'bin_dir = "/c/bin"' in text and str(L.cni_conf) in text
    assert str(L.containerd_sock) in text


def test_dns_is_hermetic_no_forwarder() -> None:
    corefile = next(o for o in configs.coredns_objects() if o["kind"] == "ConfigMap")["data"]["Corefile"]
    assert "forward" not in corefile and "proxy" not in corefile
    assert "rcode NXDOMAIN" in corefile


def test_nothing_is_exposed_or_masqueraded_off_the_machine() -> None:
    cni = configs.cni_conflist(L)
    assert cni["plugins"][0]["ipMasq"] is False
    assert configs.kube_proxy_config(L)["nodePortAddresses"] == [f"{v.NODE_IP}/32"]
    cmds = configs.commands(L, Path("/k"))
    assert f"--bind-address={v.NODE_IP}" in cmds["kube-apiserver"]
    assert all("127.0.0.1" in a for a in cmds["etcd"] if a.startswith("http"))
    kubelet = configs.kubelet_config(L)
    assert kubelet["address"] == v.NODE_IP and kubelet["readOnlyPort"] == 0
    assert not kubelet["authentication"]["anonymous"]["enabled"]


def test_ranges_stay_clear_of_the_local_platform() -> None:
    import ipaddress

    local = ipaddress.ip_network("10.77.0.0/16")
    for cidr in (v.SERVICE_CIDR, v.POD_CIDR, f"{v.NODE_IP}/32"):
        assert not ipaddress.ip_network(cidr).overlaps(local), cidr


def test_kubernetes_gomod_requires_staging_and_stubs_samples() -> None:
    mod = ("module k8s.io/kubernetes\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n"
           "\tk8s.io/sample-controller => ./staging/src/k8s.io/sample-controller\n)\n")
    out = gobuild.kubernetes_gomod(mod, "v1.34.4", "v0.34.4")
    assert "require k8s.io/api v0.34.4" in out and "replace k8s.io/api => k8s.io/api v0.34.4" in out
    assert "replace k8s.io/sample-controller => ./stub/sample-controller" in out
    assert "require k8s.io/kubernetes v1.34.4" in out


def test_sysctls_restored_unless_someone_else_changed_them() -> None:
    before = {"kernel.panic": "0", "vm.overcommit_memory": "0", "net.ipv4.ip_forward": "1"}
    after_up = {"kernel.panic": "10", "vm.overcommit_memory": "1", "net.ipv4.ip_forward": "1"}
    now = {"kernel.panic": "10", "vm.overcommit_memory": "1", "net.ipv4.ip_forward": "1"}
    assert hostnet.to_restore(before, after_up, now) == {"kernel.panic": "0", "vm.overcommit_memory": "0"}
    # route_localnet unchanged at up, changed later by someone else (not us): left alone
    assert hostnet.to_restore({"x": "0"}, {"x": "0"}, {"x": "1"}) == {}
    # changed by kube-proxy after we recorded (no after_up record): restored
    assert hostnet.to_restore({"x": "0"}, {}, {"x": "1"}) == {"x": "0"}


def test_provisioner_answers_pending_claims_of_our_class_only() -> None:
    claim = {"metadata": {"name": "data-x", "namespace": "ns", "uid": "u1",
                          "annotations": {provisioner.SELECTED_NODE: v.NODE_NAME}},
             "spec": {"storageClassName": "standard", "accessModes": ["ReadWriteOnce"],
                      "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Pending"}}
    assert provisioner.wants_volume(claim)
    pv = provisioner.pv_for(claim, Path("/vol"))
    assert pv["spec"]["claimRef"]["uid"] == "u1" and pv["spec"]["hostPath"]["path"] == "/vol/pvc-u1"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert not provisioner.wants_volume({**claim, "spec": {**claim["spec"], "storageClassName": "other"}})
    assert not provisioner.wants_volume({**claim, "spec": {**claim["spec"], "volumeName": "pv"}})
    assert not provisioner.wants_volume({**claim, "metadata": {**claim["metadata"], "annotations": {}}})


def test_down_removes_the_kubelets_pod_cgroups_deepest_first(tmp_path: Path) -> None:
    """The kubelet leaves ``kubepods`` in every cgroup controller after it stops (found after a real
    ``cluster down`` that said "nothing left"); down removes them, and names one it cannot (here a file
    stands in for a process still in the group, so its ``rmdir`` fails as it would)."""
    for ctl in ("cpu", "memory", "pids"):
        (tmp_path / ctl / "kubepods" / "burstable" / "pod-a" / "c1").mkdir(parents=True)
        (tmp_path / ctl / "kubepods" / "besteffort").mkdir()
    (tmp_path / "cpu" / "gvh-other").mkdir()  # not the kubelet's: untouched
    (tmp_path / "pids" / "kubepods" / "burstable" / "busy").write_text("1234")
    assert [p.parent.name for p in hostnet.kubelet_cgroups(tmp_path)] == ["cpu", "memory", "pids"]
    problems = hostnet.remove_kubelet_cgroups(tmp_path)
    assert [p.parent.name for p in hostnet.kubelet_cgroups(tmp_path)] == ["pids"]
    assert len(problems) == 1 and "pids/kubepods" in problems[0]
    assert (tmp_path / "cpu" / "gvh-other").is_dir()


def test_pki_identities_follow_kubernetes_conventions(tmp_path: Path) -> None:
    from cryptography import x509

    pki.make_pki(tmp_path)
    kubelet = x509.load_pem_x509_certificate((tmp_path / "kubelet.crt").read_bytes())
    assert kubelet.subject.rfc4514_string() == f"CN=system:node:{v.NODE_NAME},O=system:nodes"
    api = x509.load_pem_x509_certificate((tmp_path / "apiserver.crt").read_bytes())
    ips = {str(i) for i in api.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
           .get_values_for_type(x509.IPAddress)}
    assert {v.NODE_IP, v.KUBERNETES_SERVICE_IP} <= ips
    assert oct((tmp_path / "ca.key").stat().st_mode & 0o777) == "0o600"


def test_guard_accepts_our_own_context_exactly() -> None:
    assert guard.looks_like_test_cluster("gvh-binaries")
    assert not guard.looks_like_test_cluster("gvh-binaries-prod")


# --- the real thing ----------------------------------------------------------------------------------


def _real_cluster_or_skip() -> None:
    if os.environ.get("GVH_TEST_BINARIES_CLUSTER") != "1":
        pytest.skip("brings a whole cluster up and down (minutes cold): scripts/test-kubernetes sets "
                    "GVH_TEST_BINARIES_CLUSTER=1")
    if os.geteuid() != 0:
        pytest.skip("the binaries cluster needs root (containerd, kubelet, host networking)")
    from harness.platforms.kubernetes.cluster.binaries import BinariesCluster

    if BinariesCluster().running():
        pytest.skip("a binaries cluster is up (this test would take it down): run it before `cluster up`")


def _cli(*args: str, **kw: object) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "harness.cli", "cluster", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)  # type: ignore[call-overload]


@pytest.mark.k8s
@pytest.mark.integration
def test_up_pod_with_volume_then_down_leaves_nothing(tmp_path: Path) -> None:
    _real_cluster_or_skip()
    before = hostnet.read_sysctls()
    assert hostnet.leftovers() == [], "precondition: nothing of a cluster on this host"
    p = _cli("up", "--provider", "binaries")
    out, _ = p.communicate(timeout=3600)
    assert p.returncode == 0, out
    try:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=str(configs.Layout(v.state_root()).admin_kubeconfig))
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "gvh-lifecycle"}})
        core.create_namespaced_persistent_volume_claim("gvh-lifecycle", {
            "metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                  "resources": {"requests": {"storage": "1Gi"}}}})
        core.create_namespaced_pod("gvh-lifecycle", {
            "metadata": {"name": "p"}, "spec": {"containers": [{
                "name": "pause", "image": configs.PAUSE_IMAGE, "imagePullPolicy": "Never",
                "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}})
        from harness.waiting import wait_until

        wait_until(lambda: core.read_namespaced_pod("p", "gvh-lifecycle").status.phase == "Running", 120,
                   "pod with a provisioned volume running", interval=0.5)
        assert hostnet.leftovers(), "a running cluster shows up in leftovers() (the check can fail)"
    finally:
        d = _cli("down", "--export-logs", str(tmp_path / "logs"))
        out, _ = d.communicate(timeout=600)
    assert d.returncode == 0, out
    assert hostnet.leftovers() == []
    assert (tmp_path / "logs" / "components" / "kubelet.log").exists()
    after = hostnet.read_sysctls()
    assert {k: after.get(k) for k in before if after.get(k) != before[k]} == {}, "sysctls not restored"


@pytest.mark.k8s
@pytest.mark.integration
def test_sigterm_during_up_tears_down_what_was_started() -> None:
    _real_cluster_or_skip()
    p = _cli("up", "--provider", "binaries")
    assert p.stdout is not None
    # up's own progress says when the control plane starts (read line by line, not raced by polling:
    # a CI run beside the local scenario step once saw up finish before a pid-file poll signalled it)
    seen: list[str] = []
    for line in p.stdout:
        seen.append(line)
        if line.startswith("[cluster] control plane ..."):
            break
    assert seen and seen[-1].startswith("[cluster] control plane ..."), \
        "up never reached the control plane: " + "".join(seen)
    pidfile = v.state_root() / "run" / "kube-apiserver.pid"
    deadline = time.monotonic() + 120
    while not pidfile.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # sleep-ok: polling a file another process writes, bounded by the deadline
    alive = p.poll() is None
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=300)
    out = "".join(seen) + out
    assert alive, f"up had ended before the SIGTERM (pid file seen: {pidfile.exists()}):\n{out}"
    assert p.returncode != 0, out
    assert "tearing down" in out
    assert hostnet.leftovers() == []
