"""Seed §2–§5 requirements hold on every rendered overlay — and each check is shown able to fail.

One test per property (named after the seed section) runs the check from
``harness.platforms.kubernetes.policy`` over all six overlays; ``test_check_fails_on_broken_manifest``
feeds each check a deliberately broken copy of a rendered document and requires a violation.
"""

from __future__ import annotations

import copy
import functools
import shutil

import pytest

from harness.platforms.kubernetes import netpol, policy, render

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not on PATH")

OVERLAYS = [(p, s) for p in render.PLATFORM_OVERLAYS for s in render.STACKS]
IDS = [f"{p}-{s}" for p, s in OVERLAYS]
over_overlays = pytest.mark.parametrize("platform,stack", OVERLAYS, ids=IDS)


@functools.cache
def rendered(platform: str, stack: str) -> tuple[dict, ...]:
    return tuple(render.kustomize_build(render.overlay_dir(platform, stack)))


def docs(platform: str, stack: str) -> list[dict]:
    return copy.deepcopy(list(rendered(platform, stack)))


def assert_clean(violations: list[str]) -> None:
    assert not violations, "\n".join(violations)


@over_overlays
def test_3_1_probes_present(platform: str, stack: str) -> None:
    assert_clean(policy.check_3_1_probes(docs(platform, stack)))


@over_overlays
def test_3_1_requests_and_limits(platform: str, stack: str) -> None:
    assert_clean(policy.check_3_1_resources(docs(platform, stack)))


@over_overlays
def test_3_1_services_select_pods_and_named_ports(platform: str, stack: str) -> None:
    assert_clean(policy.check_3_1_services(docs(platform, stack)))


@over_overlays
def test_2_4_pod_identity_from_downward_api(platform: str, stack: str) -> None:
    assert_clean(policy.check_3_1_pod_identity(docs(platform, stack)))


@over_overlays
def test_2_2_prestop_delay_within_grace_period(platform: str, stack: str) -> None:
    assert_clean(policy.check_3_1_graceful_termination(docs(platform, stack)))


@over_overlays
def test_3_2_pdb_matches_replicas(platform: str, stack: str) -> None:
    assert_clean(policy.check_3_2_pdb(docs(platform, stack)))


@over_overlays
def test_3_2_hpa_targets_and_floor(platform: str, stack: str) -> None:
    assert_clean(policy.check_3_2_hpa(docs(platform, stack)))


@over_overlays
def test_3_2_network_policies_allow_exactly_the_seed_paths(platform: str, stack: str) -> None:
    paths, open_ports = netpol.allowed_paths(docs(platform, stack))
    assert paths == set(netpol.EDGES), f"extra {paths - netpol.EDGES}, missing {netpol.EDGES - paths}"
    assert open_ports == set(netpol.OPEN_PORTS)
    assert netpol.allows_dns(docs(platform, stack))


@over_overlays
def test_4_1_service_monitors_and_alert_rules(platform: str, stack: str) -> None:
    d = docs(platform, stack)
    assert_clean(policy.check_4_1_monitoring(d))
    if platform == "production":
        assert {x["kind"] for x in d} >= {"ServiceMonitor", "PrometheusRule"}


@over_overlays
def test_5_1_run_as_non_root(platform: str, stack: str) -> None:
    assert_clean(policy.check_5_1_run_as_non_root(docs(platform, stack)))


@over_overlays
def test_5_1_drop_all_capabilities_no_escalation(platform: str, stack: str) -> None:
    assert_clean(policy.check_5_1_drop_all_capabilities(docs(platform, stack)))


@over_overlays
def test_5_1_seccomp_runtime_default(platform: str, stack: str) -> None:
    assert_clean(policy.check_5_1_seccomp_runtime_default(docs(platform, stack)))


@over_overlays
def test_5_1_read_only_root_filesystem(platform: str, stack: str) -> None:
    assert_clean(policy.check_5_1_read_only_root_filesystem(docs(platform, stack)))


@over_overlays
def test_5_1_no_host_namespaces_or_paths(platform: str, stack: str) -> None:
    assert_clean(policy.check_5_1_no_host_access(docs(platform, stack)))


@over_overlays
def test_5_1_namespace_enforces_restricted_standard(platform: str, stack: str) -> None:
    assert_clean(policy.check_5_1_namespace_restricted(docs(platform, stack)))


@over_overlays
def test_5_2_default_deny(platform: str, stack: str) -> None:
    assert_clean(policy.check_5_2_default_deny(docs(platform, stack)))


