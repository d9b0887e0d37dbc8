"""Names and labels the harness gives to what it creates on a cluster.

Why one module: everything the harness creates must be findable (and deletable) by one label, and the
mapping between the harness's instance names (``node-0``, ``gate-1``, ``etcd-0``, ``postgres``,
``inspector``) and pod names must agree everywhere — teardown, chaos selectors and the injector all
rely on it.
"""

from __future__ import annotations

import re
import secrets

RUN_LABEL = "goverse-harness/run-id"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "goverse-harness"
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
QUARANTINE_LABEL = "goverse-harness/quarantine"
NAMESPACE_PREFIX = "gvh-"
FIELD_MANAGER = "goverse-harness"

#: component -> workload (kind, name); also the value of the pods' ``app.kubernetes.io/name`` label
WORKLOADS: dict[str, tuple[str, str]] = {
    "etcd": ("StatefulSet", "goverse-etcd"),
    "postgres": ("StatefulSet", "goverse-postgres"),
    "node": ("StatefulSet", "goverse-node"),
    "gate": ("Deployment", "goverse-gate"),
    "inspector": ("Deployment", "goverse-inspector"),
}
SCHEMA_JOB = "goverse-schema-init"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


def new_run_id() -> str:
    """Short, lowercase, DNS-safe: it goes into a namespace name and a label value."""
    return secrets.token_hex(4)


def check_run_id(run_id: str) -> str:
    if not _DNS1123_LABEL.match(run_id) or len(run_id) > 40 or not _LABEL_VALUE.match(run_id):
        raise ValueError(f"run id {run_id!r} must be a lowercase DNS label of at most 40 characters")
    return run_id


def namespace_for(run_id: str) -> str:
    """Each run gets a namespace of its own; ``gvh-`` marks it as the harness's at a glance."""
    return NAMESPACE_PREFIX + check_run_id(run_id)


def run_labels(run_id: str) -> dict[str, str]:
    """The labels on everything a run creates (the teardown and chaos-scoping key)."""
    return {RUN_LABEL: check_run_id(run_id), MANAGED_BY_LABEL: MANAGED_BY}


def run_selector(run_id: str) -> str:
    return f"{RUN_LABEL}={check_run_id(run_id)}"


def component_selector(component: str) -> dict[str, str]:
    """Pod labels that select every pod of ``component``."""
    _kind, name = WORKLOADS[component]
    return {NAME_LABEL: name}


def statefulset_pod(component: str, ordinal: int) -> str:
    kind, name = WORKLOADS[component]
    if kind != "StatefulSet":
        raise ValueError(f"{component} is a {kind}: its pods have no stable names")
    return f"{name}-{ordinal}"


def instance_for_pod(component: str, pod_name: str) -> str | None:
    """``goverse-node-2`` -> ``node-2``; ``goverse-postgres-0`` -> ``postgres``; None if not ours."""
    kind, name = WORKLOADS[component]
    if kind != "StatefulSet" or not pod_name.startswith(name + "-"):
        return None
    ordinal = pod_name[len(name) + 1:]
    if not ordinal.isdigit():
        return None
    if component == "postgres":
        return "postgres" if ordinal == "0" else None
    return f"{component}-{ordinal}"


def pod_for_instance(instance: str) -> tuple[str, str | None]:
    """``node-2`` -> (``node``, ``goverse-node-2``). Deployment pods (gates, inspector) have no fixed
    name: the second element is None and the caller resolves it (see ``slots``)."""
    if instance == "postgres":
        return "postgres", statefulset_pod("postgres", 0)
    if instance == "inspector":
        return "inspector", None
    m = re.fullmatch(r"([a-z]+)-(\d+)", instance)
    if not m or m.group(1) not in WORKLOADS:
        raise ValueError(f"unknown instance name {instance!r}")
    component, ordinal = m.group(1), int(m.group(2))
    if WORKLOADS[component][0] == "StatefulSet":
        return component, statefulset_pod(component, ordinal)
    return component, None
