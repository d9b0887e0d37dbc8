"""The operator-facing manifest fixes of issue #18 hold on every rendered overlay, and each check fails
on a deliberately broken copy.

Checks (pure functions over rendered documents): the inspector is behind no Ingress; Goverse's gates
publish gRPC (Service, NetworkPolicy, an Ingress in production); nodes and gates wait minReadySeconds;
GOMEMLIMIT comes from the memory limit; pods mount hash-named ConfigMaps (an edit rolls them); production
uses no `:latest`/untagged image and busybox only by digest; etcd has a backend quota below its volume
and periodic auto-compaction; PDBs let unhealthy pods go; every emptyDir has a sizeLimit; the Pod
Security version is pinned; the schema Job is cleaned up; CronJob pods meet the same pod-security
checks as the workloads. The OpenShift component removes fixed ids and still validates.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.platforms.kubernetes import k8sschema, policy, render
from tests.support.paths import ROOT

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not on PATH")

Doc = dict[str, Any]
OVERLAYS = [(p, s) for p in render.PLATFORM_OVERLAYS for s in render.STACKS]


@functools.cache
def _rendered(platform: str, stack: str) -> tuple[Doc, ...]:
    return tuple(render.kustomize_build(render.overlay_dir(platform, stack)))


def docs(platform: str, stack: str) -> list[Doc]:
    return copy.deepcopy(list(_rendered(platform, stack)))


def pods(ds: list[Doc]) -> Iterator[tuple[Doc, dict[str, Any]]]:
    """(object, pod spec) of every workload and CronJob."""
    for d in ds:
        if d.get("kind") in ("Deployment", "StatefulSet", "Job"):
            yield d, d["spec"]["template"]["spec"]
        elif d.get("kind") == "CronJob":
            yield d, d["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def name(d: Doc) -> str:
    return f"{d['kind']}/{d['metadata']['name']}"


def find(ds: list[Doc], kind: str, nm: str) -> Doc:
    return next(d for d in ds if d["kind"] == kind and d["metadata"]["name"] == nm)


# --- checks -------------------------------------------------------------------------------------------------
def inspector_not_published(ds: list[Doc]) -> list[str]:
    return [f"{name(i)} publishes the inspector (shard move/pin, pprof, no auth)"
            for i in ds if i["kind"] == "Ingress" for r in i["spec"].get("rules", [])
            for p in r.get("http", {}).get("paths", []) if p["backend"]["service"]["name"] == "goverse-inspector"]


def gate_grpc(ds: list[Doc], production: bool) -> list[str]:
    out: list[str] = []
    gate = find(ds, "Deployment", "goverse-gate")
    if "grpc" not in {p["name"] for c in gate["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}:
        return out  # the reference stack's gates serve HTTP only
    if "grpc" not in {p["name"] for p in find(ds, "Service", "goverse-gate")["spec"]["ports"]}:
        out.append("Service/goverse-gate has no grpc port")
    ports = {str(p.get("port")) for r in find(ds, "NetworkPolicy", "gate-ingress")["spec"]["ingress"]
             for p in r.get("ports", [])}
    if "grpc" not in ports:
        out.append("NetworkPolicy/gate-ingress does not open grpc")
    if production and not any(p["backend"]["service"]["port"].get("name") == "grpc"
                              and "GRPC" in str(i["metadata"].get("annotations", {}))
                              for i in ds if i["kind"] == "Ingress"
                              for r in i["spec"]["rules"] for p in r["http"]["paths"]):
        out.append("no Ingress publishes the gates' grpc port with a gRPC backend")
    return out


def min_ready(ds: list[Doc]) -> list[str]:
    return [f"{name(d)}: no minReadySeconds (/ready latches)" for d in ds
            if d["kind"] in ("StatefulSet", "Deployment") and d["metadata"]["name"] in ("goverse-node", "goverse-gate")
            and not d["spec"].get("minReadySeconds")]


def gomemlimit(ds: list[Doc]) -> list[str]:
    out = []
    for d, pod in pods(ds):
        if d["metadata"]["name"] not in ("goverse-node", "goverse-gate", "goverse-inspector"):
            continue
        c = pod["containers"][0]
        env = {e["name"]: e for e in c.get("env", [])}
        ref = env.get("GOMEMLIMIT", {}).get("valueFrom", {}).get("resourceFieldRef", {})
        if ref.get("resource") != "limits.memory" or ref.get("containerName") not in (None, c["name"]):
            out.append(f"{name(d)}: GOMEMLIMIT not from limits.memory")
    return out


def hashed_configmaps(ds: list[Doc]) -> list[str]:
    out = []
    for d, pod in pods(ds):
        for v in pod.get("volumes", []):
            cm = v.get("configMap", {}).get("name", "")
            hashed = re.fullmatch(r"goverse-\w+-[a-z0-9]{10}", cm)
            if cm.startswith(("goverse-config", "goverse-render")) and not hashed:
                out.append(f"{name(d)} mounts ConfigMap {cm} without a content hash: an edit would not roll it")
    return out


def pinned_images(ds: list[Doc], production: bool) -> list[str]:
    out = []
    for d, pod in pods(ds):
        for c in pod.get("initContainers", []) + pod["containers"]:
            img = c["image"]
            if "busybox" in img and "@sha256:" not in img:
                out.append(f"{name(d)} {c['name']}: busybox not pinned by digest")
            tag = img.split("@")[0].rsplit("/", 1)[-1].partition(":")[2]
            if production and (tag in ("", "latest")) and "@sha256:" not in img:
                out.append(f"{name(d)} {c['name']}: image {img} is latest or untagged")
    return out


_UNITS = {"Mi": 2**20, "Gi": 2**30}


def etcd_space(ds: list[Doc]) -> list[str]:
    out = []
    etcd = find(ds, "StatefulSet", "goverse-etcd")
    env = {e["name"]: e.get("value") for e in etcd["spec"]["template"]["spec"]["containers"][0]["env"]}
    size = etcd["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    volume = int(size[:-2]) * _UNITS[size[-2:]]
    quota = int(env.get("ETCD_QUOTA_BACKEND_BYTES") or 0)
    if not 0 < quota < volume:
        out.append(f"etcd quota {quota} is not below its {size} volume")
    if env.get("ETCD_AUTO_COMPACTION_MODE") != "periodic" or not env.get("ETCD_AUTO_COMPACTION_RETENTION"):
        out.append("etcd has no periodic auto-compaction")
    return out


def pdb_unhealthy(ds: list[Doc]) -> list[str]:
    return [f"{name(p)}: unhealthyPodEvictionPolicy is not AlwaysAllow" for p in ds
            if p["kind"] == "PodDisruptionBudget" and p["spec"].get("unhealthyPodEvictionPolicy") != "AlwaysAllow"]


def emptydir_limits(ds: list[Doc]) -> list[str]:
    return [f"{name(d)}: emptyDir {v['name']} has no sizeLimit" for d, pod in pods(ds)
            for v in pod.get("volumes", []) if "emptyDir" in v and not (v["emptyDir"] or {}).get("sizeLimit")]


def pss_version(ds: list[Doc]) -> list[str]:
    return [f"{name(n)}: enforce-version {n['metadata']['labels'].get('pod-security.kubernetes.io/enforce-version')}"
            " is not a pinned v1.N" for n in ds if n["kind"] == "Namespace" and not re.fullmatch(
                r"v1\.\d+", n["metadata"]["labels"].get("pod-security.kubernetes.io/enforce-version", ""))]


def schema_job_ttl(ds: list[Doc]) -> list[str]:
    job = find(ds, "Job", "goverse-schema-init")
    return [] if job["spec"].get("ttlSecondsAfterFinished") else [
        "Job/goverse-schema-init has no ttlSecondsAfterFinished"]


def cronjob_pod_security(ds: list[Doc]) -> list[str]:
    """The CronJobs' pods through the same §5.1 checks as the workloads (as Jobs)."""
    jobs = [{"apiVersion": "batch/v1", "kind": "Job", "metadata": d["metadata"],
             "spec": d["spec"]["jobTemplate"]["spec"]}
            for d in ds if d["kind"] == "CronJob"]
    return [v for check in (policy.check_5_1_run_as_non_root, policy.check_5_1_drop_all_capabilities,
                            policy.check_5_1_seccomp_runtime_default, policy.check_5_1_read_only_root_filesystem,
                            policy.check_3_1_resources) for v in check(jobs)]


