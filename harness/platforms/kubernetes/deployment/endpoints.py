"""How the harness reaches a Kubernetes stack: instances and their URLs, port-forwards (or pod IPs
where this machine routes to pods), the Deployment's endpoints and the stored-state oracle's
PostgreSQL connection."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from harness.platforms.base import Endpoints, Instance, PlatformError
from harness.platforms.kubernetes import apply as k8s
from harness.platforms.kubernetes import conditions, naming, slots
from harness.platforms.kubernetes.deployment.state import _COMPONENT_PORTS, DeploymentState
from harness.platforms.kubernetes.portforward import PortForward
from harness.platforms.pgcompact import vacuum_full

if TYPE_CHECKING:
    from harness.platforms.kubernetes.pgproxy_wiring import SidecarLink

log = logging.getLogger(__name__)


class InstancesAndEndpoints(DeploymentState):
    """Instances, their URLs and the port-forwards behind them."""

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

    def pg_proxied(self) -> bool:
        """Whether the node pods reach PostgreSQL through the fault proxy sidecar (``pgproxy_wiring``):
        read from the live StatefulSet, so a Helm deployment or the Goverse stack says no."""
        if self._pg_proxied is None:
            from harness.platforms.kubernetes import pgproxy_wiring

            sts = k8s.resource(self.dyn, "apps/v1", "StatefulSet").get(name="goverse-node", namespace=self.namespace)
            self._pg_proxied = pgproxy_wiring.wired(sts.to_dict())
        return self._pg_proxied

    def pg_proxy(self, instance: str) -> SidecarLink:
        """The control of ``instance``'s PostgreSQL fault proxy: its pod's control port, straight or
        through a port-forward that follows the instance's current pod (as its ops URL)."""
        from harness.platforms.kubernetes.pgproxy import CONTROL_PORT
        from harness.platforms.kubernetes.pgproxy_wiring import SidecarLink

        return SidecarLink(instance, self._forward(f"{instance}:pg-proxy", instance, CONTROL_PORT).url())

    def instance(self, name: str) -> Instance:
        for inst in self.instances(naming.pod_for_instance(name)[0]):
            if inst.name == name:
                return inst
        raise KeyError(name)

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

        try:
            with self._pg_connect() as conn:
                rows = conn.execute("SELECT object_id, data FROM goverse_objects WHERE object_id = ANY(%s)",
                                    (list(object_ids),)).fetchall()
        except psycopg.Error as exc:
            raise PlatformError(f"reading goverse_objects failed: {type(exc).__name__}") from None
        return {str(r[0]): r[1] for r in rows}

    def _pg_connect(self) -> Any:
        """A connection to the stack's database through a port-forward to the PostgreSQL pod."""
        import psycopg

        user, password = self._pg_credentials()
        if "postgres" not in self._forwards:
            self._forwards["postgres"] = self._new_forward(lambda: naming.statefulset_pod("postgres", 0), 5432)
        host, port = self._forwards["postgres"].address.rsplit(":", 1)
        return psycopg.connect(host=host, port=int(port), user=user, password=password, dbname="goverse",
                               connect_timeout=5, autocommit=True)

    def compact_storage(self) -> dict[str, int]:
        """``VACUUM FULL`` the stack's tables, as the local platform does before a "disk full" fault (see
        its method for why): the next writes must allocate new blocks. Returns each table's size."""
        import psycopg

        try:
            with self._pg_connect() as conn:
                return vacuum_full(conn)
        except psycopg.Error as exc:
            raise PlatformError(f"VACUUM FULL failed: {type(exc).__name__}: {exc}") from None

    def _pg_credentials(self) -> tuple[str, str]:
        """(user, password) from the run's Secret, read afresh (secret rotation changes them)."""
        import base64

        sec = self.core.read_namespaced_secret("goverse-postgres", self.namespace).data or {}
        user = base64.b64decode(sec.get("postgres-user", "")).decode() or "goverse"
        return user, base64.b64decode(sec.get("postgres-password", "")).decode()

    def postgres_password(self) -> str:
        """The stack's PostgreSQL password as the pods see it (the Secret); kept in memory only."""
        return self._pg_credentials()[1]
