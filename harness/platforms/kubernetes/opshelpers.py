"""Pure helpers of the Kubernetes operator actions: where a container's setting comes from, pod-template
edits, the session -> node mapping, the balance test. No API calls here, so each is unit-tested on data.

Why separate from ``operations.py``: these decide *what* a procedure changes and how it reads what it
sees; the procedure (patch, wait, record) is the other module's job.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: pod-template annotation the harness sets to make a controller roll its pods (the ``checksum/config``
#: pattern of Helm charts); its value names the operation, so ``kubectl describe`` shows why pods rolled.
ROLL_ANNOTATION = "goverse-harness/rolled-for"
#: the reference stack's version setting (reported as ``goverse_build_info{version=...}``)
VERSION_ENV = "GOVERSE_VERSION_TAG"


@dataclass(frozen=True)
class EnvSource:
    """Where a container's environment variable comes from: ``configmap`` (``name``/``key`` of a
    ConfigMap, by ``valueFrom`` or ``envFrom``), ``literal`` (written into the pod template) or
    ``absent``."""

    kind: str
    name: str = ""
    key: str = ""


def env_source(container: Mapping[str, Any], var: str) -> EnvSource:
    """Where ``var`` comes from in one container spec. An explicit ``env`` entry wins over ``envFrom``
    (Kubernetes' own precedence), so a literal there shadows any ConfigMap."""
    for e in container.get("env") or []:
        if e.get("name") != var:
            continue
        ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
        if ref:
            return EnvSource("configmap", str(ref["name"]), str(ref.get("key") or var))
        return EnvSource("literal")
    found = EnvSource("absent")
    for src in container.get("envFrom") or []:  # later sources win on duplicate keys
        ref, prefix = src.get("configMapRef"), str(src.get("prefix") or "")
        if ref and var.startswith(prefix) and var[len(prefix):]:
            found = EnvSource("configmap", str(ref["name"]), var[len(prefix):])
    return found


def with_env(containers: Sequence[Mapping[str, Any]], names: Iterable[str], var: str,
             value: str) -> list[dict[str, Any]]:
    """A copy of ``containers`` where the containers named in ``names`` have ``var=value`` as a literal
    (replacing any entry of that name, appended otherwise). The input is not modified."""
    wanted = set(names)
    out = []
    for c in containers:
        c2 = copy.deepcopy(dict(c))
        if c2.get("name") in wanted:
            env = [e for e in c2.get("env") or [] if e.get("name") != var]
            c2["env"] = [*env, {"name": var, "value": value}]
        out.append(c2)
    return out


def roll_stamp(kind: str, params: Mapping[str, Any], counter: int) -> str:
    """The value of :data:`ROLL_ANNOTATION` for one roll: new for every roll (``counter``), so even a
    roll that changes nothing else rolls; no parameter value appears in clear (a digest of them)."""
    digest = hashlib.sha256(repr(sorted(params.items())).encode()).hexdigest()[:10]
    return f"{kind}-{counter}-{digest}"


def session_node(application_name: str, node_pods: Mapping[str, str]) -> str | None:
    """The node instance a PostgreSQL session belongs to: the reference stack names its sessions
    ``refstack-<node id>`` and on Kubernetes the node id is the pod name (``POD_NAME``); real Goverse
    uses ``goverse-<node>``. ``node_pods`` maps pod name -> instance name."""
    for prefix in ("refstack-", "goverse-"):
        if application_name.startswith(prefix):
            pod = application_name[len(prefix):]
            if pod in node_pods:
                return node_pods[pod]
    return None


def is_balanced(owners: Mapping[str, int], nodes: set[str], shards: int) -> bool:
    """Shard counts per running node within Goverse's rebalance tolerance: max - min < 2 or
    max - min <= 20 % of the fair share (contract §4.3; the local platform's rule)."""
    if not nodes:
        return False
    counts = [owners.get(n, 0) for n in nodes]
    spread = max(counts) - min(counts)
    return spread < 2 or spread <= 0.2 * shards / len(nodes)


def converged_and_balanced(state: Any, names: Mapping[str, str], ready_nodes: set[str], shards: int) -> bool:
    """The local platform's convergence wait on Kubernetes: every shard's target == current with its
    owner alive, every owner a node expected to serve — its pod Ready *and* live in etcd — and shard
    counts balanced over those nodes (``is_balanced``). ``state`` is a ``ClusterState`` (advertise
    addresses), ``names`` maps addresses to instance names. Why both signals: a pod's Ready lags its
    node's etcd lease by the probe period either way, and the intersection is the set the leader
    balances over. Why balanced: a node back from a kill or restart is handed its share only after
    the leader's stability window, so "converged" alone ends an after-phase wait before that
    rebalance and its migration errors land in the phase measured as healthy."""
    if not state.converged:
        return False
    owners = {names.get(c, c): n for c, n in state.owners().items()}
    expected = ready_nodes & {names.get(n, n) for n in state.nodes}
    return set(owners) <= expected and is_balanced(owners, expected, shards)


def containers_started(pods: Mapping[str, Mapping[str, Any]], container: str, want: int) -> tuple[bool, str]:
    """Whether at least ``want`` pods (not being deleted) have ``container`` running — started by the
    kubelet, ready or not — and what was seen (a ``watch.wait_list`` predicate over a pod listing).
    Why: a restore's start step on Kubernetes includes scheduling, sandbox and container start, the
    platform's share of the start that the local platform does in milliseconds; the stack's own
    start-up and convergence begin when the process runs."""
    running = []
    for name, pod in sorted(pods.items()):
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") == container and (cs.get("state") or {}).get("running"):
                running.append(name)
    return len(running) >= want, f"{container} running in {len(running)}/{want}: {running}"


def container_start_delay(pod: Mapping[str, Any], container: str, t_request: float) -> float | None:
    """Seconds from ``t_request`` (wall clock, when the harness asked for the pod) until the kubelet
    started ``container``'s process (``state.running.startedAt``): scheduling, sandbox, network and
    container creation — the platform's start cost, before the stack's own start. The API's timestamps
    have whole seconds and are rounded down, so this never credits the platform more than it took.
    None while the container has not started; never negative (a clock ahead of the API server's)."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") != container:
            continue
        started = ((cs.get("state") or {}).get("running") or {}).get("startedAt")
        if not started:
            return None
        t = datetime.fromisoformat(str(started).replace("Z", "+00:00")).timestamp()
        return max(0.0, round(t - t_request, 3))
    return None
