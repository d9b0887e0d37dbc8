"""Ad-hoc pods (pure): the pod, config and NetworkPolicies of an extra node, gate or inspector.

Why pure and apart from ``adhoc.py``: what an ad-hoc pod looks like decides what a conformance check
sees (its environment, its config, how it is stopped), so it is built from data — the stack's own pod
template read from the cluster — and tested without a cluster (tests/platforms/kubernetes/test_k8s_adhocspec.py).

An ad-hoc pod is the stack's pod for that component with these differences, each for a reason:

- its own config (a ConfigMap of the harness, mounted at :data:`CONFIG_DIR`), which names its own
  etcd prefix, database and listen addresses, like a local ad-hoc process's ``--config``;
- no ``GOVERSE_*`` from the template (the local ad-hoc process does not inherit the stack's either:
  the checks set exactly the variables they test), but ``LOG_FORMAT``, ``LOG_LEVEL``,
  ``REFSTACK_BUGS`` and the downward API's ``POD_*`` stay;
- the PostgreSQL password as a mounted file (the Secret the nodes use) named in the config, and an
  environment value equal to the password as a ``secretKeyRef`` rather than a literal (the pod
  object is saved as evidence; a Secret's value never is);
- ``restartPolicy: Never``, no probes and no ``preStop``: the harness, not the kubelet, decides when
  it stops, and its exit code stays in the pod's status;
- labels: the run's (teardown removes it with the namespace) and ``app.kubernetes.io/name:
  goverse-adhoc`` (never the stack's name: the stack's Services and controllers must not pick it up).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from harness.platforms.base import GateAddr, InspectorAddr, NodeAddr, StackSpec
from harness.platforms.kubernetes import naming, stackconfig

ADHOC_NAME = "goverse-adhoc"
ADHOC_LABEL = "goverse-harness/adhoc"
CONFIG_DIR = "/etc/goverse-adhoc"
SECRETS_DIR = "/etc/goverse-secrets"
PASSWORD_FILE = f"{SECRETS_DIR}/postgres-password"
PG_SECRET = "goverse-postgres"
#: environment the template keeps (besides POD_* from the downward API)
KEPT_ENV = ("LOG_FORMAT", "LOG_LEVEL", "REFSTACK_BUGS", "GOMEMLIMIT", "PYTHONUNBUFFERED")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?")


def pod_name(name: str) -> str:
    """The pod (and ConfigMap) name of ad-hoc instance ``name``: a DNS label, refused otherwise."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"ad-hoc instance name {name!r}: must be a DNS label (a-z, 0-9, '-', at most 52)")
    return name


def config_path(cm: str) -> str:
    """The ``--config`` path of a config held in ConfigMap ``cm`` (one file per ConfigMap)."""
    return f"{CONFIG_DIR}/{cm}.yaml"


def config_map_of(args: Sequence[str]) -> str | None:
    """The ConfigMap behind a ``--config`` path in ``args`` (None: no ad-hoc config given)."""
    for i, a in enumerate(args[:-1]):
        if a == "--config" and args[i + 1].startswith(CONFIG_DIR + "/") and args[i + 1].endswith(".yaml"):
            return args[i + 1][len(CONFIG_DIR) + 1:-len(".yaml")]
    return None


def adhoc_config(spec: StackSpec, prefix: str, database: str, user: str, nodes: Sequence[NodeAddr] = (),
                 gates: Sequence[GateAddr] = (), inspector: InspectorAddr | None = None,
                 etcd: list[str] | None = None, pg: tuple[str, int] | None = None) -> dict[str, Any]:
    """The reference stack's config for an ad-hoc cluster in pods: the run's shared document with its
    own prefix and database, the password as the mounted Secret file, and entries that listen on every
    interface without an advertise address — a pod advertises ``POD_IP`` and the port (as the stack's
    pods do), which no config can know before the pod exists. The hosts in ``nodes``/``gates``/
    ``inspector`` are ignored for that reason; their ports are kept."""
    doc = stackconfig.reference_config(spec)
    doc["cluster"]["etcd"]["prefix"] = prefix
    if etcd is not None:
        doc["cluster"]["etcd"]["endpoints"] = list(etcd)
    doc["postgres"].update(database=database, user=user, password_file=PASSWORD_FILE)
    if pg is not None:
        doc["postgres"]["host"], doc["postgres"]["port"] = pg[0], int(pg[1])
    doc["nodes"] = [{"id": n.id, "grpc_addr": f"0.0.0.0:{n.api_port}", "http_addr": f"0.0.0.0:{n.ops_port}"}
                    for n in nodes]
    doc["gates"] = [{"id": g.id, "grpc_addr": f"0.0.0.0:{g.grpc_port}", "http_addr": f"0.0.0.0:{g.http_port}",
                     "ops_addr": f"0.0.0.0:{g.ops_port}"} for g in gates]
    if inspector is not None:
        doc["inspector"] = {"http_addr": f"0.0.0.0:{inspector.http_port}"}
    return doc


