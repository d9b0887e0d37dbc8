"""Seed §3/§4/§5 requirements as checks over rendered manifests (pure: documents in, violations out).

Why functions that return violations rather than asserts: the same checks run in the test-suite over
every overlay, in the tests that feed them deliberately broken documents (so each check is shown able to
fail), and before a deploy (``KubernetesPlatform`` refuses manifests that break them). Each function is
named after the seed section it enforces and returns human-readable strings naming the object and the
field, so a failure says what to fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import yaml

Doc = Mapping[str, Any]

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
#: components that run Goverse processes (the others are etcd, PostgreSQL and the schema Job)
GOVERSE_COMPONENTS = ("goverse-node", "goverse-gate", "goverse-inspector")
LONG_RUNNING = ("goverse-node", "goverse-gate", "goverse-inspector", "goverse-etcd", "goverse-postgres")
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|API_?KEY", re.I)
#: names that match SECRET_NAME but are not credentials (etcd's token only tells clusters apart)
NOT_SECRET_ENV = frozenset({"ETCD_INITIAL_CLUSTER_TOKEN"})
SEED_ALERTS = ("GoverseNodeDown", "HighObjectCount", "HighMethodCallErrorRate")


def ident(doc: Doc) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def workloads(docs: Iterable[Doc]) -> Iterator[Doc]:
    return (d for d in docs if d.get("kind") in WORKLOAD_KINDS)


def pod_spec(doc: Doc) -> Mapping[str, Any]:
    return doc["spec"]["template"]["spec"]


def pod_labels(doc: Doc) -> Mapping[str, str]:
    return doc["spec"]["template"].get("metadata", {}).get("labels", {}) or {}


def app_name(doc: Doc) -> str:
    return pod_labels(doc).get("app.kubernetes.io/name", doc["metadata"]["name"])


def containers(doc: Doc, init: bool = True) -> Iterator[tuple[str, Mapping[str, Any]]]:
    spec = pod_spec(doc)
    for c in spec.get("containers", []):
        yield "container", c
    if init:
        for c in spec.get("initContainers", []) or []:
            yield "initContainer", c


def replicas(doc: Doc, docs: Iterable[Doc] = ()) -> int:
    """The replica count; for an autoscaled workload without `replicas`, its HPA's minReplicas (the
    count it runs at, at least) when the HPA is among ``docs``."""
    spec = doc.get("spec", {})
    if "replicas" not in spec:
        for h in docs:
            ref = h.get("spec", {}).get("scaleTargetRef", {}) if h.get("kind") == "HorizontalPodAutoscaler" else {}
            if (ref.get("kind"), ref.get("name")) == (doc.get("kind"), doc.get("metadata", {}).get("name")):
                return int(h["spec"].get("minReplicas", 1))
    return int(spec.get("replicas", 1))


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels + matchExpressions); None/{} matches all."""
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _service_selects(svc: Doc, labels: Mapping[str, str]) -> bool:
    sel = svc.get("spec", {}).get("selector")
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


def _port_names(doc: Doc) -> set[str]:
    return {p["name"] for _, c in containers(doc, init=False) for p in c.get("ports", []) or [] if p.get("name")}


# --- §3.1 core resources ---------------------------------------------------------------------------


def check_3_1_probes(docs: Iterable[Doc]) -> list[str]:
    """Every long-running container has liveness and readiness probes, on a port it declares."""
    out = []
    for w in workloads(docs):
        if w["kind"] == "Job":
            continue
        names = _port_names(w)
        for _, c in containers(w, init=False):
            for probe in ("livenessProbe", "readinessProbe"):
                p = c.get(probe)
                if not p:
                    out.append(f"{ident(w)} container {c['name']}: no {probe}")
                    continue
                port = (p.get("httpGet") or p.get("tcpSocket") or {}).get("port")
                if isinstance(port, str) and port not in names:
                    out.append(f"{ident(w)} container {c['name']}: {probe} uses port {port!r}, not declared")
    return out


def check_3_1_resources(docs: Iterable[Doc]) -> list[str]:
    """Requests and limits for cpu and memory on every container, init containers included."""
    out = []
    for w in workloads(docs):
        for what, c in containers(w):
            res = c.get("resources") or {}
            for section in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(section) or {}):
                        out.append(f"{ident(w)} {what} {c['name']}: no {section}.{r}")
    return out


