"""A deployed stack on Kubernetes: instances, controls, waits and teardown (``base.Deployment``).

Instance names are the harness's (``node-0``, ``gate-1``, ``etcd-0``, ``postgres``, ``inspector``);
StatefulSet pods map by ordinal, Deployment pods by slot (``slots``). Everything is reached through
port-forwards (``portforward``): gates' client APIs, the inspector, and etcd for the shard-map oracle.

Kubernetes differs from processes in one way scenarios notice: a deleted pod is recreated at once by
its controller. So ``kill`` and ``restart`` delete the pod and ``start`` waits for its replacement;
``stop`` (keep it down) and ``pause`` (SIGSTOP) raise ``Unsupported`` with that reason.
"""

from __future__ import annotations

import contextlib
import logging
import signal as _signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.cluster_state import ClusterState, EtcdView
from harness.platforms.base import Endpoints, Instance, PlatformError, StackSpec, Termination, Unsupported
from harness.platforms.kubernetes import apply as k8s
from harness.platforms.kubernetes import conditions, naming, slots, stackconfig, watch
from harness.platforms.kubernetes.adhoc import KubernetesAdhoc
from harness.platforms.kubernetes.chaos_runner import ChaosRunner
from harness.platforms.kubernetes.portforward import PortForward
from harness.waiting import Deadline, wait_until

log = logging.getLogger(__name__)

_COMPONENT_PORTS = {"node": ("node_api", "node_ops"), "gate": ("gate_http", "gate_ops"),
                    "inspector": ("inspector_http", "inspector_http")}


def prestop_sleep_s(pod: Mapping[str, Any], container: str) -> float:
    """Seconds of the container's ``preStop`` ``sleep`` action (0 without one): the kubelet sends SIGTERM
    only when the hook returns."""
    for c in pod.get("spec", {}).get("containers", []):
        if c.get("name") == container:
            sleep = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}
            return float(sleep.get("seconds") or 0)
    return 0.0