def _env(template_env: Sequence[Mapping[str, Any]], overrides: Mapping[str, str | None],
         secret_values: Mapping[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """The container's environment: the kept template entries, then the overrides (``None`` removes a
    variable; a value listed in ``secret_values`` becomes a ``secretKeyRef`` to (Secret, key))."""
    out: dict[str, dict[str, Any]] = {}
    for e in template_env:
        name = str(e.get("name", ""))
        if name.startswith("POD_") or name in KEPT_ENV:
            out[name] = copy.deepcopy(dict(e))
    for name, value in overrides.items():
        if value is None:
            out.pop(name, None)
        elif value in secret_values:
            secret, key = secret_values[value]
            out[name] = {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        else:
            out[name] = {"name": name, "value": value}
    return list(out.values())


def adhoc_pod(template: Mapping[str, Any], component: str, name: str, namespace: str, run_id: str, args: Sequence[str],
              env: Mapping[str, str | None], grace_s: int,
              secret_values: Mapping[str, tuple[str, str]] = {}) -> dict[str, Any]:  # noqa: B006 - read only
    """The Pod of ad-hoc instance ``name`` from the ``component``'s workload pod ``template``
    (``spec.template`` of its StatefulSet/Deployment, as the API returns it)."""
    pod = pod_name(name)
    spec = copy.deepcopy(dict(template.get("spec") or {}))
    containers = spec.get("containers") or []
    main = next((c for c in containers if c.get("name") == component), containers[0] if containers else None)
    if main is None:
        raise ValueError(f"the {component} pod template has no container")
    cm = config_map_of(list(args))
    main = copy.deepcopy(main)
    main["args"] = [component, *args]
    main["env"] = _env(main.get("env") or [], env, secret_values)
    for key in ("livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "ports"):
        main.pop(key, None)
    mounts = [m for m in main.get("volumeMounts") or [] if m.get("name") not in ("config", "secrets", "adhoc-config")]
    volumes = [v for v in spec.get("volumes") or [] if v.get("name") not in ("config", "secrets", "adhoc-config")]
    mounts.append({"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True})
    items = [{"key": "postgres-password", "path": "postgres-password"}]
    volumes.append({"name": "secrets", "secret": {"secretName": PG_SECRET, "defaultMode": 0o440, "items": items}})
    if cm is not None:
        mounts.append({"name": "adhoc-config", "mountPath": CONFIG_DIR, "readOnly": True})
        volumes.append({"name": "adhoc-config", "configMap": {"name": cm, "items": [
            {"key": "config.yaml", "path": f"{cm}.yaml"}]}})
    main["volumeMounts"] = mounts
    spec.update(containers=[main], volumes=volumes, restartPolicy="Never", terminationGracePeriodSeconds=int(grace_s))
    for key in ("affinity", "initContainers", "nodeName", "hostname", "subdomain"):
        spec.pop(key, None)
    labels = {**naming.run_labels(run_id), naming.NAME_LABEL: ADHOC_NAME, "app.kubernetes.io/part-of": "goverse",
              "app.kubernetes.io/component": f"adhoc-{component}", ADHOC_LABEL: pod}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": namespace, "labels": labels},
            "spec": spec}


def config_map(cm: str, namespace: str, run_id: str, text: str) -> dict[str, Any]:
    labels = {**naming.run_labels(run_id), naming.NAME_LABEL: ADHOC_NAME, "app.kubernetes.io/component": "config"}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": pod_name(cm), "namespace": namespace, "labels": labels},
            "data": {"config.yaml": text}}


def network_policies(namespace: str, run_id: str) -> list[dict[str, Any]]:
    """Where a CNI enforces the stack's default-deny policies, the paths ad-hoc pods need: anything in
    and out of them (the harness probes them, they reach a link proxy on the node), and into etcd and
    PostgreSQL from them."""
    labels = {**naming.run_labels(run_id), naming.NAME_LABEL: ADHOC_NAME}
    adhoc = {"matchLabels": {naming.NAME_LABEL: ADHOC_NAME}}
    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "goverse-adhoc", "namespace": namespace, "labels": labels},
         "spec": {"podSelector": adhoc, "policyTypes": ["Ingress", "Egress"], "ingress": [{}], "egress": [{}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "goverse-adhoc-peers", "namespace": namespace, "labels": labels},
         "spec": {"podSelector": {"matchExpressions": [{"key": naming.NAME_LABEL, "operator": "In",
                                                        "values": ["goverse-etcd", "goverse-postgres"]}]},
                  "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": adhoc}]}]}},
    ]


def termination(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    """The terminated state of the pod's container (exit code, reason), None while it has not ended."""
    for st in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (st.get("state") or {}).get("terminated")
        if term is not None:
            return {"exit_code": term.get("exitCode"), "reason": term.get("reason")}
    return None


__all__ = ["ADHOC_LABEL", "ADHOC_NAME", "CONFIG_DIR", "adhoc_config", "adhoc_pod", "config_map", "config_map_of",
           "config_path", "network_policies", "pod_name", "termination"]
