"""The network paths the stack needs (seed §3.2), and partitions made of NetworkPolicies.

Why a table in code: the base NetworkPolicies (``manifests/base/networkpolicies.yaml``) are the
contract; ``EDGES`` states the same paths as data and ``allowed_paths`` computes what a set of rendered
policies actually allows, so a test can hold the two together (a policy typo that silently opens or
closes a path fails it).

Partition fallback (no Chaos Mesh): every allow rule in the base ignores pods labelled
``goverse-harness/quarantine``. To cut a pod off from some components, the harness labels it with a
partition id and creates policies (``quarantine_policies``) that re-allow exactly the paths it keeps.
Healing deletes those policies and removes the label. Policies are unions of allows, so this is the
only way to *remove* a path without editing the base policies. Caveat stated in the capabilities:
some CNIs let already-established connections survive a policy change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from harness.platforms.kubernetes import naming
from harness.platforms.kubernetes.policy import pod_labels, selector_matches, workloads

#: (source component, destination component, destination port name): every in-cluster path
EDGES: frozenset[tuple[str, str, str]] = frozenset({
    ("node", "etcd", "client"), ("gate", "etcd", "client"), ("inspector", "etcd", "client"),
    ("etcd", "etcd", "client"), ("etcd", "etcd", "peer"),
    ("node", "postgres", "postgres"), ("schema-init", "postgres", "postgres"),
    ("gate", "node", "api"), ("node", "node", "api"),
    ("node", "inspector", "grpc"), ("gate", "inspector", "grpc"),
})
#: ports open to any source (clients, ingress controllers)
OPEN_PORTS: frozenset[tuple[str, str]] = frozenset({("gate", "http"), ("gate", "grpc"), ("inspector", "http")})
PARTITION_LABEL = "goverse-harness/partition"
ANY = "*"


def app(component: str) -> str:
    return f"goverse-{component}"


# --- what rendered policies allow ------------------------------------------------------------------


def _component_labels(docs: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, str]]:
    out = {}
    for w in workloads(docs):
        labels = pod_labels(w)
        comp = labels.get(naming.COMPONENT_LABEL)
        if comp:
            out[comp] = labels
    return out


def _policies(docs: Iterable[Mapping[str, Any]], direction: str) -> list[Mapping[str, Any]]:
    return [d for d in docs if d.get("kind") == "NetworkPolicy" and direction in d["spec"].get("policyTypes", [])]


def _peer_matches(peer: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    if "ipBlock" in peer or "namespaceSelector" in peer:
        return False  # not an in-namespace pod peer
    return selector_matches(peer.get("podSelector"), labels)


def allowed_paths(docs: Iterable[Mapping[str, Any]]) -> tuple[set[tuple[str, str, str]], set[tuple[str, str]]]:
    """(in-cluster paths ``(src, dst, port)``, ports open to every source ``(dst, port)``) that the
    NetworkPolicies in ``docs`` allow between the workloads in ``docs``. DNS (port 53 egress) is
    reported by ``allows_dns``. A rule without ports allows ``*``."""
    docs = list(docs)
    comps = _component_labels(docs)
    ingress, egress = _policies(docs, "Ingress"), _policies(docs, "Egress")
    paths: set[tuple[str, str, str]] = set()
    open_ports: set[tuple[str, str]] = set()
    for dst, dst_labels in comps.items():
        for pol in ingress:
            if not selector_matches(pol["spec"].get("podSelector"), dst_labels):
                continue
            for rule in pol["spec"].get("ingress", []) or []:
                ports = [str(p.get("port", ANY)) for p in rule.get("ports", [])] or [ANY]
                peers = rule.get("from")
                if not peers:
                    open_ports.update((dst, p) for p in ports)
                    continue
                for src, src_labels in comps.items():
                    if any(_peer_matches(peer, src_labels) for peer in peers) and _egress_allows(
                            egress, src_labels, dst_labels):
                        paths.update((src, dst, p) for p in ports)
    return paths, open_ports


def _egress_allows(egress: list[Mapping[str, Any]], src: Mapping[str, str], dst: Mapping[str, str]) -> bool:
    for pol in egress:
        if not selector_matches(pol["spec"].get("podSelector"), src):
            continue
        for rule in pol["spec"].get("egress", []) or []:
            peers = rule.get("to")
            if peers and any(_peer_matches(peer, dst) for peer in peers):
                return True
    return False


def allows_dns(docs: Iterable[Mapping[str, Any]]) -> bool:
    """Some egress rule applying to every pod allows port 53 over UDP and TCP to any destination."""
    for pol in _policies(docs, "Egress"):
        if pol["spec"].get("podSelector"):
            continue
        for rule in pol["spec"].get("egress", []) or []:
            got = {(p.get("protocol", "TCP"), p.get("port")) for p in rule.get("ports", [])}
            if not rule.get("to") and {("UDP", 53), ("TCP", 53)} <= got:
                return True
    return False


# --- partition fallback ----------------------------------------------------------------------------


def _not_quarantined(component: str) -> dict[str, Any]:
    return {"matchLabels": {naming.NAME_LABEL: app(component)},
            "matchExpressions": [{"key": naming.QUARANTINE_LABEL, "operator": "DoesNotExist"}]}


def _policy(name: str, run_id: str, pid: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": naming.namespace_for(run_id),
                         "labels": {**naming.run_labels(run_id), PARTITION_LABEL: pid}},
            "spec": spec}


def quarantine_policies(run_id: str, pid: str, victim: str, keep: Iterable[str]) -> list[dict[str, Any]]:
    """Policies that give a pod of component ``victim``, labelled ``quarantine=<pid>``, back exactly its
    paths to and from the components in ``keep`` (its own component included: e.g. node↔node).

    Everything not re-allowed stays denied by ``default-deny``, in both directions.
    """
    keep = set(keep)
    me = {"matchLabels": {naming.QUARANTINE_LABEL: pid}}
    out_edges = sorted((dst, port) for src, dst, port in EDGES if src == victim and dst in keep)
    in_edges = sorted((src, port) for src, dst, port in EDGES if dst == victim and src in keep)
    opened = sorted(port for comp, port in OPEN_PORTS if comp == victim)
    policies = []
    egress = [{"to": [{"podSelector": _not_quarantined(dst)}]} for dst in sorted({d for d, _ in out_edges})]
    ingress = [{"from": [{"podSelector": _not_quarantined(src)}],
                "ports": [{"protocol": "TCP", "port": p} for s, p in in_edges if s == src]}
               for src in sorted({s for s, _ in in_edges})]
    if opened:
        ingress.append({"ports": [{"protocol": "TCP", "port": p} for p in opened]})
    policies.append(_policy(f"gvh-partition-{pid}-self", run_id, pid, {
        "podSelector": me, "policyTypes": ["Ingress", "Egress"], "ingress": ingress, "egress": egress}))
    for dst in sorted({d for d, _ in out_edges}):
        ports = sorted(p for d, p in out_edges if d == dst)
        policies.append(_policy(f"gvh-partition-{pid}-to-{dst}", run_id, pid, {
            "podSelector": _not_quarantined(dst), "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": me}], "ports": [{"protocol": "TCP", "port": p} for p in ports]}]}))
    for src in sorted({s for s, _ in in_edges}):
        policies.append(_policy(f"gvh-partition-{pid}-from-{src}", run_id, pid, {
            "podSelector": _not_quarantined(src), "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": me}]}]}))
    return policies


#: the targeted partition shapes of harness.faults.shapes that one quarantined pod can express
FALLBACK_SHAPES: dict[str, frozenset[str]] = {
    "isolate-node": frozenset(),
    "node-etcd": frozenset({"node", "postgres", "gate", "inspector"}),
    "node-postgres": frozenset({"node", "etcd", "gate", "inspector"}),
    "gates-node": frozenset({"node", "etcd", "postgres", "inspector"}),
}
