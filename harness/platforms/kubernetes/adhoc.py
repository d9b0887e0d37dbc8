"""Ad-hoc instances on Kubernetes: extra node/gate/inspector pods beside the stack (``AdhocInstances``).

Why pods and not processes on this machine: the runtime conformance checks (§2.1 readiness life, §2.2
drain, §2.3 environment, 2.6-log-level) judge how the stack behaves *where it runs*; on Kubernetes
that is a pod built from the stack's own pod template (``adhocspec``) in the run's namespace, with its
own config (a ConfigMap), etcd prefix and database.

How the ``Process`` contract maps onto a pod (:class:`AdhocPod`):

- ``host`` is the pod's IP (its config listens on every interface; the harness probes the IP, so
  this needs a machine that routes to pods — the binaries provider's; elsewhere ``Unsupported``);
- ``signal`` is a real signal: from the node (``/proc``) when the harness runs on it, else through the
  exec API (``kill`` from inside the container; SIGKILL there is a pod deletion with grace 0, as a
  PID 1 cannot be killed from inside its namespace). Unlike pod deletion this keeps the pod, so its
  exit code and log stay readable, and the SIGTERM time is the harness's own;
- ``returncode``/``wait`` come from the pod's status (``restartPolicy: Never``), kept current by one
  watch over the run's ad-hoc pods (the experiments poll ``is_running`` at 10-20 Hz: a watch, not
  that many API calls);
- ``stop`` is SIGTERM, then SIGKILL after the grace; the log is saved into the run directory
  (``logs/<name>.log``, where 2.6-no-secrets-in-logs searches) and the pod deleted and waited for.

Everything carries the run label, so the namespace's deletion removes what a crash left;
``stop_all_adhoc`` removes pods, ConfigMaps and NetworkPolicies and is what the conformance module's
finalizer calls (tests/platforms/kubernetes/test_k8s_adhoc.py proves nothing stays).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal as _signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.platforms.base import GateAddr, InspectorAddr, LinkProxy, NodeAddr, PlatformError, StackSpec, Unsupported
from harness.platforms.kubernetes import adhocspec, goyaml, naming
from harness.platforms.kubernetes import apply as k8s

log = logging.getLogger(__name__)


class PodStates:
    """The latest object of every ad-hoc pod of the run, from one watch thread; ``exits`` keeps, per pod
    uid, the exit code and the monotonic time its termination was first seen."""

    def __init__(self, core: Any, namespace: str) -> None:
        self.core = core
        self.namespace = namespace
        self.selector = f"{naming.NAME_LABEL}={adhocspec.ADHOC_NAME}"
        self.pods: dict[str, dict[str, Any]] = {}
        self.exits: dict[str, tuple[int | None, float]] = {}
        self.seen: set[str] = set()  # uids the watch has reported at least once
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._relist()
            self._thread = threading.Thread(target=self._run, name="adhoc-pods", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _relist(self) -> str:
        listing = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector, _request_timeout=20)
        san = self.core.api_client.sanitize_for_serialization
        with self._cond:
            self.pods = {}
            for item in listing.items:
                self._see(san(item))
            self._cond.notify_all()
        return str(listing.metadata.resource_version)

    def _see(self, obj: dict[str, Any], deleted: bool = False) -> None:
        meta = obj.get("metadata") or {}
        name, uid = str(meta.get("name")), str(meta.get("uid"))
        self.seen.add(uid)
        term = adhocspec.termination(obj)
        if term is not None and uid not in self.exits:
            self.exits[uid] = (term["exit_code"], time.monotonic())
        if deleted:
            if (self.pods.get(name) or {}).get("metadata", {}).get("uid") == uid:
                self.pods.pop(name, None)
        else:
            self.pods[name] = obj

    def _run(self) -> None:
        from kubernetes import watch as kwatch

        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                w = kwatch.Watch()
                for ev in w.stream(self.core.list_namespaced_pod, self.namespace, label_selector=self.selector,
                                   resource_version=rv, timeout_seconds=20, _request_timeout=30):
                    if self._stop.is_set():
                        w.stop()
                        break
                    if ev["type"] == "ERROR":
                        rv = None
                        break
                    raw = ev["raw_object"]
                    rv = str((raw.get("metadata") or {}).get("resourceVersion") or rv)
                    with self._cond:
                        self._see(raw, deleted=ev["type"] == "DELETED")
                        self._cond.notify_all()
            except Exception as exc:  # noqa: BLE001 - a broken watch is re-listed; the waits have deadlines
                log.debug("ad-hoc pod watch restarts: %s", exc)
                rv = None
                self._stop.wait(0.5)

    def get(self, pod: str) -> dict[str, Any] | None:
        with self._cond:
            return self.pods.get(pod)

    def exit_of(self, uid: str) -> tuple[int | None, float] | None:
        with self._cond:
            return self.exits.get(uid)

    def wait(self, what: str, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate`` (evaluated under the lock) holds or ``timeout`` passes."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    log.debug("ad-hoc pods: %s not reached in %.1f s", what, timeout)
                    return False
                self._cond.wait(min(left, 1.0))
            return True


class AdhocPod:
    """One ad-hoc pod as a :class:`~harness.platforms.base.Process` (see the module docstring)."""

    def __init__(self, owner: KubernetesAdhoc, name: str, pod: str, component: str, uid: str) -> None:
        self.owner = owner
        self.name = name
        self.pod = pod
        self.component = component
        self.uid = uid
        self.pod_name = self.pod
        self._host = ""

    @property
    def host(self) -> str:
        """The pod's IP, where the instance listens (its config says 0.0.0.0). Waited for on first use,
        so several pods are created at once and start together, as local processes do."""
        if not self._host:
            states = self.owner._adhoc_states

            def placed() -> bool:
                return bool(self._ip()) or self.uid in states.exits

            if not states.wait(f"{self.pod} has an IP", placed, 120.0):
                raise PlatformError(f"ad-hoc pod {self.pod} got no IP within 120 s")
            self._host = self._ip()
        return self._host

    def _ip(self) -> str:
        obj = self.owner._adhoc_states.pods.get(self.pod) or {}
        if (obj.get("metadata") or {}).get("uid") != self.uid:
            return ""
        return str((obj.get("status") or {}).get("podIP") or "")

    @property
    def pid(self) -> int | None:
        return None  # a pid inside the pod's own namespace would match every other pod's

    @property
    def returncode(self) -> int | None:
        ex = self.owner._adhoc_states.exit_of(self.uid)
        return None if ex is None else ex[0]

    def exited_at(self) -> float | None:
        ex = self.owner._adhoc_states.exit_of(self.uid)
        return None if ex is None else ex[1]

    def is_running(self) -> bool:
        """Not ended yet (a pod still being created counts: the instance has not exited)."""
        states = self.owner._adhoc_states
        if states.exit_of(self.uid) is not None:
            return False
        obj = states.get(self.pod)
        if obj is None or (obj.get("metadata") or {}).get("uid") != self.uid:
            return self.uid not in states.seen  # created, not reported by the watch yet; or deleted
        return (obj.get("status") or {}).get("phase") not in ("Succeeded", "Failed")

    def signal(self, sig: int) -> None:
        """A real signal to the container's process (see the module docstring)."""
        if not self.is_running():
            return
        if self.owner.node_access():
            from harness.platforms.kubernetes import nodeaccess

            try:
                pid: int | None = nodeaccess.container_pid(self.uid)
            except Unsupported:  # not started yet, just ended, or on another node: the API's way below
                pid = None
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                return
            if not self.is_running():
                return
        if sig == _signal.SIGKILL:
            self.owner.core.delete_namespaced_pod(self.pod, self.owner.namespace, grace_period_seconds=0)
            return
        from kubernetes.stream import stream

        stream(self.owner.core.connect_get_namespaced_pod_exec, self.pod, self.owner.namespace,
               container=self.component, command=["sh", "-c", f"kill -s {_signal.Signals(sig).name[3:]} 1"],
               stderr=True, stdin=False, stdout=True, tty=False, _request_timeout=20)

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code once the container ended, ``None`` if it still runs after ``timeout``."""
        states = self.owner._adhoc_states

        def ended() -> bool:
            here = (states.pods.get(self.pod) or {}).get("metadata", {}).get("uid") == self.uid
            return self.uid in states.exits or (self.uid in states.seen and not here)

        states.wait(f"{self.pod} ended", ended, 3600.0 if timeout is None else timeout)
        return self.returncode

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, SIGKILL after ``grace``; the exit code (137 after SIGKILL, as the kubelet reports it)."""
        if self.is_running():
            self.signal(_signal.SIGTERM)
            if self.wait(grace) is None and self.is_running():
                self.signal(_signal.SIGKILL)
                self.wait(30.0)
        return self.returncode