@over_overlays
def test_5_3_no_literal_credentials(platform: str, stack: str) -> None:
    assert_clean(policy.check_5_3_no_literal_credentials(docs(platform, stack)))


@over_overlays
def test_5_4_serviceaccount_per_component_no_cluster_admin(platform: str, stack: str) -> None:
    assert_clean(policy.check_5_4_service_accounts(docs(platform, stack)))


def test_all_checks_pass_together() -> None:
    for platform, stack in OVERLAYS:
        assert_clean(policy.violations(docs(platform, stack)))


# --- every check can fail --------------------------------------------------------------------------


def find(d: list[dict], kind: str, name: str) -> dict:
    """The object of that kind and name; a generated ConfigMap also by its name before the hash suffix."""
    return next(x for x in d if x["kind"] == kind and (x["metadata"]["name"] == name or (
        kind == "ConfigMap" and x["metadata"]["name"].rsplit("-", 1)[0] == name)))


def container(d: list[dict], kind: str, name: str, i: int = 0) -> dict:
    return find(d, kind, name)["spec"]["template"]["spec"]["containers"][i]


def pod(d: list[dict], kind: str, name: str) -> dict:
    return find(d, kind, name)["spec"]["template"]["spec"]


def _env(c: dict) -> list[dict]:
    return c.setdefault("env", [])


