"""What a Kubernetes stack looks like from outside: the shard-map oracle (etcd through a forward),
readiness and rollout waits, capabilities, and what the kubelet records of a container (logs,
restarts, terminations)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

from harness.cluster_state import ClusterState, EtcdView
from harness.platforms.kubernetes import apply as k8s
from harness.platforms.kubernetes import conditions, naming, watch
from harness.platforms.kubernetes.deployment.endpoints import InstancesAndEndpoints
from harness.platforms.kubernetes.opshelpers import converged_and_balanced
from harness.waiting import Deadline, wait_until


class Observation(InstancesAndEndpoints):
    """Oracle reads, waits and container records; nothing here changes the stack."""

    def _etcd_view(self) -> EtcdView:
        if self._view is None:
            if "etcd" not in self._forwards:
                self._forwards["etcd"] = self._new_forward(self._etcd_pod, 2379)
            self._view = EtcdView([self._forwards["etcd"].address], self.spec.prefix, self.spec.shards)
        return self._view

    def cluster_state(self) -> ClusterState:
        return self._etcd_view().state()

    def advertise_names(self) -> dict[str, str]:
        port = self.ports["node_api"]
        return {f"{p['status'].get('podIP')}:{port}": naming.instance_for_pod("node", p["metadata"]["name"]) or ""
                for p in self._pods("node") if p["status"].get("podIP")}

    def shard_map(self) -> dict[int, tuple[str, str]]:
        names = self.advertise_names()
        return {i: (names.get(t, t), names.get(c, c)) for i, (t, c) in self._etcd_view().state().shards.items()}

    def live_nodes(self) -> set[str]:
        names = self.advertise_names()
        return {names.get(n, n) for n in self._etcd_view().state().nodes}

    def wait_converged(self, timeout: float, balanced: bool = True) -> float:
        """Until every shard's target == current with its owner alive and, with ``balanced`` (the
        default, as on the local platform), the owners are the Ready node pods live in etcd and their
        shard counts are balanced (``opshelpers.converged_and_balanced``): a rejoined node's rebalance
        has finished. Returns seconds waited."""
        t0 = time.monotonic()
        view = self._etcd_view()

        def ok() -> bool:
            st = view.state()
            if not balanced or not st.converged:
                return st.converged
            ready = {naming.instance_for_pod("node", p["metadata"]["name"]) or "" for p in self._pods("node")
                     if conditions.pod_ready(p)}
            return converged_and_balanced(st, self.advertise_names(), ready, self.spec.shards)

        what = "shard map converged (every shard target == current, owner alive)" + (
            " and balanced over the ready nodes" if balanced else "")
        wait_until(ok, timeout, what, interval=0.2,
                   describe=lambda: str(view.state().summary(self.advertise_names())))
        return time.monotonic() - t0

    def wait_ready(self, timeout: float) -> float:
        deadline = Deadline(timeout)
        t0 = time.monotonic()
        for component in ("etcd", "postgres", "node", "gate", "inspector"):
            if component == "inspector" and not self.spec.inspector:
                continue
            self.wait_rollout(component, max(1.0, deadline.remaining()))
        self.wait_converged(max(1.0, deadline.remaining()))
        return time.monotonic() - t0

    def wait_rollout(self, component: str, timeout: float) -> float:
        kind, name = naming.WORKLOADS[component]
        return self.wait_workload(kind, name, timeout)

    def wait_workload(self, kind: str, name: str, timeout: float) -> float:
        t0 = time.monotonic()
        api = "batch/v1" if kind == "Job" else "apps/v1"

        def done(obj: Mapping[str, Any] | None) -> tuple[bool, str]:
            return (False, "not created") if obj is None else conditions.progress(obj)

        watch.wait_object(self.dyn, k8s.resource(self.dyn, api, kind), self.namespace, name, done, timeout,
                          f"{kind}/{name} rolled out")
        return time.monotonic() - t0

    def _wait_instance_ready(self, name: str, old_uid: str | None, timeout: float) -> None:
        component = naming.pod_for_instance(name)[0]
        pods_res = k8s.resource(self.dyn, "v1", "Pod")

        def ready(objs: Mapping[str, Mapping[str, Any]]) -> tuple[bool, str]:
            try:
                pod = self.pod_name(name)
            except KeyError:
                return False, f"{name}: no pod yet"
            obj = objs.get(pod)
            if obj is None or (old_uid and obj["metadata"]["uid"] == old_uid):
                return False, f"{name}: waiting for a new pod"
            problem = conditions.pod_problem(obj)
            if problem:
                return False, f"{pod}: {problem}"
            return conditions.pod_ready(obj), f"{pod} ready={conditions.pod_ready(obj)}"

        sel = ",".join(f"{k}={v}" for k, v in naming.component_selector(component).items())
        watch.wait_list(self.dyn, pods_res, self.namespace, ready, timeout, f"{name} ready", label_selector=sel)

    def capabilities(self) -> dict[str, str | None]:
        chaos_ok = self.chaos.available()
        no_cm = "Chaos Mesh is not installed in this cluster (helm install chaos-mesh, see docs/kubernetes.md)"
        return {
            "kill": None, "restart": None, "scale": None,
            "stop": "a deleted pod is recreated at once by its controller",
            "pause": None if self.node_access() else f"no SIGSTOP for a container's PID 1: {self._NO_NODE}",
            # without Chaos Mesh the NetworkPolicy fallback forms isolate-node, node-etcd, node-postgres and
            # gates-node (two-way); the injector raises Unsupported for the other shapes, so each skips alone
            "partition": None,  # Chaos Mesh, nft in pod netns from the node, or the NetworkPolicy fallback
            # node -> PostgreSQL: the pg-proxy sidecar where wired (as the local fault proxy), else Chaos Mesh
            "latency": None if chaos_ok or self.pg_proxied() else no_cm + self._NO_NODE_LATENCY,
            "timeout": None if chaos_ok or self.pg_proxied() else no_cm + self._NO_NODE_LATENCY,
            "reset": None if self.pg_proxied() else "no TCP-reset fault in Chaos Mesh" + self._NO_NODE_LATENCY,
            "cpu-stress": None if chaos_ok or self._node_cgroup("cpu") else no_cm,
            "memory-pressure": None if chaos_ok or self._node_cgroup("memory") else no_cm,
            # named as Fault.kind, like the local platform's: the scenarios ask for these names
            **{k: None if chaos_ok else self._disk_reason(k, no_cm) for k in ("disk-full", "disk-latency", "disk-eio")},
        }

    def _disk_reason(self, kind: str, no_cm: str) -> str | None:
        """None when the harness made PostgreSQL's volume and can do ``kind`` on it (``pgvolume``)."""
        if self.pg_volume is not None and kind not in self.disk_unwired:
            return None
        if kind in self.disk_unwired:
            return f"{no_cm}; node access: {self.disk_unwired[kind]}"
        return no_cm + (self._NO_NODE_DISK if self.node_access() else "")

    def pod_identity(self, name: str) -> dict[str, str]:
        """What the downward API gives the instance's pod (the manifests map these fields)."""
        got: Any = self.core.read_namespaced_pod(self.pod_name(name), self.namespace)
        return {"POD_NAME": str(got.metadata.name), "POD_NAMESPACE": str(got.metadata.namespace),
                "POD_IP": str(got.status.pod_ip or ""), "NODE_NAME": str(got.spec.node_name or "")}

    def instance_log(self, name: str) -> str:
        """The instance's container log from the pod logs API (the previous container's first, after a
        restart in place), so a log check sees what a log pipeline would."""
        component = naming.pod_for_instance(name)[0]
        pod = self.pod_name(name)
        parts = []
        for previous in (True, False):
            with contextlib.suppress(Exception):  # no previous container: 400 from the API
                parts.append(self.core.read_namespaced_pod_log(pod, self.namespace, container=component,
                                                               previous=previous, _request_timeout=20))
        return "".join(parts)

    def crash_looping(self, name: str) -> bool:
        """Whether the kubelet holds the instance's container in CrashLoopBackOff (its next start may be
        up to minutes away)."""
        pod: Any = self.core.read_namespaced_pod(self.pod_name(name), self.namespace)
        return any(c.state is not None and c.state.waiting is not None and c.state.waiting.reason == "CrashLoopBackOff"
                   for c in pod.status.container_statuses or [])

    def restart_count(self, name: str) -> int:
        pod: Any = self.core.read_namespaced_pod(self.pod_name(name), self.namespace)
        return sum(int(c.restart_count or 0) for c in pod.status.container_statuses or [])

    def last_termination(self, name: str) -> dict[str, Any] | None:
        """How the instance's container last ended, as the kubelet recorded it (exit code, reason)."""
        pod: Any = self.core.read_namespaced_pod(self.pod_name(name), self.namespace)
        for c in pod.status.container_statuses or []:
            term = c.last_state.terminated if c.last_state else None
            if term is not None:
                return {"exit_code": term.exit_code, "reason": term.reason, "finished_at": str(term.finished_at)}
        return None

    def container_id(self, name: str) -> str | None:
        """The instance's current container id (``containerd://…``), None before it has one."""
        component = naming.pod_for_instance(name)[0]
        got: Any = self.core.read_namespaced_pod(self.pod_name(name), self.namespace)
        return conditions.running_container_id(self.core.api_client.sanitize_for_serialization(got), component)

    def container_ended(self, name: str, container_id: str) -> dict[str, Any] | None:
        """How the instance's container ``container_id`` ended, once the kubelet recorded it, else None."""
        component = naming.pod_for_instance(name)[0]
        got: Any = self.core.read_namespaced_pod(self.pod_name(name), self.namespace)
        return conditions.container_termination(self.core.api_client.sanitize_for_serialization(got), component,
                                                container_id)
