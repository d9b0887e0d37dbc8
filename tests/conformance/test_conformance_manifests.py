"""Static manifest checks of the conformance suite: judged over every rendered overlay, with the overlay
named in each violation; the checks conformance adds on top of kubernetes/policy.py (existence, HPA
presence and bounds, exact network paths, ServiceMonitor coverage) each fail on a broken copy of a
rendered overlay; a rendering failure or a crashing judge is ``unknown``, never a pass."""

from __future__ import annotations

import copy
import functools
import shutil
from typing import Any

import pytest

from harness.conformance import catalogue
from harness.conformance import manifests as m
from harness.conformance.static import StaticInputs, run_check, run_static

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not on PATH")


@functools.cache
def _rendered(name: str) -> tuple[dict[str, Any], ...]:
    from harness.platforms.kubernetes import render

    platform, stack = name.split("/")
    return tuple(render.kustomize_build(render.overlay_dir(platform, stack)))


def docs(name: str) -> list[dict[str, Any]]:
    return copy.deepcopy(list(_rendered(name)))


def find(d: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(x for x in d if x["kind"] == kind and x["metadata"]["name"] == name)


def drop(d: list[dict[str, Any]], kind: str, name: str) -> None:
    d.remove(find(d, kind, name))


# case -> (check id, overlay, how to break it, words the violation must contain)
BREAKS: dict[str, tuple[str, str, Any, str]] = {
    "no-inspector": ("3.1-core-resources", "kind/reference", lambda d: drop(d, "Deployment", "goverse-inspector"),
                     "no workload for goverse-inspector"),
    "no-namespace": ("3.1-core-resources", "kind/goverse", lambda d: drop(d, "Namespace", "goverse"), "no Namespace"),
    "no-secret-template": ("3.1-core-resources", "kind/goverse", lambda d: [d.remove(x) for x in list(d)
                                                                            if x["kind"] == "Secret"], "no Secret"),
    "gate-as-statefulset": ("3.1-core-resources", "k3s/reference",
                            lambda d: find(d, "Deployment", "goverse-gate").update(kind="StatefulSet"),
                            "the seed asks for a Deployment"),
    "node-service-not-headless": ("3.1-core-resources", "kind/reference", lambda d: find(
        d, "Service", "goverse-node-headless")["spec"].update(clusterIP="10.0.0.9"), "no headless Service"),
    "production-without-node-hpa": ("3.2-hpa", "production/reference",
                                    lambda d: drop(d, "HorizontalPodAutoscaler", "goverse-node"),
                                    "no HorizontalPodAutoscaler for StatefulSet/goverse-node"),
    "hpa-min-above-max": ("3.2-hpa", "production/goverse", lambda d: find(
        d, "HorizontalPodAutoscaler", "goverse-gate")["spec"].update(maxReplicas=2), "> maxReplicas"),
    "hpa-below-production-floor": ("3.2-hpa", "production/goverse", lambda d: find(
        d, "HorizontalPodAutoscaler", "goverse-gate")["spec"].update(minReplicas=2), "production floor"),
    "hpa-workload-sets-replicas": ("3.2-hpa", "production/reference", lambda d: find(
        d, "Deployment", "goverse-gate")["spec"].update(replicas=3), "every apply resets"),
    "netpol-extra-path": ("3.2-network-policies", "kind/reference", lambda d: find(
        d, "NetworkPolicy", "postgres-ingress")["spec"]["ingress"][0]["from"][0]["podSelector"][
        "matchExpressions"][0]["values"].append("goverse-gate") or find(d, "NetworkPolicy", "gate-egress")[
        "spec"]["egress"][0]["to"][0]["podSelector"]["matchExpressions"][0]["values"].append("goverse-postgres"),
        "allows paths the stack does not need: gate→postgres"),
    "netpol-no-default-deny": ("3.2-network-policies", "k3s/goverse",
                               lambda d: drop(d, "NetworkPolicy", "default-deny"), "no default-deny"),
    "no-gate-servicemonitor": ("4.1-service-monitors", "production/goverse",
                               lambda d: drop(d, "ServiceMonitor", "goverse-gate"),
                               "no ServiceMonitor scrapes goverse-gate"),
    "production-without-rules": ("4.1-alert-rules", "production/goverse",
                                 lambda d: drop(d, "PrometheusRule", "goverse-alerts"), "no PrometheusRule"),
    "alert-missing": ("4.1-alert-rules", "production/goverse", lambda d: find(d, "PrometheusRule", "goverse-alerts")[
        "spec"]["groups"][0]["rules"].pop(0), "alert"),
    "root-container": ("5.1-run-as-non-root", "kind/reference", lambda d: find(d, "StatefulSet", "goverse-node")[
        "spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
    "literal-password": ("5.3-credentials-from-secrets", "kind/reference", lambda d: find(
        d, "StatefulSet", "goverse-node")["spec"]["template"]["spec"]["containers"][0].setdefault("env", []).append(
        {"name": "GOVERSE_POSTGRES_PASSWORD", "value": "hunter2"}), "not from a Secret"),
    # checks backed by kubernetes/policy.py: one break each, judged through the conformance layer
    "no-prestop": ("2.2-prestop-grace", "kind/reference", lambda d: container(d, "StatefulSet", "goverse-node").pop(
        "lifecycle"), "no preStop delay"),
    "prestop-exec-sleep": ("2.2-prestop-grace", "kind/reference", lambda d: container(
        d, "Deployment", "goverse-gate").update(lifecycle={"preStop": {"exec": {"command": ["sleep", "5"]}}}),
        "no preStop delay"),
    "no-pod-ip": ("2.4-downward-api-identity", "kind/goverse", lambda d: [
        c.update(env=[e for e in c.get("env", []) if e["name"] != "POD_IP"])
        for c in pod(d, "Deployment", "goverse-gate")["containers"]
        + pod(d, "Deployment", "goverse-gate").get("initContainers", [])], "POD_NAME/POD_IP"),
    "no-readiness-probe": ("3.1-probes", "kind/reference", lambda d: container(d, "Deployment", "goverse-gate").pop(
        "readinessProbe"), "no readinessProbe"),
    "no-limits": ("3.1-resources", "kind/reference", lambda d: container(d, "StatefulSet", "goverse-etcd")[
        "resources"].pop("limits"), "no limits.cpu"),
    "service-selects-nothing": ("3.1-services", "kind/reference", lambda d: find(d, "Service", "goverse-gate")[
        "spec"].update(selector={"app.kubernetes.io/name": "nobody"}), "selects no workload"),
    "pdb-blocks-evictions": ("3.2-pdb", "production/reference", lambda d: find(
        d, "PodDisruptionBudget", "goverse-node")["spec"].update(maxUnavailable=0), "PDB keeps"),
    "capability-added": ("5.1-drop-capabilities", "kind/reference", lambda d: container(
        d, "StatefulSet", "goverse-node")["securityContext"].update(
        capabilities={"drop": ["ALL"], "add": ["NET_ADMIN"]}), "capabilities must drop ALL"),
    "no-seccomp": ("5.1-seccomp", "kind/reference", lambda d: pod(d, "Job", "goverse-schema-init")[
        "securityContext"].pop("seccompProfile"), "seccompProfile"),
    "writable-root": ("5.1-read-only-root-fs", "kind/goverse", lambda d: container(d, "StatefulSet", "goverse-etcd")[
        "securityContext"].update(readOnlyRootFilesystem=False), "readOnlyRootFilesystem"),
    "host-network": ("5.1-no-host-access", "kind/reference", lambda d: pod(d, "Deployment", "goverse-inspector")
                     .update(hostNetwork=True), "hostNetwork"),
    "namespace-baseline": ("5.1-restricted-namespace", "kind/reference", lambda d: find(d, "Namespace", "goverse")[
        "metadata"]["labels"].update({"pod-security.kubernetes.io/enforce": "baseline"}), "not restricted"),
    "cluster-admin": ("5.4-service-accounts", "kind/reference", lambda d: d.append({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "x"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "goverse-node", "namespace": "goverse"}]}), "cluster-admin"),
}


def pod(d: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return find(d, kind, name)["spec"]["template"]["spec"]


def container(d: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return pod(d, kind, name)["containers"][0]


def test_every_manifest_check_is_shown_failing() -> None:
    assert {b[0] for b in BREAKS.values()} == set(m.MANIFEST_CHECKS)


@needs_kubectl
@pytest.mark.parametrize("case", sorted(BREAKS))
def test_check_fails_on_broken_overlay(case: str) -> None:
    check_id, overlay, breaks, words = BREAKS[case]
    check = m.MANIFEST_CHECKS[check_id]
    assert not check(overlay, docs(overlay)), "precondition: the intact overlay passes"
    broken = docs(overlay)
    breaks(broken)
    other = "kind/reference" if overlay != "kind/reference" else "kind/goverse"  # an intact companion
    j = m.judge_overlays(check, {overlay: broken, other: docs(other)})
    assert j.verdict == "fail" and words in j.evidence and overlay in j.evidence, j.evidence


@needs_kubectl
def test_production_only_checks_do_not_apply_to_test_overlays() -> None:
    for cid in ("3.2-hpa", "4.1-service-monitors", "4.1-alert-rules"):
        j = m.judge_overlays(m.MANIFEST_CHECKS[cid], {"kind/reference": docs("kind/reference")})
        assert j.verdict == "not-applicable", (cid, j.evidence)


@needs_kubectl
def test_production_overlay_keeps_its_secret_out() -> None:
    assert not any(d["kind"] == "Secret" for d in docs("production/goverse"))
    assert m.core_resources("production/goverse", docs("production/goverse")) == []


def test_judge_overlays_names_overlays_and_counts() -> None:
    def check(name: str, d: list[Any]) -> list[str] | None:
        return None if name.startswith("kind") else (["bad thing"] if name.endswith("goverse") else [])
    j = m.judge_overlays(check, {"kind/x": [], "k3s/reference": [], "production/goverse": []})
    assert j.verdict == "fail" and "production/goverse: bad thing" in j.evidence
    assert j.data["not_applicable"] == ["kind/x"]
    ok = m.judge_overlays(check, {"kind/x": [], "k3s/reference": []})
    assert ok.verdict == "pass" and "not applicable to kind/x" in ok.evidence
    assert m.judge_overlays(check, {"kind/x": []}).verdict == "not-applicable"


def test_unrenderable_overlays_make_manifest_checks_unknown() -> None:
    inputs = StaticInputs(dockerfile_text=None, dockerfile_error="cannot read x",
                          render_errors={"kind/reference": "PlatformError: kubectl not found"})
    results = run_static([c.id for c in catalogue.of_kind("static")], inputs)
    assert {r.verdict for r in results} == {"unknown"}
    assert any("kubectl not found" in r.evidence for r in results)
    assert any("cannot read x" in r.evidence for r in results)


def test_a_crashing_judge_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(name: str, d: list[Any]) -> list[str]:
        raise KeyError("spec")
    monkeypatch.setitem(m.MANIFEST_CHECKS, "3.1-probes", boom)
    from harness.conformance import static

    monkeypatch.setitem(static.STATIC_RUNNERS, "3.1-probes", static._manifest_judge("3.1-probes"))
    r = run_check(catalogue.get("3.1-probes"), StaticInputs(overlays={"kind/reference": []}))
    assert r.verdict == "unknown" and "KeyError" in r.evidence


@needs_kubectl
def test_repository_inputs_are_all_decidable() -> None:
    """Over the real Dockerfile and overlays every static check reaches pass/fail/not-applicable."""
    from harness.conformance.static import load_inputs

    results = run_static([c.id for c in catalogue.of_kind("static")], load_inputs())
    undecided = [(r.id, r.evidence) for r in results if r.verdict == "unknown"]
    assert not undecided