#: case -> (check, how to break a rendered overlay[, which overlay: default production/goverse, the richest])
BREAKS: dict[str, tuple] = {
    "3.1-no-readiness-probe": (policy.check_3_1_probes,
                               lambda d: container(d, "StatefulSet", "goverse-node").pop("readinessProbe")),
    "3.1-probe-on-undeclared-port": (policy.check_3_1_probes, lambda d: container(
        d, "Deployment", "goverse-gate")["livenessProbe"]["httpGet"].update(port="metrics")),
    "3.1-init-container-without-limits": (policy.check_3_1_resources, lambda d: pod(
        d, "StatefulSet", "goverse-node")["initContainers"][0]["resources"].pop("limits")),
    "3.1-service-targets-missing-port": (policy.check_3_1_services, lambda d: find(
        d, "Service", "goverse-gate")["spec"]["ports"][0].update(targetPort="htp")),
    "3.1-statefulset-without-headless-service": (policy.check_3_1_services, lambda d: find(
        d, "StatefulSet", "goverse-node")["spec"].update(serviceName="goverse-gate")),
    "2.4-no-pod-ip": (policy.check_3_1_pod_identity, lambda d: [
        c.update(env=[e for e in c.get("env", []) if e["name"] != "POD_IP"])
        for c in pod(d, "StatefulSet", "goverse-node")["containers"]
        + pod(d, "StatefulSet", "goverse-node").get("initContainers", [])]),
    "2.2-grace-shorter-than-prestop": (policy.check_3_1_graceful_termination, lambda d: pod(
        d, "Deployment", "goverse-gate").update(terminationGracePeriodSeconds=5)),
    "3.2-pdb-blocks-every-eviction": (policy.check_3_2_pdb, lambda d: find(
        d, "PodDisruptionBudget", "goverse-node")["spec"].update(maxUnavailable=0)),
    "3.2-etcd-pdb-loses-quorum": (policy.check_3_2_pdb, lambda d: (
        find(d, "StatefulSet", "goverse-etcd")["spec"].update(replicas=3),
        find(d, "PodDisruptionBudget", "goverse-etcd")["spec"].update(maxUnavailable=2))),
    "3.2-pdb-selects-nothing": (policy.check_3_2_pdb, lambda d: find(
        d, "PodDisruptionBudget", "goverse-gate")["spec"]["selector"]["matchLabels"].update(
        {"app.kubernetes.io/name": "goverse-gat"})),
    "3.2-hpa-min-one": (policy.check_3_2_hpa, lambda d: find(
        d, "HorizontalPodAutoscaler", "goverse-gate")["spec"].update(minReplicas=1)),
    "4.1-alert-missing": (policy.check_4_1_monitoring, lambda d: find(d, "PrometheusRule", "goverse-alerts")[
        "spec"]["groups"][0]["rules"].pop(0)),
    "4.1-servicemonitor-wrong-port": (policy.check_4_1_monitoring, lambda d: find(
        d, "ServiceMonitor", "goverse-gate")["spec"]["endpoints"][0].update(port="metrics")),
    "5.1-root-container": (policy.check_5_1_run_as_non_root, lambda d: pod(
        d, "StatefulSet", "goverse-postgres")["securityContext"].pop("runAsNonRoot")),
    "5.1-init-container-keeps-capabilities": (policy.check_5_1_drop_all_capabilities, lambda d: pod(
        d, "Deployment", "goverse-gate")["initContainers"][0]["securityContext"].update(
        capabilities={"drop": ["ALL"], "add": ["NET_ADMIN"]})),
    "5.1-no-seccomp": (policy.check_5_1_seccomp_runtime_default, lambda d: pod(
        d, "Job", "goverse-schema-init")["securityContext"].pop("seccompProfile")),
    "5.1-writable-root": (policy.check_5_1_read_only_root_filesystem, lambda d: container(
        d, "StatefulSet", "goverse-etcd")["securityContext"].update(readOnlyRootFilesystem=False)),
    "5.1-host-network": (policy.check_5_1_no_host_access, lambda d: pod(
        d, "Deployment", "goverse-inspector").update(hostNetwork=True)),
    "5.1-namespace-not-enforcing": (policy.check_5_1_namespace_restricted, lambda d: find(
        d, "Namespace", "goverse")["metadata"]["labels"].update({"pod-security.kubernetes.io/enforce": "baseline"})),
    "5.2-no-default-deny": (policy.check_5_2_default_deny,
                            lambda d: d.remove(find(d, "NetworkPolicy", "default-deny"))),
    "5.3-literal-password-env": (policy.check_5_3_no_literal_credentials, lambda d: _env(container(
        d, "StatefulSet", "goverse-node")).append({"name": "GOVERSE_POSTGRES_PASSWORD", "value": "hunter2"})),
    "5.3-password-in-configmap": (policy.check_5_3_no_literal_credentials, lambda d: find(
        d, "ConfigMap", "goverse-config")["data"].update(
        {"config.yaml": "version: 1\npostgres:\n  password: hunter2\n"})),
    "5.3-filled-secret-template": (policy.check_5_3_no_literal_credentials, lambda d: find(
        d, "Secret", "goverse-postgres")["stringData"].update({"postgres-password": "hunter2"}), ("kind", "goverse")),
    "5.4-default-service-account": (policy.check_5_4_service_accounts, lambda d: pod(
        d, "Deployment", "goverse-gate").pop("serviceAccountName")),
    "5.4-cluster-admin": (policy.check_5_4_service_accounts, lambda d: d.append({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "x"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "goverse-node", "namespace": "goverse"}]})),
    "5.4-shared-service-account": (policy.check_5_4_service_accounts, lambda d: pod(
        d, "Deployment", "goverse-gate").update(serviceAccountName="goverse-node")),
    "env-service-links-on": (policy.check_env_no_service_links, lambda d: pod(
        d, "StatefulSet", "goverse-node").pop("enableServiceLinks"), ("kind", "reference")),
    "env-reference-before-definition": (policy.check_env_references_defined_earlier, lambda d: _env(container(
        d, "StatefulSet", "goverse-etcd")).insert(0, _env(container(d, "StatefulSet", "goverse-etcd")).pop(
        next(i for i, e in enumerate(_env(container(d, "StatefulSet", "goverse-etcd")))
             if e["name"] == "ETCD_INITIAL_CLUSTER"))), ("kind", "reference")),
    "5.4-token-mounted": (policy.check_5_4_service_accounts, lambda d: pod(
        d, "StatefulSet", "goverse-node").update(automountServiceAccountToken=True)),
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_check_fails_on_broken_manifest(case: str) -> None:
    check, breaks, *rest = BREAKS[case]
    overlay = rest[0] if rest else ("production", "goverse")
    assert not check(docs(*overlay)), "precondition: the intact overlay passes"
    broken = docs(*overlay)
    breaks(broken)
    assert check(broken), f"{case}: the check did not notice"


@pytest.mark.parametrize("case", ["extra-path", "missing-path"])
def test_3_2_network_policy_drift_is_noticed(case: str) -> None:
    d = docs("kind", "reference")
    if case == "extra-path":  # gates may now reach PostgreSQL
        find(d, "NetworkPolicy", "postgres-ingress")["spec"]["ingress"][0]["from"][0]["podSelector"][
            "matchExpressions"][0]["values"].append("goverse-gate")
        find(d, "NetworkPolicy", "gate-egress")["spec"]["egress"][0]["to"][0]["podSelector"][
            "matchExpressions"][0]["values"].append("goverse-postgres")
    else:  # nodes lose etcd
        find(d, "NetworkPolicy", "node-egress")["spec"]["egress"][0]["to"][0]["podSelector"][
            "matchExpressions"][0]["values"].remove("goverse-etcd")
    paths, _ = netpol.allowed_paths(d)
    assert paths != set(netpol.EDGES)