class KubernetesDeployment(KubernetesAdhoc):
    """See the module docstring; ad-hoc pods (the ``AdhocInstances`` capability) come from ``adhoc``."""

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
        self.exit_codes: dict[str, int | None] = {}  # instance -> exit code at its last graceful restart
        self._frozen: dict[str, str] = {}  # paused instance -> pod uid (thawed at teardown at the latest)
        self._killed: dict[str, tuple[str, int]] = {}  # SIGKILLed in place: instance -> (pod uid, restarts)
        self.limits: dict[str, Any] = {}  # cgroup limits from the node (local.cgroups), healed at teardown
        self._on_teardown = on_teardown
        self._torn_down = False
        self.timings: dict[str, float] = {}  # bring-up phases, seconds (the bootstrap scenario reports them)

    # --- pods and instances ------------------------------------------------------------------------

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

    def instances(self, component: str | None = None) -> list[Instance]:
        out = []
        for comp in (component,) if component else ("etcd", "postgres", "node", "gate", "inspector"):
            pods = {p["metadata"]["name"]: p for p in self._pods(comp)}
            if comp in ("etcd", "node"):
                names = {f"{comp}-{i}": naming.statefulset_pod(comp, i) for i in range(self._replicas(comp))}
            elif comp == "postgres":
                names = {"postgres": naming.statefulset_pod("postgres", 0)}
            elif comp == "inspector":
                table = self._slot_table("inspector")
                names = {"inspector": table[0]} if table and table[0] else {}
            else:
                names = slots.instance_names("gate", self._slot_table("gate"))
            for inst, pod_name in sorted(names.items()):
                pod = pods.get(pod_name)
                ip = (pod or {}).get("status", {}).get("podIP") or ""
                api_url, ops_url = self._urls(comp, inst, ip)
                out.append(Instance(name=inst, component=comp, host=ip, api_url=api_url, ops_url=ops_url,
                                    running=bool(pod and conditions.pod_ready(pod)),
                                    log_path=str(self.run_dir / "logs" / f"{inst}.log")))
        return out

    def _urls(self, component: str, instance: str, ip: str) -> tuple[str | None, str | None]:
        """(api, ops) base URLs of a node, gate or inspector: the pod's own IP where this machine routes
        to pods (the binaries provider), else a port-forward that follows the instance's current pod."""
        names = _COMPONENT_PORTS.get(component)
        if names is None:
            return None, None
        api_port, ops_port = (self.ports[n] for n in names)
        if self._direct():
            return (f"http://{ip}:{api_port}", f"http://{ip}:{ops_port}") if ip else (None, None)
        return (self._forward(f"{instance}:{api_port}", instance, api_port).url(),
                self._forward(f"{instance}:{ops_port}", instance, ops_port).url())

    def instance(self, name: str) -> Instance:
        for inst in self.instances(naming.pod_for_instance(name)[0]):
            if inst.name == name:
                return inst
        raise KeyError(name)

    # --- endpoints ---------------------------------------------------------------------------------

    def _pod_ip(self, pod: str) -> str:
        """The pod's IP, cached for a second (every forwarded connection asks; a StatefulSet pod keeps
        its name but not its IP across a restart, so the cache must be short)."""
        hit = self._ip_cache.get(pod)
        if hit is not None and time.monotonic() - hit[1] < 1.0:
            return hit[0]
        got: Any = self.core.read_namespaced_pod(pod, self.namespace)  # typed client: every field Optional
        ip = got.status.pod_ip
        if not ip:
            raise PlatformError(f"{pod} has no IP yet")
        self._ip_cache[pod] = (str(ip), time.monotonic())
        return str(ip)

    def _direct(self) -> bool:
        """Whether this machine reaches pod IPs itself (then forwards go straight to them)."""
        if self._direct_ok is None:
            import socket

            self._direct_ok = False
            for p in self._pods("etcd"):
                ip = p.get("status", {}).get("podIP")
                if ip and conditions.pod_ready(p):
                    with contextlib.suppress(OSError), socket.create_connection((ip, 2379), timeout=2):
                        self._direct_ok = True
                    break
            log.info("pod IPs %s from here: %s", "reachable" if self._direct_ok else "not reachable",
                     "direct TCP forwards" if self._direct_ok else "API server port-forwards")
        return self._direct_ok

    def _new_forward(self, pod: Any, port: int) -> PortForward:
        return PortForward(self.core, self.namespace, pod, port, ip_of=self._pod_ip if self._direct() else None)

    def _forward(self, key: str, instance: str, port: int) -> PortForward:
        if key not in self._forwards:
            self._forwards[key] = self._new_forward(lambda: self.pod_name(instance), port)
        return self._forwards[key]

    def _etcd_pod(self) -> str:
        ready = [p["metadata"]["name"] for p in self._pods("etcd") if conditions.pod_ready(p)]
        return ready[0] if ready else naming.statefulset_pod("etcd", 0)

    def endpoints(self) -> Endpoints:
        gates = [self._forward(f"gate-{i}", f"gate-{i}", self.ports["gate_http"]).url()
                 for i in range(len(self._slot_table("gate")))]
        inspector = (self._forward("inspector", "inspector", self.ports["inspector_http"]).url()
                     if self.spec.inspector else None)
        if "etcd" not in self._forwards:
            self._forwards["etcd"] = self._new_forward(self._etcd_pod, 2379)
        return Endpoints(gates=gates, inspector=inspector, etcd=[self._forwards["etcd"].address],
                         postgres_dsn_redacted=f"postgresql://goverse:***@goverse-postgres.{self.namespace}:5432/goverse",
                         prefix=self.spec.prefix, shards=self.spec.shards)

    def gate_urls(self, only_running: bool = False) -> dict[str, str]:
        """Gate instance -> client API base URL (a port-forward that follows the slot's current pod)."""
        out = {}
        for i, pod in enumerate(self._slot_table("gate")):
            if only_running and pod is None:
                continue
            out[f"gate-{i}"] = self._forward(f"gate-{i}", f"gate-{i}", self.ports["gate_http"]).url()
        return out

    def persisted_objects(self, object_ids: list[str]) -> dict[str, Any]:
        """What PostgreSQL holds for these objects (``goverse_objects.data`` by id) — the stored-state
        oracle of the chaos scenarios (see the local platform's method for why). Read through a
        port-forward to the PostgreSQL pod (NetworkPolicies do not apply to it) with the credentials
        in the run's Secret, read afresh each time because the secret-rotation scenario changes them;
        the password stays in memory."""
        import psycopg

        user, password = self._pg_credentials()
        if "postgres" not in self._forwards:
            self._forwards["postgres"] = self._new_forward(lambda: naming.statefulset_pod("postgres", 0), 5432)
        host, port = self._forwards["postgres"].address.rsplit(":", 1)
        try:
            with psycopg.connect(host=host, port=int(port), user=user, password=password, dbname="goverse",
                                 connect_timeout=5) as conn:
                rows = conn.execute("SELECT object_id, data FROM goverse_objects WHERE object_id = ANY(%s)",
                                    (list(object_ids),)).fetchall()
        except psycopg.Error as exc:
            raise PlatformError(f"reading goverse_objects failed: {type(exc).__name__}") from None
        return {str(r[0]): r[1] for r in rows}

    def _pg_credentials(self) -> tuple[str, str]:
        """(user, password) from the run's Secret, read afresh (secret rotation changes them)."""
        import base64

        sec = self.core.read_namespaced_secret("goverse-postgres", self.namespace).data or {}
        user = base64.b64decode(sec.get("postgres-user", "")).decode() or "goverse"
        return user, base64.b64decode(sec.get("postgres-password", "")).decode()

    def postgres_password(self) -> str:
        """The stack's PostgreSQL password as the pods see it (the Secret); kept in memory only."""
        return self._pg_credentials()[1]

    # --- controls ----------------------------------------------------------------------------------

    def delete_pod(self, pod: str, grace_period: int | None = None) -> str:
        """Delete a pod (``grace_period=0``: at once, like SIGKILL); returns its uid."""
        obj = self.core.read_namespaced_pod(pod, self.namespace)
        uid = str(obj.metadata.uid) if obj.metadata is not None else ""
        self.core.delete_namespaced_pod(pod, self.namespace, grace_period_seconds=grace_period)
        return uid

    def kill(self, name: str, sig: int = _signal.SIGKILL) -> None:
        """SIGKILL: from the node when the harness runs on it (the container's processes get a real
        SIGKILL and the kubelet restarts the container in place), else pod deletion with grace 0 —
        which a kubelet still carries out as SIGTERM and SIGKILL 2 s later (its minimum grace), so a
        process that flushes on SIGTERM is not really killed. SIGTERM: graceful pod deletion."""
        if sig == _signal.SIGKILL and self.node_access():
            self._sigkill_from_node(name)
        elif sig == _signal.SIGKILL:
            self.delete_pod(self.pod_name(name), grace_period=0)
        elif sig == _signal.SIGTERM:
            self.delete_pod(self.pod_name(name))
        else:
            raise Unsupported(f"Kubernetes delivers only SIGTERM (graceful delete) and SIGKILL (grace 0), "
                              f"not {_signal.Signals(sig).name}")

    def stop(self, name: str, graceful: bool = True) -> int | None:
        raise Unsupported("on Kubernetes a stopped pod is recreated at once by its controller; "
                          "use kill/restart, or scale the component down")

    def terminate(self, name: str) -> Termination:
        """SIGTERM the way Kubernetes does it: delete the pod with its grace period. The kubelet runs the
        container's ``preStop`` hook first and sends SIGTERM when it returns, so the SIGTERM time is the
        deletion time plus the hook's sleep (a ``sleep`` action lasts exactly that long); the exit is
        when the pod's status first reports the container terminated. The controller then recreates
        the pod: ``start`` waits for it."""
        component = naming.pod_for_instance(name)[0]
        pod = self.pod_name(name)
        got: Any = self.core.read_namespaced_pod(pod, self.namespace)
        prestop = prestop_sleep_s(self.core.api_client.sanitize_for_serialization(got), component)
        codes = self._watch_exit_code(pod)
        t_delete = time.monotonic()
        self.delete_pod(pod, grace_period=None)
        grace = float(got.spec.termination_grace_period_seconds or 30)
        codes["thread"].join(timeout=grace + 30)
        t_exit = codes.get("t")
        if t_exit is None:
            raise PlatformError(f"{pod}: no terminated container status was seen within {grace + 30:.0f} s")
        self.exit_codes[name] = codes.get("code")
        return Termination(t_sigterm=t_delete + prestop, t_exit=float(t_exit), code=codes.get("code"))

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

    def _sigkill_from_node(self, name: str) -> None:
        import os

        from harness.platforms.kubernetes import nodeaccess

        pod: Any = self.core.read_namespaced_pod(self.pod_name(name), self.namespace)
        uid = str(pod.metadata.uid)
        restarts = sum(int(c.restart_count or 0) for c in pod.status.container_statuses or [])
        victims = [p for p in nodeaccess.pod_pids(uid) if not nodeaccess.is_sandbox(p)]
        if not victims:
            raise PlatformError(f"{name}: no container process of pod {pod.metadata.name} on this node")
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, _signal.SIGKILL)
        self._killed[name] = (uid, restarts)

    def crash_looping(self, name: str) -> bool:
        """Whether the kubelet holds the instance's container in CrashLoopBackOff (its next start may be
        up to minutes away)."""
        pod: Any = self.core.read_namespaced_pod(self.pod_name(name), self.namespace)
        return any(c.state is not None and c.state.waiting is not None and c.state.waiting.reason == "CrashLoopBackOff"
                   for c in pod.status.container_statuses or [])

    def bring_back(self, name: str) -> str:
        """After a kill held down (``start``'s counterpart): the pod is replaced (deleted, recreated by
        its controller), like a machine that comes back. Waiting for the in-place restart instead
        leaves the return to the kubelet's back-off: a node that could not reach etcd while cut off
        exits at start-up, so by the heal its container has crash-looped and its next start may be
        40 s or more away (seen: not ready 65 s after the heal)."""
        was = "in CrashLoopBackOff" if self.crash_looping(name) else "not crash-looping"
        killed = self._killed.pop(name, None)
        if killed is not None:
            try:  # in place first: same pod, same IP, as a local process comes back under its address
                self._wait_restarted_in_place(name, killed[0], killed[1], self.spec.timers.failover_budget(40))
                return f"restarted in place (its container was {was})"
            except TimeoutError:
                pass
        self.restart(name, graceful=False)
        return f"pod replaced (its container was {was}; not back in place in time)"

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

    def mark_killed(self, name: str, uid: str, restarts: int) -> None:
        """Record that the instance's container died in place (pod ``uid``, ``restarts`` before), so
        ``bring_back``/``start`` wait for the kubelet's restart of it (or replace the pod)."""
        self._killed[name] = (uid, restarts)

    def _wait_restarted_in_place(self, name: str, uid: str, restarts: int, timeout: float) -> None:
        def back() -> bool:
            pod: Any = self.core.read_namespaced_pod(self.pod_name(name), self.namespace)
            if str(pod.metadata.uid) != uid:
                return False  # replaced instead: the generic wait below handles it
            now = sum(int(c.restart_count or 0) for c in pod.status.container_statuses or [])
            ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
            return now > restarts and ready

        wait_until(back, timeout, f"{name} restarted in place and ready", interval=0.2)

    def start(self, name: str) -> None:
        """The kubelet/controller restarts by itself: wait until the instance is ready again."""
        killed = self._killed.pop(name, None)
        if killed is not None:
            self._wait_restarted_in_place(name, killed[0], killed[1], self.spec.timers.failover_budget(60))
            return
        self._wait_instance_ready(name, None, self.spec.timers.failover_budget(60))

    def restart(self, name: str, graceful: bool = True) -> None:
        pod = self.pod_name(name)
        codes = self._watch_exit_code(pod)
        old_uid = self.delete_pod(pod, grace_period=None if graceful else 0)
        self._wait_instance_ready(name, old_uid, self.spec.timers.shutdown_grace + 120)
        codes["thread"].join(timeout=5)
        self.exit_codes[name] = codes.get("code")

    def _watch_exit_code(self, pod: str) -> dict[str, Any]:
        """Watch ``pod`` (by name) in a thread until it is deleted; ``out["code"]`` is the exit code its
        first container reported on the way out (None if it had to be killed or was never seen)."""
        import threading

        from kubernetes import watch as kwatch

        out: dict[str, Any] = {"code": None}
        got: Any = self.core.read_namespaced_pod(pod, self.namespace)
        rv = got.metadata.resource_version

        def run() -> None:
            w = kwatch.Watch()
            with contextlib.suppress(Exception):
                for ev in w.stream(self.core.list_namespaced_pod, self.namespace, resource_version=rv,
                                   field_selector=f"metadata.name={pod}", timeout_seconds=180):
                    for st in ev["object"].status.container_statuses or []:
                        term = st.state.terminated if st.state else None
                        if term is not None and term.exit_code is not None:
                            out["code"] = int(term.exit_code)
                            out.setdefault("t", time.monotonic())
                    if ev["type"] == "DELETED":
                        w.stop()

        out["thread"] = threading.Thread(target=run, daemon=True)
        out["thread"].start()
        return out

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

    _NO_NODE = ("the harness does not run on this cluster's node (pod cgroups and network namespaces are "
                "out of reach; the binaries provider's cluster has them)")

    # why node access does not stand in for Chaos Mesh here (docs/kubernetes.md "Faults on Kubernetes")
    _NO_NODE_LATENCY = ("; node access has no link delay: one on a pod's interface needs the kernel's netem "
                        "qdisc (absent on our machines), and a redirect to a delaying proxy would miss the "
                        "pooled connections")
    _NO_NODE_DISK = ("; node access cannot fault PostgreSQL's volume: it is a hostPath directory on the "
                     "machine's root filesystem (filling it fills the machine; a mount over it does not "
                     "reach the running container)")

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

    def pod_uid(self, instance: str) -> str:
        got: Any = self.core.read_namespaced_pod(self.pod_name(instance), self.namespace)
        return str(got.metadata.uid)

    def pause(self, name: str) -> None:
        """Freeze every process of the instance's pod through its cgroup freezer (SIGSTOP's effect)."""
        from harness.platforms.kubernetes import nodeaccess

        if not self.node_access():
            raise Unsupported(f"pause needs the pod's cgroup freezer: {self._NO_NODE}")
        uid = self.pod_uid(name)
        f = nodeaccess.freeze(uid, True)
        self._frozen[name] = uid
        wait_until(lambda: nodeaccess.is_frozen(f), 10, f"{name}'s pod frozen", interval=0.05)

    def resume(self, name: str) -> None:
        from harness.platforms.kubernetes import nodeaccess

        uid = self._frozen.pop(name, None)
        if uid is None:
            raise PlatformError(f"{name} is not paused")
        with contextlib.suppress(Unsupported):  # the pod is gone (deleted while frozen): nothing to thaw
            nodeaccess.freeze(uid, False)

    def scale(self, component: str, n: int) -> list[str]:
        """Scale nodes (StatefulSet) or gates (Deployment) to ``n``; returns the instances added/removed."""
        if component not in ("node", "gate"):
            raise Unsupported(f"only nodes and gates scale, not {component}")
        before = {i.name for i in self.instances(component)}
        kind, name = naming.WORKLOADS[component]
        k8s.patch_merge(self.dyn, "apps/v1", kind, name, self.namespace, {"spec": {"replicas": n}})
        self.wait_rollout(component, self.spec.timers.failover_budget(120))
        after = {i.name for i in self.instances(component)}
        return sorted(before ^ after)

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

    def rollout_restart(self, component: str) -> None:
        """``kubectl rollout restart``: a new pod-template annotation makes the controller roll every pod."""
        kind, name = naming.WORKLOADS[component]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        k8s.patch_merge(self.dyn, "apps/v1", kind, name, self.namespace, {"spec": {"template": {"metadata": {
            "annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}})

    def patch_configmap(self, name: str, data: Mapping[str, str]) -> None:
        k8s.patch_merge(self.dyn, "v1", "ConfigMap", name, self.namespace, {"data": dict(data)})

    def patch_secret(self, name: str, string_data: Mapping[str, str]) -> None:
        """Merge ``stringData`` (the API server encodes it); mounted files follow within the kubelet's sync."""
        k8s.patch_merge(self.dyn, "v1", "Secret", name, self.namespace, {"stringData": dict(string_data)})

    # --- cluster state oracles ---------------------------------------------------------------------

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

    def wait_converged(self, timeout: float) -> float:
        t0 = time.monotonic()
        view = self._etcd_view()
        wait_until(lambda: view.state().converged, timeout,
                   "shard map converged (every shard target == current, owner alive)",
                   interval=0.2, describe=lambda: str(view.state().summary(self.advertise_names())))
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
            "latency": None if chaos_ok else no_cm + (self._NO_NODE_LATENCY if self.node_access() else ""),
            "timeout": None if chaos_ok else no_cm,
            "reset": "no TCP-reset fault in Chaos Mesh",
            "cpu-stress": None if chaos_ok or self._node_cgroup("cpu") else no_cm,
            "memory-pressure": None if chaos_ok or self._node_cgroup("memory") else no_cm,
            # named as Fault.kind, like the local platform's: the scenarios ask for these names
            "disk-full": None if chaos_ok else no_cm + (self._NO_NODE_DISK if self.node_access() else ""),
            "disk-latency": None if chaos_ok else no_cm + (self._NO_NODE_DISK if self.node_access() else ""),
            "disk-eio": None if chaos_ok else no_cm + (self._NO_NODE_DISK if self.node_access() else ""),
        }

    # --- logs and teardown -------------------------------------------------------------------------

    def collect_logs(self) -> Path:
        """Every container's log (and the previous one after a restart) into ``<run_dir>/logs``."""
        out = self.run_dir / "logs"
        out.mkdir(parents=True, exist_ok=True)
        for pod in self.core.list_namespaced_pod(self.namespace).items:
            if pod.spec is None or pod.metadata is None or not pod.metadata.name:
                continue
            names = [c.name for c in (pod.spec.init_containers or []) + pod.spec.containers]
            for c in names:
                for previous in (False, True):
                    with contextlib.suppress(Exception):
                        text = self.core.read_namespaced_pod_log(pod.metadata.name, self.namespace, container=c,
                                                                 previous=previous, _request_timeout=20)
                        suffix = ".previous" if previous else ""
                        (out / f"{pod.metadata.name}.{c}{suffix}.log").write_text(text)
        return out

    def collect_evidence(self) -> Path:
        """Pod logs, the namespace's events and every pod's full object (what ``kubectl describe`` shows)
        into ``<run_dir>/logs``: called at every teardown, before the namespace goes."""
        out = self.collect_logs()
        import yaml

        san = self.core.api_client.sanitize_for_serialization
        with contextlib.suppress(Exception):
            events = sorted(san(self.core.list_namespaced_event(self.namespace)).get("items", []),
                            key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
            lines = [f"{e.get('lastTimestamp') or e.get('eventTime')} {e.get('type')} {e.get('reason')} "
                     f"{e['involvedObject'].get('kind')}/{e['involvedObject'].get('name')}: {e.get('message')}"
                     for e in events]
            (out / "events.txt").write_text("\n".join(lines) + "\n")
        with contextlib.suppress(Exception):
            pods = san(self.core.list_namespaced_pod(self.namespace)).get("items", [])
            (out / "pods.yaml").write_text(yaml.safe_dump_all(pods))
        return out

    def teardown(self) -> None:
        """Save evidence, close port-forwards, recover chaos, delete the namespace and wait until it is
        gone. Idempotent."""
        if self._torn_down:
            return
        self._torn_down = True
        for name in list(self._frozen):  # a frozen pod cannot even be killed: thaw before deleting
            with contextlib.suppress(Exception):
                self.resume(name)
        for key, lim in list(self.limits.items()):  # a fault whose heal never ran (nemesis heals first)
            with contextlib.suppress(Exception):
                lim.heal()
            self.limits.pop(key, None)
        self.stop_all_adhoc(grace=0.0)  # saves their logs; the namespace's deletion would take them anyway
        try:
            self.collect_evidence()
        except Exception as exc:  # noqa: BLE001 - evidence is best effort; teardown must go on
            log.warning("saving pod logs/events of %s failed: %s", self.namespace, exc)
        for pf in self._forwards.values():
            pf.close()
        self._forwards.clear()
        if self._on_teardown is not None:
            self._on_teardown(self)

