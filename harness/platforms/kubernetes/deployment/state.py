"""The state every part of a Kubernetes deployment reads: its fields, the pods behind each instance
(StatefulSet pods by ordinal, Deployment pods by slot) and whether the harness runs on the node.

Why a part of its own: endpoints, observation, controls, operator actions and teardown all act on the
same API clients, namespace and bookkeeping; declaring them once here lets each part be a small class
over this state (``deployment.KubernetesDeployment`` composes the parts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.platforms.base import StackSpec, Unsupported
from harness.platforms.kubernetes import apply as k8s
from harness.platforms.kubernetes import naming, slots, stackconfig
from harness.platforms.kubernetes.adhoc import KubernetesAdhoc
from harness.platforms.kubernetes.chaos_runner import ChaosRunner
from harness.platforms.kubernetes.portforward import PortForward

_COMPONENT_PORTS = {"node": ("node_api", "node_ops"), "gate": ("gate_http", "gate_ops"),
                    "inspector": ("inspector_http", "inspector_http")}


class DeploymentState(KubernetesAdhoc):
    """Fields, pod lookup and node access of a Kubernetes deployment (the base of every part)."""

    def __init__(self, spec: StackSpec, api: Any, namespace: str, run_id: str, run_dir: Path,
                 on_teardown: Any = None) -> None:
        from kubernetes import client

        self.spec = spec
        self.api = api
        self.namespace = namespace
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self.core = client.CoreV1Api(api)
        self.dyn = k8s.dynamic(api)
        self.chaos = ChaosRunner(self.dyn, namespace, run_id)
        self.ports = stackconfig.REFERENCE_PORTS if spec.stack == "reference" else stackconfig.GOVERSE_PORTS
        self._gate_slots: list[str | None] = []
        self._forwards: dict[str, PortForward] = {}
        self._view: Any = None
        self._direct_ok: bool | None = None
        self._ip_cache: dict[str, tuple[str, float]] = {}
        self._node_access: bool | None = None
        self._pg_proxied: bool | None = None  # node -> PostgreSQL through the pg-proxy sidecar (endpoints)
        self.exit_codes: dict[str, int | None] = {}  # instance -> exit code at its last graceful restart
        # paused instance -> (pod uid, container id) (thawed at teardown at the latest)
        self._frozen: dict[str, tuple[str, str | None]] = {}
        self._killed: dict[str, tuple[str, int]] = {}  # SIGKILLed in place: instance -> (pod uid, restarts)
        self.limits: dict[str, Any] = {}  # cgroup limits from the node (local.cgroups), healed at teardown
        self.pg_volume: Any = None  # pgvolume.PostgresFaultVolume when the run asked for disk faults
        self.disk_unwired: dict[str, str] = {}  # disk-full/-latency/-eio -> why pg_volume cannot do it
        self._on_teardown = on_teardown
        self._torn_down = False
        self.timings: dict[str, float] = {}  # bring-up phases, seconds (the bootstrap scenario reports them)

    def _pods(self, component: str) -> list[dict[str, Any]]:
        """Live (not terminating) pods of ``component``, oldest first."""
        sel = ",".join(f"{k}={v}" for k, v in naming.component_selector(component).items())
        items = k8s.resource(self.dyn, "v1", "Pod").get(namespace=self.namespace, label_selector=sel).to_dict()["items"]
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        return sorted(live, key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))

    def _replicas(self, component: str) -> int:
        kind, name = naming.WORKLOADS[component]
        obj = k8s.resource(self.dyn, "apps/v1", kind).get(name=name, namespace=self.namespace)
        return int(obj.spec.replicas or 0)

    def _slot_table(self, component: str) -> list[str | None]:
        live = [p["metadata"]["name"] for p in self._pods(component)]
        if component == "gate":
            self._gate_slots = slots.reassign(self._gate_slots, live, self._replicas("gate"))
            return self._gate_slots
        return slots.reassign([], live, 1)

    def pod_name(self, instance: str) -> str:
        component, pod = naming.pod_for_instance(instance)
        if pod is not None:
            return pod
        table = self._slot_table(component)
        index = 0 if instance == "inspector" else int(instance.rsplit("-", 1)[1])
        if index >= len(table) or table[index] is None:
            raise KeyError(f"{instance}: no live pod holds this slot")
        return table[index]  # type: ignore[return-value]

    def pod_uid(self, instance: str) -> str:
        got: Any = self.core.read_namespaced_pod(self.pod_name(instance), self.namespace)
        return str(got.metadata.uid)

    _NO_NODE = ("the harness does not run on this cluster's node (pod cgroups and network namespaces are "
                "out of reach; the binaries provider's cluster has them)")

    # why node access does not stand in for Chaos Mesh here (docs/kubernetes.md "Faults on Kubernetes")

    _NO_NODE_LATENCY = ("; and node -> PostgreSQL is not wired through the fault proxy sidecar (the Goverse "
                        "stack, a Helm deployment or StackSpec(fault_proxies=False)): node access alone has no "
                        "link delay, since one on a pod's interface needs the kernel's netem qdisc (absent on "
                        "our machines), and a redirect to a delaying proxy would miss the pooled connections")

    _NO_NODE_DISK = ("; node access faults PostgreSQL's volume only when the run asked for disk faults at deploy "
                     "(StackSpec.disk_faults, set when a selected scenario injects one): otherwise the volume is a "
                     "hostPath directory on the machine's root filesystem (filling it fills the machine; a mount "
                     "over it does not reach the running container)")

    def node_access(self) -> bool:
        """Whether the pods' processes run on this machine (then cgroups and netns are reachable)."""
        if self._node_access is None:
            from harness.platforms.kubernetes import nodeaccess

            pods = self._pods("etcd") or self._pods("node")
            self._node_access = bool(pods) and bool(nodeaccess.pod_pids(pods[0]["metadata"]["uid"]))
        return self._node_access

    def _node_cgroup(self, controller: str) -> bool:
        """Whether a cgroup v1 ``controller`` limit can be nested in the pods' containers from here."""
        if not self.node_access():
            return False
        from harness.platforms.kubernetes import nodeaccess

        pods = self._pods("node")
        try:
            nodeaccess.container_hierarchy(controller, nodeaccess.container_pid(pods[0]["metadata"]["uid"]))
        except (Unsupported, IndexError):
            return False
        return True