class KubernetesAdhoc:
    """The ``AdhocInstances`` capability of ``KubernetesDeployment`` (a mixin: it uses the deployment's
    API clients, namespace, run id, port-forwards and node access)."""

    spec: StackSpec
    namespace: str
    run_id: str
    run_dir: Path
    core: Any
    dyn: Any
    _forwards: dict[str, Any]

    # provided by KubernetesDeployment
    def node_access(self) -> bool: ...  # type: ignore[empty-body]
    def _direct(self) -> bool: ...  # type: ignore[empty-body]
    def _pg_credentials(self) -> tuple[str, str]: ...  # type: ignore[empty-body]
    def _new_forward(self, pod: Any, port: int) -> Any: ...
    def _etcd_pod(self) -> str: ...  # type: ignore[empty-body]
    def _pod_ip(self, pod: str) -> str: ...  # type: ignore[empty-body]

    @property
    def _adhoc_states(self) -> PodStates:
        states = self.__dict__.get("_adhoc_states_obj")
        if states is None:
            states = self.__dict__["_adhoc_states_obj"] = PodStates(self.core, self.namespace)
            states.start()
        return states

    def _adhoc_pods(self) -> dict[str, AdhocPod]:
        return self.__dict__.setdefault("_adhoc_pods_map", {})

    # ---- config, database, links ---------------------------------------------------------------------
    def adhoc_config(self, prefix: str, database: str, nodes: Sequence[NodeAddr] = (),
                     gates: Sequence[GateAddr] = (), inspector: InspectorAddr | None = None,
                     etcd: list[str] | None = None, pg: tuple[str, int] | None = None,
                     pg_password: str = "") -> dict[str, Any]:
        """The config of an ad-hoc cluster in pods (``adhocspec.adhoc_config``); the password is never in
        it (the pods read the Secret's file)."""
        if self.spec.stack != "reference":
            raise Unsupported("ad-hoc pods run the reference stack only (Goverse renders its config per pod "
                              "with an init container, which ad-hoc pods do not have)")
        return adhocspec.adhoc_config(self.spec, prefix, database, self._pg_credentials()[0], nodes, gates,
                                      inspector, etcd=etcd, pg=pg)

    def redacted_config(self, doc: dict[str, Any]) -> dict[str, Any]:
        from harness.platforms.local.config_render import redacted

        return redacted(doc)

    def adhoc_config_file(self, name: str, doc: dict[str, Any], copy: Path) -> str:
        """A ConfigMap ``gvh-adhoc-<name>`` holding ``doc``; the path its pods find it under."""
        cm = adhocspec.pod_name(f"gvh-adhoc-{name}")
        k8s.apply(self.dyn, adhocspec.config_map(cm, self.namespace, self.run_id, goyaml.dump(doc)))
        self.__dict__.setdefault("_adhoc_cms", set()).add(cm)
        return adhocspec.config_path(cm)

    def adhoc_etcd_endpoints(self) -> list[str]:
        """The stack's etcd as the harness reaches it: the etcd pod's IP where this machine routes to pods
        (ad-hoc pods need that anyway; a link proxy then makes one hop, not two), else its forward."""
        if self._direct():
            return [f"{self._pod_ip(self._etcd_pod())}:2379"]
        if "etcd" not in self._forwards:
            self._forwards["etcd"] = self._new_forward(self._etcd_pod, 2379)
        return [str(self._forwards["etcd"].address)]

    def adhoc_postgres(self) -> tuple[str, int]:
        if self._direct():
            return self._pod_ip(naming.statefulset_pod("postgres", 0)), 5432
        if "postgres" not in self._forwards:
            self._forwards["postgres"] = self._new_forward(lambda: naming.statefulset_pod("postgres", 0), 5432)
        host, port = str(self._forwards["postgres"].address).rsplit(":", 1)
        return host, int(port)

    def create_adhoc_database(self, name: str) -> None:
        """``CREATE DATABASE`` as the stack's user (the image's superuser) through the PostgreSQL forward."""
        import psycopg
        from psycopg import sql

        user, password = self._pg_credentials()
        host, port = self.adhoc_postgres()
        try:
            with psycopg.connect(host=host, port=port, user=user, password=password, dbname="goverse",
                                 connect_timeout=10, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                           sql.Identifier(user)))
        except psycopg.Error as exc:
            raise PlatformError(f"creating the ad-hoc database {name} failed: {type(exc).__name__}: "
                                f"{str(exc).replace(password, '***') if password else exc}") from None

    def link_proxy(self) -> LinkProxy:
        """A TCP fault proxy in the harness that pods can reach: listening on the node's own address,
        which needs the harness to run on the cluster's node (the binaries provider)."""
        from harness.platforms.local.deployment.adhoc import ProxyLinks
        from harness.platforms.local.faultproxy import FaultProxy

        if not self.node_access():
            raise Unsupported("a link proxy between ad-hoc pods and etcd/PostgreSQL must run where pods reach "
                              "it; the harness does not run on this cluster's node")
        host = self._node_address()
        return ProxyLinks(FaultProxy(default_listen_host=host))

    def _node_address(self) -> str:
        """The node's InternalIP, if it is an address of this machine (pods route to it)."""
        node_name = None
        for obj in self._adhoc_states.pods.values():
            node_name = (obj.get("spec") or {}).get("nodeName") or node_name
        nodes = self.core.list_node(_request_timeout=20).items
        for n in nodes:
            if node_name and n.metadata.name != node_name:
                continue
            for addr in n.status.addresses or []:
                if addr.type == "InternalIP":
                    with contextlib.suppress(OSError), socket.socket() as s:
                        s.bind((addr.address, 0))
                        return str(addr.address)
        raise Unsupported("no InternalIP of the cluster's node is an address of this machine")

    # ---- pods -----------------------------------------------------------------------------------------
    def spawn_adhoc(self, component: str, name: str, env: dict[str, str | None] | None = None,
                    extra_args: list[str] | tuple[str, ...] = ()) -> AdhocPod:
        """Create the ad-hoc pod and return at once (its ``host`` waits for the IP). A pod of the same
        name left from an earlier start (a restart) is finished first: log saved, deleted, gone."""
        if component not in ("node", "gate", "inspector"):
            raise Unsupported(f"spawn_adhoc: component must be node, gate or inspector, got {component!r}")
        if not self._direct():
            raise Unsupported("ad-hoc pods are observed at their pod IP, which this machine does not route to "
                              "(API-server port-forwards to pods the harness creates are not implemented)")
        pods = self._adhoc_pods()
        generation = 0
        if name in pods:
            if pods[name].is_running():
                raise PlatformError(f"ad-hoc instance {name!r} is already running")
            generation = self.__dict__.setdefault("_adhoc_generations", {}).get(name, 0) + 1
            # a restart: the new pod gets its own name and starts at once; the old one's deletion is
            # waited for at the next stop (``_finish``), not here (on a loaded node that took seconds)
            self._finish(name, wait_gone=False)
        self.__dict__.setdefault("_adhoc_generations", {})[name] = generation
        pod_name = adhocspec.pod_name(name if not generation else f"{name}-r{generation}")
        self._ensure_policies()
        kind, workload = naming.WORKLOADS[component]
        obj = k8s.resource(self.dyn, "apps/v1", kind).get(name=workload, namespace=self.namespace).to_dict()
        password = self._pg_credentials()[1]
        secret_values = {password: (adhocspec.PG_SECRET, "postgres-password")} if password else {}
        grace = int(self.spec.timers.shutdown_grace) + 5
        body = adhocspec.adhoc_pod(obj["spec"]["template"], component, pod_name, self.namespace, self.run_id,
                                   list(extra_args), env or {}, grace, secret_values)
        self._adhoc_states.start()
        created = self.core.create_namespaced_pod(self.namespace, body, _request_timeout=30)
        proc = AdhocPod(self, name, pod_name, component, str(created.metadata.uid))
        pods[name] = proc
        return proc

    def _ensure_policies(self) -> None:
        if not self.__dict__.get("_adhoc_policies"):
            for doc in adhocspec.network_policies(self.namespace, self.run_id):
                k8s.apply(self.dyn, doc)
            self.__dict__["_adhoc_policies"] = True

    def stop_adhoc(self, name: str, grace: float | None = None) -> int | None:
        """SIGTERM, SIGKILL after ``grace`` (default: the stack's shutdown grace + 2 s); the log is kept
        and the pod deleted. The exit code; ``None`` if it was never started."""
        proc = self._adhoc_pods().get(name)
        if proc is None:
            return None
        code = proc.stop(self.spec.timers.shutdown_grace + 2 if grace is None else grace)
        self._finish(name)
        return code

    def _finish(self, name: str, wait_gone: bool = True) -> None:
        """Save the pod's log (appended: a restarted instance keeps one file, as locally) and delete the
        pod; wait until it is gone, and every earlier pod of the instance (``wait_gone=False`` leaves
        that to the next call)."""
        proc = self._adhoc_pods().pop(name, None)
        if proc is None:
            return
        try:
            text = str(self.core.read_namespaced_pod_log(proc.pod, self.namespace, _request_timeout=20))
        except Exception as exc:  # noqa: BLE001 - named below: an unread log must not look like silence
            text = ""
            self.__dict__.setdefault("_adhoc_unread", {})[name] = f"{type(exc).__name__}: {exc}"[:300]
        out = self.run_dir / "logs"
        out.mkdir(parents=True, exist_ok=True)
        with (out / f"{name}.log").open("a", encoding="utf-8") as f:
            f.write(text)
        with contextlib.suppress(Exception):
            self.core.delete_namespaced_pod(proc.pod, self.namespace, grace_period_seconds=0)
        deleting: list[str] = self.__dict__.setdefault("_adhoc_deleting", [])
        deleting.append(proc.pod)
        if not wait_gone:
            return
        states = self._adhoc_states
        if not states.wait(f"{', '.join(deleting)} gone", lambda: not set(deleting) & set(states.pods), 60.0):
            log.warning("ad-hoc pods %s were not gone within 60 s", sorted(set(deleting) & set(states.pods)))
        deleting[:] = [p for p in deleting if p in states.pods]

    def _pod_log(self, pod: str) -> str:
        try:
            return str(self.core.read_namespaced_pod_log(pod, self.namespace, _request_timeout=20))
        except Exception:  # noqa: BLE001 - no container started yet, or the pod is gone
            return ""

    def adhoc_log(self, name: str) -> str:
        """What the instance logged: its saved log (earlier runs of it) and its live pod's. A log the
        API did not give when the pod was finished raises: silence it is not."""
        unread = self.__dict__.get("_adhoc_unread", {}).get(name)
        if unread:
            raise PlatformError(f"the log of ad-hoc pod {name} could not be read before it was deleted: {unread}")
        saved = ""
        with contextlib.suppress(OSError):
            saved = (self.run_dir / "logs" / f"{name}.log").read_text(encoding="utf-8", errors="replace")
        proc = self._adhoc_pods().get(name)
        return saved + (self._pod_log(proc.pod) if proc is not None else "")

    def stop_all_adhoc(self, grace: float = 2.0) -> None:
        """Stop and delete every ad-hoc pod, then their ConfigMaps and NetworkPolicies; never raises."""
        for name in list(self._adhoc_pods()):
            with contextlib.suppress(Exception):
                self.stop_adhoc(name, grace)
        for cm in sorted(self.__dict__.get("_adhoc_cms", set())):
            with contextlib.suppress(Exception):
                k8s.delete(self.dyn, "v1", "ConfigMap", cm, self.namespace)
        self.__dict__["_adhoc_cms"] = set()
        if self.__dict__.pop("_adhoc_policies", None):
            for doc in adhocspec.network_policies(self.namespace, self.run_id):
                with contextlib.suppress(Exception):
                    k8s.delete(self.dyn, "networking.k8s.io/v1", "NetworkPolicy", doc["metadata"]["name"],
                               self.namespace)
        states = self.__dict__.pop("_adhoc_states_obj", None)
        if states is not None:
            states.stop()

    def adhoc_leftovers(self) -> dict[str, list[str]]:
        """Ad-hoc objects of this run still in the cluster (the k8s test's proof that nothing stays)."""
        sel = f"{naming.NAME_LABEL}={adhocspec.ADHOC_NAME}"
        out: dict[str, list[str]] = {}
        for api, kind in (("v1", "Pod"), ("v1", "ConfigMap"), ("networking.k8s.io/v1", "NetworkPolicy")):
            items = k8s.resource(self.dyn, api, kind).get(namespace=self.namespace, label_selector=sel).to_dict()
            names = [i["metadata"]["name"] for i in items.get("items", [])]
            if names:
                out[kind] = names
        return out


__all__ = ["AdhocPod", "KubernetesAdhoc", "PodStates"]