def check_3_1_services(docs: Iterable[Doc]) -> list[str]:
    """Each Service selects some workload's pods and every targetPort name exists on them; every
    StatefulSet's serviceName is a headless Service that selects its pods."""
    docs = list(docs)
    ws = [w for w in workloads(docs) if w["kind"] != "Job"]
    services = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Service"}
    out = []
    for name, svc in services.items():
        selected = [w for w in ws if _service_selects(svc, pod_labels(w))]
        if not selected:
            out.append(f"Service/{name}: selects no workload's pods")
            continue
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort")
            if isinstance(target, str) and not all(target in _port_names(w) for w in selected):
                out.append(f"Service/{name}: targetPort {target!r} is not a port name of {ident(selected[0])}")
    for w in ws:
        if w["kind"] != "StatefulSet":
            continue
        governing = services.get(w["spec"].get("serviceName", ""))
        if governing is None:
            out.append(f"{ident(w)}: serviceName {w['spec'].get('serviceName')!r} is not a Service here")
        elif governing["spec"].get("clusterIP") != "None" or not _service_selects(governing, pod_labels(w)):
            out.append(f"{ident(w)}: Service/{governing['metadata']['name']} is not headless over its pods")
    return out


def check_3_1_pod_identity(docs: Iterable[Doc]) -> list[str]:
    """Seed §2.4: Goverse pods learn their name and IP from the downward API (in some container)."""
    out = []
    for w in workloads(docs):
        if app_name(w) not in GOVERSE_COMPONENTS:
            continue
        fields = {
            e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
            for _, c in containers(w) for e in c.get("env", []) or []
            if e.get("valueFrom", {}).get("fieldRef")
        }
        if fields.get("POD_NAME") != "metadata.name" or fields.get("POD_IP") != "status.podIP":
            out.append(f"{ident(w)}: POD_NAME/POD_IP not injected from metadata.name/status.podIP")
    return out


def check_3_1_graceful_termination(docs: Iterable[Doc]) -> list[str]:
    """Seed §2.2: nodes and gates have a preStop delay, and the grace period outlasts it."""
    out = []
    for w in workloads(docs):
        if app_name(w) not in ("goverse-node", "goverse-gate"):
            continue
        grace = pod_spec(w).get("terminationGracePeriodSeconds")
        for _, c in containers(w, init=False):
            pre = (c.get("lifecycle") or {}).get("preStop") or {}
            # the `sleep` action only: `exec: sleep N` fails in distroless images (no sleep binary)
            secs = (pre.get("sleep") or {}).get("seconds")
            delay = int(secs) if isinstance(secs, int) and secs > 0 else None
            if delay is None:
                out.append(f"{ident(w)} container {c['name']}: no preStop delay (lifecycle.preStop.sleep.seconds)")
            elif grace is None or grace <= delay + 10:
                out.append(f"{ident(w)}: terminationGracePeriodSeconds {grace} leaves < 10 s after preStop {delay} s")
    return out


# --- §3.2 advanced resources -----------------------------------------------------------------------


def check_3_2_pdb(docs: Iterable[Doc]) -> list[str]:
    """Every multi-replica workload has exactly one PodDisruptionBudget over exactly its pods, allowing
    one eviction and keeping at least one pod (for etcd: a quorum); no PDB selects nothing."""
    docs = list(docs)
    ws = [w for w in workloads(docs) if w["kind"] != "Job"]
    pdbs = [d for d in docs if d.get("kind") == "PodDisruptionBudget"]
    out = []
    for pdb in pdbs:
        sel = pdb["spec"].get("selector")
        hits = [w for w in ws if selector_matches(sel, pod_labels(w))]
        if len(hits) != 1:
            out.append(f"{ident(pdb)}: selects {len(hits)} workloads, expected exactly 1")
    for w in ws:
        n = replicas(w, docs)
        mine = [p for p in pdbs if selector_matches(p["spec"].get("selector"), pod_labels(w))]
        if n < 2:
            continue
        if len(mine) != 1:
            out.append(f"{ident(w)}: {n} replicas but {len(mine)} PodDisruptionBudgets")
            continue
        spec = mine[0]["spec"]
        if "minAvailable" in spec:
            min_avail = _abs_count(spec["minAvailable"], n)
        else:
            min_avail = n - _abs_count(spec.get("maxUnavailable", 0), n)
        floor = n // 2 + 1 if app_name(w) == "goverse-etcd" else 1
        if not floor <= min_avail <= n - 1:
            out.append(f"{ident(w)}: PDB keeps {min_avail} of {n} available; need {floor}..{n - 1}")
    return out