CHECKS: dict[str, Callable[[list[Doc], str, str], list[str]]] = {
    "inspector-not-published": lambda d, p, s: inspector_not_published(d),
    "gate-grpc": lambda d, p, s: gate_grpc(d, p == "production"),
    "min-ready-seconds": lambda d, p, s: min_ready(d),
    "gomemlimit": lambda d, p, s: gomemlimit(d),
    "hashed-configmaps": lambda d, p, s: hashed_configmaps(d),
    "pinned-images": lambda d, p, s: pinned_images(d, p == "production"),
    "etcd-space": lambda d, p, s: etcd_space(d),
    "pdb-unhealthy-eviction": lambda d, p, s: pdb_unhealthy(d),
    "emptydir-size-limit": lambda d, p, s: emptydir_limits(d),
    "pss-version-pinned": lambda d, p, s: pss_version(d),
    "schema-job-ttl": lambda d, p, s: schema_job_ttl(d),
    "cronjob-pod-security": lambda d, p, s: cronjob_pod_security(d),
}


@pytest.mark.parametrize("platform,stack", OVERLAYS, ids=[f"{p}-{s}" for p, s in OVERLAYS])
@pytest.mark.parametrize("check", sorted(CHECKS))
def test_property_holds(check: str, platform: str, stack: str) -> None:
    assert CHECKS[check](docs(platform, stack), platform, stack) == []


