"""Seed §2.2/§2.4/§3/§4/§5 checks over rendered overlays, built on kubernetes/policy.py and netpol.py.

Why a layer over policy.py instead of new checks: policy.py's functions already encode the seed's
manifest properties (and are shown failing on broken documents in
tests/platforms/kubernetes/test_manifests_properties.py);
what conformance adds is (1) an id per requirement, (2) the judgement over *every* overlay with the
overlay named in each violation, (3) what the seed asks to *exist* (the core resource list, HPAs,
ServiceMonitors, alert rules), which policy.py — a set of consistency checks — does not require, and
(4) not-applicable where a requirement is out of an overlay's scope: Prometheus Operator objects, HPAs
and the Ingress only belong to the production overlay, and production takes its Secret from a secret
manager instead of the template (manifests/overlays/production/platform/kustomization.yaml).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from harness.conformance.model import Judgement, failed, not_applicable, passed
from harness.platforms.kubernetes import netpol, policy

Doc = Mapping[str, Any]
#: overlay name: "<platform>/<stack>", e.g. "production/reference"
Overlays = Mapping[str, list[dict[str, Any]]]
#: (overlay name, documents) -> violations, or None when the check does not apply to that overlay
OverlayCheck = Callable[[str, list[Doc]], "list[str] | None"]

FULL_PLATFORMS = ("production",)
#: component -> workload kind the seed's §3.1 lists, and whether its Service must be headless
CORE_WORKLOADS: dict[str, tuple[str, bool]] = {
    "goverse-etcd": ("StatefulSet", True),
    "goverse-postgres": ("StatefulSet", False),
    "goverse-node": ("StatefulSet", True),
    "goverse-gate": ("Deployment", False),
    "goverse-inspector": ("Deployment", False),
}


def platform_of(overlay: str) -> str:
    return overlay.split("/", 1)[0]


def stack_of(overlay: str) -> str:
    return overlay.split("/", 1)[-1]


def is_full(overlay: str) -> bool:
    return platform_of(overlay) in FULL_PLATFORMS


# --- checks policy.py does not have: existence -------------------------------------------------------


def _services_for(docs: list[Doc], labels: Mapping[str, str]) -> list[Doc]:
    out = []
    for d in docs:
        sel = d.get("spec", {}).get("selector") if d.get("kind") == "Service" else None
        if sel and all(labels.get(k) == v for k, v in sel.items()):
            out.append(d)
    return out


def core_resources(overlay: str, docs: list[Doc]) -> list[str]:
    """Namespace, ConfigMap, the credentials Secret (outside production), and for etcd, PostgreSQL,
    nodes, gates and inspector: the workload of the seed's kind and a Service selecting its pods
    (headless for etcd and nodes)."""
    out = []
    kinds = {d.get("kind") for d in docs}
    for kind in ("Namespace", "ConfigMap"):
        if kind not in kinds:
            out.append(f"no {kind}")
    if not is_full(overlay) and "Secret" not in kinds:
        out.append("no Secret (the credentials template)")
    workloads = {policy.app_name(w): w for w in policy.workloads(docs)}
    for app, (kind, headless) in CORE_WORKLOADS.items():
        w = workloads.get(app)
        if w is None:
            out.append(f"no workload for {app}")
            continue
        if w["kind"] != kind:
            out.append(f"{policy.ident(w)}: the seed asks for a {kind}")
        services = _services_for(docs, policy.pod_labels(w))
        if not services:
            out.append(f"{app}: no Service selects its pods")
        elif headless and not any(s["spec"].get("clusterIP") == "None" for s in services):
            out.append(f"{app}: no headless Service (clusterIP: None) for stable pod DNS")
    return out


#: production runs at least this many nodes and gates (an HPA may not go lower)
HA_FLOOR = 3


def hpa(overlay: str, docs: list[Doc]) -> list[str] | None:
    """policy.check_3_2_hpa, plus: in production an HPA for nodes and for gates with a minimum of at
    least HA_FLOOR, and no `replicas` on an autoscaled workload."""
    hpas = [d for d in docs if d.get("kind") == "HorizontalPodAutoscaler"]
    if not hpas and not is_full(overlay):
        return None
    out = list(policy.check_3_2_hpa(docs))
    by_target = {(h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"]): h for h in hpas}
    workloads = {(w["kind"], w["metadata"]["name"]): w for w in policy.workloads(docs)}
    if is_full(overlay):
        for target in (("StatefulSet", "goverse-node"), ("Deployment", "goverse-gate")):
            if target not in by_target:
                out.append(f"no HorizontalPodAutoscaler for {target[0]}/{target[1]}")
    for target, h in by_target.items():
        w = workloads.get(target)
        lo, hi = h["spec"].get("minReplicas", 1), h["spec"].get("maxReplicas", 0)
        if lo > hi:
            out.append(f"{policy.ident(h)}: minReplicas {lo} > maxReplicas {hi}")
        if is_full(overlay) and lo < HA_FLOOR:
            out.append(f"{policy.ident(h)}: minReplicas {lo} is below the production floor of {HA_FLOOR}")
        # An autoscaled workload must not carry `replicas`: every apply would reset the HPA's scale.
        if w is not None and "replicas" in w["spec"]:
            out.append(f"{policy.ident(w)} sets replicas ({w['spec']['replicas']}) although {policy.ident(h)} "
                       "manages its scale: every apply resets it")
    return out


def network_policies(overlay: str, docs: list[Doc]) -> list[str]:
    """Default deny plus exactly netpol.EDGES / OPEN_PORTS, and DNS egress."""
    out = list(policy.check_5_2_default_deny(docs))
    paths, open_ports = netpol.allowed_paths(docs)
    extra, missing = sorted(paths - netpol.EDGES), sorted(netpol.EDGES - paths)
    if extra:
        out.append("allows paths the stack does not need: " + ", ".join("→".join(p) for p in extra))
    if missing:
        out.append("blocks paths the stack needs: " + ", ".join("→".join(p) for p in missing))
    if open_ports != set(netpol.OPEN_PORTS):
        out.append(f"ports open to any source are {sorted(open_ports)}, expected {sorted(netpol.OPEN_PORTS)}")
    if not netpol.allows_dns(docs):
        out.append("no egress rule allows DNS (UDP and TCP 53) for every pod")
    return out


def _monitored_apps(docs: list[Doc]) -> set[str]:
    """Components whose pods a ServiceMonitor reaches (ServiceMonitor -> Service labels -> pods)."""
    services = [d for d in docs if d.get("kind") == "Service"]
    out = set()
    for sm in (d for d in docs if d.get("kind") == "ServiceMonitor"):
        for svc in services:
            if policy.selector_matches(sm["spec"].get("selector"), svc["metadata"].get("labels", {}) or {}):
                for w in policy.workloads(docs):
                    if _services_for([svc], policy.pod_labels(w)):
                        out.add(policy.app_name(w))
    return out


def service_monitors(overlay: str, docs: list[Doc]) -> list[str] | None:
    """In production: ServiceMonitors reach nodes, gates and — for the reference stack, whose inspector
    serves /metrics (Goverse v0.1.1's has none, contract §3) — the inspector; every endpoint scrapes a
    named port of a Service it selects (policy.check_4_1_monitoring)."""
    has_sm = any(d.get("kind") == "ServiceMonitor" for d in docs)
    if not has_sm and not is_full(overlay):
        return None
    out = [v for v in policy.check_4_1_monitoring(docs) if v.startswith("ServiceMonitor/")]
    wanted = {"goverse-node", "goverse-gate"} | ({"goverse-inspector"} if stack_of(overlay) == "reference" else set())
    for app in sorted(wanted - _monitored_apps(docs)):
        out.append(f"no ServiceMonitor scrapes {app}")
    return out


def alert_rules(overlay: str, docs: list[Doc]) -> list[str] | None:
    has_rule = any(d.get("kind") == "PrometheusRule" for d in docs)
    if not has_rule and not is_full(overlay):
        return None
    if not has_rule:
        return ["no PrometheusRule (the seed's alerts)"]
    return [v for v in policy.check_4_1_monitoring(docs) if v.startswith("PrometheusRule")]


def _from_policy(fn: Callable[[Iterable[Doc]], list[str]]) -> OverlayCheck:
    def run(overlay: str, docs: list[Doc]) -> list[str]:
        return list(fn(docs))
    run.__doc__ = fn.__doc__
    return run


MANIFEST_CHECKS: dict[str, OverlayCheck] = {
    "2.2-prestop-grace": _from_policy(policy.check_3_1_graceful_termination),
    "2.4-downward-api-identity": _from_policy(policy.check_3_1_pod_identity),
    "3.1-core-resources": core_resources,
    "3.1-probes": _from_policy(policy.check_3_1_probes),
    "3.1-resources": _from_policy(policy.check_3_1_resources),
    "3.1-services": _from_policy(policy.check_3_1_services),
    "3.2-pdb": _from_policy(policy.check_3_2_pdb),
    "3.2-hpa": hpa,
    "3.2-network-policies": network_policies,
    "4.1-service-monitors": service_monitors,
    "4.1-alert-rules": alert_rules,
    "5.1-run-as-non-root": _from_policy(policy.check_5_1_run_as_non_root),
    "5.1-drop-capabilities": _from_policy(policy.check_5_1_drop_all_capabilities),
    "5.1-seccomp": _from_policy(policy.check_5_1_seccomp_runtime_default),
    "5.1-read-only-root-fs": _from_policy(policy.check_5_1_read_only_root_filesystem),
    "5.1-no-host-access": _from_policy(policy.check_5_1_no_host_access),
    "5.1-restricted-namespace": _from_policy(policy.check_5_1_namespace_restricted),
    "5.3-credentials-from-secrets": _from_policy(policy.check_5_3_no_literal_credentials),
    "5.4-service-accounts": _from_policy(policy.check_5_4_service_accounts),
}

MAX_LISTED = 6


def judge_overlays(check: OverlayCheck, overlays: Overlays) -> Judgement:
    """One verdict over every overlay: fail names each overlay's violations; not-applicable only when
    the check applies to none of them."""
    violations: dict[str, list[str]] = {}
    applied: list[str] = []
    skipped: list[str] = []
    for name, docs in sorted(overlays.items()):
        found = check(name, list(docs))
        if found is None:
            skipped.append(name)
            continue
        applied.append(name)
        if found:
            violations[name] = found
    data: dict[str, Any] = {"overlays": applied, "not_applicable": skipped, "violations": violations}
    if not applied:
        return not_applicable(f"applies to none of {', '.join(skipped) or 'no overlays'}", **data)
    if violations:
        flat = [f"{o}: {v}" for o, vs in violations.items() for v in vs]
        more = f" (+{len(flat) - MAX_LISTED} more)" if len(flat) > MAX_LISTED else ""
        return failed(f"{len(flat)} violation(s) in {', '.join(violations)}: " + "; ".join(flat[:MAX_LISTED]) + more,
                      **data)
    tail = f"; not applicable to {', '.join(skipped)}" if skipped else ""
    return passed(f"holds on {len(applied)} overlay(s): {', '.join(applied)}{tail}", **data)