def _abs_count(value: int | str, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return int(total * int(value[:-1]) / 100 + 0.999999)
    return int(value)


def check_3_2_hpa(docs: Iterable[Doc]) -> list[str]:
    """HPAs target an existing workload and never scale below its HA floor (2)."""
    docs = list(docs)
    names = {(w["kind"], w["metadata"]["name"]) for w in workloads(docs)}
    out = []
    for h in (d for d in docs if d.get("kind") == "HorizontalPodAutoscaler"):
        ref = h["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) not in names:
            out.append(f"{ident(h)}: targets missing {ref['kind']}/{ref['name']}")
        if h["spec"].get("minReplicas", 1) < 2:
            out.append(f"{ident(h)}: minReplicas below 2 defeats the PodDisruptionBudget")
    return out


# --- §4.1 monitoring -------------------------------------------------------------------------------


def check_4_1_monitoring(docs: Iterable[Doc]) -> list[str]:
    """ServiceMonitors scrape a named port of a Service they select; the seed's alerts all exist and
    every alert has a severity and a summary."""
    docs = list(docs)
    services = [d for d in docs if d.get("kind") == "Service"]
    out = []
    for sm in (d for d in docs if d.get("kind") == "ServiceMonitor"):
        sel = sm["spec"].get("selector")
        hits = [s for s in services if selector_matches(sel, s["metadata"].get("labels", {}))]
        if not hits:
            out.append(f"{ident(sm)}: selects no Service")
        for ep in sm["spec"].get("endpoints", []):
            if hits and not any(ep.get("port") in {p.get("name") for p in s["spec"]["ports"]} for s in hits):
                out.append(f"{ident(sm)}: port {ep.get('port')!r} is not a port of the selected Services")
    rules = [r for d in docs if d.get("kind") == "PrometheusRule"
             for g in d["spec"].get("groups", []) for r in g.get("rules", [])]
    if rules:
        alerts = {r.get("alert") for r in rules}
        for name in SEED_ALERTS:
            if name not in alerts:
                out.append(f"PrometheusRule: seed §4.1 alert {name} missing")
        for r in rules:
            described = r.get("labels", {}).get("severity") and r.get("annotations", {}).get("summary")
            if "alert" in r and not described:
                out.append(f"PrometheusRule: alert {r['alert']} lacks a severity label or a summary")
    return out


# --- §5.1 pod security -----------------------------------------------------------------------------


def _effective(pod: Mapping[str, Any], c: Mapping[str, Any], key: str) -> Any:
    return (c.get("securityContext") or {}).get(key, (pod.get("securityContext") or {}).get(key))


def check_5_1_run_as_non_root(docs: Iterable[Doc]) -> list[str]:
    out = []
    for w in workloads(docs):
        pod = pod_spec(w)
        for what, c in containers(w):
            if _effective(pod, c, "runAsNonRoot") is not True:
                out.append(f"{ident(w)} {what} {c['name']}: runAsNonRoot is not true")
            if _effective(pod, c, "runAsUser") == 0:
                out.append(f"{ident(w)} {what} {c['name']}: runAsUser 0")
    return out


def check_5_1_drop_all_capabilities(docs: Iterable[Doc]) -> list[str]:
    out = []
    for w in workloads(docs):
        for what, c in containers(w):
            caps = (c.get("securityContext") or {}).get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []) or caps.get("add"):
                out.append(f"{ident(w)} {what} {c['name']}: capabilities must drop ALL and add none")
            if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False:
                out.append(f"{ident(w)} {what} {c['name']}: allowPrivilegeEscalation is not false")
            if (c.get("securityContext") or {}).get("privileged"):
                out.append(f"{ident(w)} {what} {c['name']}: privileged")
    return out


def check_5_1_seccomp_runtime_default(docs: Iterable[Doc]) -> list[str]:
    out = []
    for w in workloads(docs):
        pod = pod_spec(w)
        for what, c in containers(w):
            prof = _effective(pod, c, "seccompProfile") or {}
            if prof.get("type") not in ("RuntimeDefault", "Localhost"):
                out.append(f"{ident(w)} {what} {c['name']}: seccompProfile is not RuntimeDefault")
    return out


def check_5_1_read_only_root_filesystem(docs: Iterable[Doc]) -> list[str]:
    out = []
    for w in workloads(docs):
        for what, c in containers(w):
            if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
                out.append(f"{ident(w)} {what} {c['name']}: readOnlyRootFilesystem is not true")
    return out


def check_5_1_no_host_access(docs: Iterable[Doc]) -> list[str]:
    out = []
    for w in workloads(docs):
        pod = pod_spec(w)
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(key):
                out.append(f"{ident(w)}: {key}")
        for v in pod.get("volumes", []) or []:
            if "hostPath" in v:
                out.append(f"{ident(w)}: hostPath volume {v['name']}")
    return out


def check_5_1_namespace_restricted(docs: Iterable[Doc]) -> list[str]:
    """The namespace enforces the restricted Pod Security Standard (admission backs the checks above)."""
    out = []
    for ns in (d for d in docs if d.get("kind") == "Namespace"):
        labels = ns["metadata"].get("labels", {}) or {}
        if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
            out.append(f"{ident(ns)}: pod-security.kubernetes.io/enforce is not restricted")
    return out


# --- §5.2 network policy ---------------------------------------------------------------------------


def check_5_2_default_deny(docs: Iterable[Doc]) -> list[str]:
    """A policy selects every pod for both ingress and egress and allows nothing."""
    for d in docs:
        if d.get("kind") != "NetworkPolicy":
            continue
        spec = d["spec"]
        if (not spec.get("podSelector") and set(spec.get("policyTypes", [])) == {"Ingress", "Egress"}
                and not spec.get("ingress") and not spec.get("egress")):
            return []
    return ["no default-deny NetworkPolicy (podSelector {}, Ingress+Egress, no rules)"]


# --- §5.3 secrets ----------------------------------------------------------------------------------


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, value


def check_5_3_no_literal_credentials(docs: Iterable[Doc]) -> list[str]:
    """No credential is written in a manifest: secret-looking env vars come from a Secret (or name a
    file), ConfigMaps hold no password, and Secret templates leave secret values empty."""
    out = []
    for d in docs:
        kind = d.get("kind")
        if kind in WORKLOAD_KINDS:
            for what, c in containers(d):
                for e in c.get("env", []) or []:
                    if (not SECRET_NAME.search(e["name"]) or e["name"].endswith("_FILE")
                            or e["name"] in NOT_SECRET_ENV):
                        continue
                    if "value" in e or "secretKeyRef" not in (e.get("valueFrom") or {}):
                        out.append(f"{ident(d)} {what} {c['name']}: env {e['name']} is not from a Secret")
        elif kind == "ConfigMap":
            for key, text in (d.get("data") or {}).items():
                if SECRET_NAME.search(key):
                    out.append(f"{ident(d)}: key {key!r} looks like a credential")
                try:
                    parsed = yaml.safe_load(text) if key.endswith((".yaml", ".yml")) else None
                except yaml.YAMLError:
                    parsed = None
                for path, value in _walk(parsed):
                    leaf = path.rsplit(".", 1)[-1]
                    if SECRET_NAME.search(leaf) and not leaf.endswith("_file") and value not in (None, ""):
                        out.append(f"{ident(d)}: {key}:{path} holds a literal credential")
        elif kind == "Secret":
            for section in ("stringData", "data"):
                for key, value in (d.get(section) or {}).items():
                    if SECRET_NAME.search(key) and value not in (None, ""):
                        out.append(f"{ident(d)}: {section}.{key} is filled in the manifest")
    return out


# --- §5.4 RBAC ---------------------------------------------------------------------------------------


def check_5_4_service_accounts(docs: Iterable[Doc]) -> list[str]:
    """Each component runs under its own ServiceAccount (defined here, never ``default``), mounts no
    API token unless it is granted a Role, and no binding grants cluster-admin or wildcard rights."""
    docs = list(docs)
    sas = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ServiceAccount"}
    bound = {s["name"] for d in docs if d.get("kind") in ("RoleBinding", "ClusterRoleBinding")
             for s in d.get("subjects", []) or [] if s.get("kind") == "ServiceAccount"}
    out = []
    seen: dict[str, str] = {}
    for w in workloads(docs):
        pod = pod_spec(w)
        sa = pod.get("serviceAccountName", "default")
        if sa == "default" or sa not in sas:
            out.append(f"{ident(w)}: serviceAccountName {sa!r} is the default or not defined here")
        if sa in seen and seen[sa] != app_name(w):
            out.append(f"{ident(w)}: shares ServiceAccount {sa} with {seen[sa]}")
        seen[sa] = app_name(w)
        automount = pod.get("automountServiceAccountToken", (sas.get(sa) or {}).get("automountServiceAccountToken"))
        if sa not in bound and automount is not False:
            out.append(f"{ident(w)}: mounts an API token it has no use for")
    for d in docs:
        kind = d.get("kind")
        if kind in ("RoleBinding", "ClusterRoleBinding") and d["roleRef"]["name"] in ("cluster-admin", "admin", "edit"):
            out.append(f"{ident(d)}: binds {d['roleRef']['name']}")
        if kind == "ClusterRoleBinding":
            out.append(f"{ident(d)}: cluster-wide binding; components need none")
        if kind in ("Role", "ClusterRole"):
            for rule in d.get("rules", []) or []:
                if "*" in (rule.get("verbs") or []) or "*" in (rule.get("resources") or []):
                    out.append(f"{ident(d)}: wildcard rule {rule}")
    return out


_ENV_REF = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def check_env_no_service_links(docs: Iterable[Doc]) -> list[str]:
    """Every pod template turns service links off: the Service ``goverse-postgres`` would otherwise inject
    ``GOVERSE_POSTGRES_PORT=tcp://…`` into every pod, which collides with the stack's own ``GOVERSE_*``
    settings (found on a real cluster: every node, gate and inspector crash-looped)."""
    return [f"{ident(d)}: enableServiceLinks is not false" for d in workloads(docs)
            if pod_spec(d).get("enableServiceLinks") is not False]


def check_env_references_defined_earlier(docs: Iterable[Doc]) -> list[str]:
    """A ``$(VAR)`` in an env value names a variable defined *earlier* in the same container: Kubernetes
    expands only earlier entries and leaves the text as is otherwise (etcd then refused its own name)."""
    out = []
    for d in workloads(docs):
        for _kind, c in containers(d):
            cname = c.get("name", "?")
            seen: set[str] = set()
            for e in c.get("env", []) or []:
                for ref in _ENV_REF.findall(str(e.get("value", ""))):
                    if ref not in seen:
                        out.append(f"{ident(d)} container {cname}: env {e['name']} uses $({ref}) before it is defined")
                seen.add(e["name"])
    return out


ALL_CHECKS = {
    "3.1 probes": check_3_1_probes,
    "3.1 resources": check_3_1_resources,
    "3.1 services": check_3_1_services,
    "3.1 pod identity": check_3_1_pod_identity,
    "3.1 graceful termination": check_3_1_graceful_termination,
    "3.2 pdb": check_3_2_pdb,
    "3.2 hpa": check_3_2_hpa,
    "4.1 monitoring": check_4_1_monitoring,
    "5.1 run as non-root": check_5_1_run_as_non_root,
    "5.1 drop all capabilities": check_5_1_drop_all_capabilities,
    "5.1 seccomp": check_5_1_seccomp_runtime_default,
    "5.1 read-only root fs": check_5_1_read_only_root_filesystem,
    "5.1 no host access": check_5_1_no_host_access,
    "5.1 restricted namespace": check_5_1_namespace_restricted,
    "5.2 default deny": check_5_2_default_deny,
    "5.3 no literal credentials": check_5_3_no_literal_credentials,
    "5.4 service accounts": check_5_4_service_accounts,
    "env: no service links": check_env_no_service_links,
    "env: references defined earlier": check_env_references_defined_earlier,
}


def violations(docs: Iterable[Doc]) -> list[str]:
    """Every check over ``docs``; each violation prefixed with its seed section."""
    docs = list(docs)
    return [f"seed §{name}: {v}" for name, check in ALL_CHECKS.items() for v in check(docs)]