def _container(ds: list[Doc], kind: str, nm: str, init: bool = False) -> dict[str, Any]:
    pod = find(ds, kind, nm)["spec"]["template"]["spec"]
    return (pod["initContainers"] if init else pod["containers"])[0]


def _cron_pod(ds: list[Doc], nm: str) -> dict[str, Any]:
    return find(ds, "CronJob", nm)["spec"]["jobTemplate"]["spec"]["template"]["spec"]


#: check -> (overlay, how to break it)
BREAKS: dict[str, tuple[tuple[str, str], Callable[[list[Doc]], Any]]] = {
    "inspector-not-published": (("production", "goverse"), lambda d: find(
        d, "Ingress", "goverse")["spec"]["rules"].append(
        {"host": "i.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
            "service": {"name": "goverse-inspector", "port": {"name": "http"}}}}]}})),
    "gate-grpc": (("production", "goverse"), lambda d: find(d, "Service", "goverse-gate")["spec"].update(
        ports=[p for p in find(d, "Service", "goverse-gate")["spec"]["ports"] if p["name"] != "grpc"])),
    "min-ready-seconds": (("kind", "reference"), lambda d: find(d, "Deployment", "goverse-gate")["spec"].pop(
        "minReadySeconds")),
    "gomemlimit": (("k3s", "goverse"), lambda d: _container(d, "StatefulSet", "goverse-node").update(
        env=[e for e in _container(d, "StatefulSet", "goverse-node")["env"] if e["name"] != "GOMEMLIMIT"])),
    "hashed-configmaps": (("kind", "reference"), lambda d: [v["configMap"].update(name="goverse-config")
                                                            for v in find(d, "StatefulSet", "goverse-node")["spec"][
                                                                "template"]["spec"]["volumes"] if "configMap" in v]),
    "pinned-images": (("production", "goverse"), lambda d: _container(d, "StatefulSet", "goverse-node").update(
        image="xiaonanln/goverse-node:latest")),
    "etcd-space": (("kind", "goverse"), lambda d: _container(d, "StatefulSet", "goverse-etcd").update(
        env=[e for e in _container(d, "StatefulSet", "goverse-etcd")["env"]
             if e["name"] != "ETCD_QUOTA_BACKEND_BYTES"])),
    "pdb-unhealthy-eviction": (("production", "reference"), lambda d: find(
        d, "PodDisruptionBudget", "goverse-etcd")["spec"].pop("unhealthyPodEvictionPolicy")),
    "emptydir-size-limit": (("production", "reference"), lambda d: _cron_pod(d, "goverse-postgres-backup")[
        "volumes"].append({"name": "scratch", "emptyDir": {}})),
    "pss-version-pinned": (("kind", "goverse"), lambda d: find(d, "Namespace", "goverse")["metadata"]["labels"].update(
        {"pod-security.kubernetes.io/enforce-version": "latest"})),
    "schema-job-ttl": (("k3s", "reference"), lambda d: find(d, "Job", "goverse-schema-init")["spec"].pop(
        "ttlSecondsAfterFinished")),
    "cronjob-pod-security": (("production", "reference"), lambda d: _cron_pod(d, "goverse-etcd-defrag")[
        "securityContext"].pop("runAsNonRoot")),
}


def test_every_check_has_a_break() -> None:
    assert set(BREAKS) == set(CHECKS)


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_check_fails_on_a_broken_overlay(case: str) -> None:
    (platform, stack), breaks = BREAKS[case]
    d = docs(platform, stack)
    assert CHECKS[case](d, platform, stack) == [], "precondition: the intact overlay passes"
    breaks(d)
    assert CHECKS[case](d, platform, stack), f"{case}: the check did not notice"


# --- OpenShift component ------------------------------------------------------------------------------------
def openshift_render(stack: str) -> list[Doc]:
    with tempfile.TemporaryDirectory(prefix="gvh-openshift-") as tmp:
        def rel(p: Path) -> str:
            return os.path.relpath(p, tmp)

        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": "goverse",
            "resources": [rel(ROOT / "manifests/base")],
            "components": [rel(ROOT / f"manifests/stacks/{stack}"),
                           rel(ROOT / "manifests/overlays/production/platform"),
                           rel(ROOT / "manifests/components/openshift")]}))
        out = subprocess.run(["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", tmp],
                             capture_output=True, text=True, timeout=120, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.mark.parametrize("stack", render.STACKS)
def test_openshift_component_drops_fixed_ids_and_keeps_the_rest(stack: str) -> None:
    ds = openshift_render(stack)
    for d in ds:
        if d["kind"] in ("Deployment", "StatefulSet", "Job") and d["metadata"]["labels"].get(
                "app.kubernetes.io/part-of") == "goverse":
            sc = d["spec"]["template"]["spec"]["securityContext"]
            assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(sc), name(d)
            assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}
        with contextlib.suppress(k8sschema.NoSchema):
            assert k8sschema.errors(d, "1.31", strict=True) == [], name(d)
