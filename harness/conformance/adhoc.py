"""Ad-hoc clusters: extra stack processes under their own etcd prefix and PostgreSQL database.

Why apart from the shared stack: the runtime checks must start instances with odd environments, cut
their etcd, SIGTERM them mid-call — none of which may disturb the stack the other checks look at. A
separate etcd prefix is a separate Goverse cluster on the same etcd; a separate database is needed too
because the reference stack fences shard ownership per shard in PostgreSQL (a second cluster claiming
shard 5 in the same database would fence the first one out). Processes are started through the
platform's ``spawn_adhoc`` (local processes, or pods on Kubernetes); a platform without it makes these
checks not-applicable. Where an instance's address is only known once it runs (a pod's IP), the
process's ``host`` says it (:meth:`AdhocCluster.host_of`).
Real Goverse needs its schema in each new database (``pgadmin init``) and its password inside the
config file, so for ``stack=goverse`` configs are written where only the deployment can read them and
the run directory keeps redacted copies.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from harness.cluster_state import EtcdView
from harness.conformance.judges_config import InstanceObservation
from harness.conformance.results import redact
from harness.platforms.base import GateAddr, InspectorAddr, NodeAddr, PostgresPassword
from harness.ports import free_port
from harness.waiting import wait_until

LOOPBACK = "127.0.0.1"


def unsupported_reason(dep: Any) -> str | None:
    """Why ad-hoc instances cannot be started on this deployment (None: they can)."""
    for attr in ("spawn_adhoc", "stop_adhoc", "adhoc_config", "redacted_config", "link_proxy",
                 "adhoc_etcd_endpoints", "adhoc_postgres", "create_adhoc_database", "adhoc_config_file",
                 "adhoc_log"):
        if getattr(dep, attr, None) is None:
            return f"the {type(dep).__name__} platform cannot start ad-hoc instances (no {attr})"
    if getattr(dep.spec, "stack", "reference") != "reference" and getattr(dep, "init_goverse_schema", None) is None:
        return f"the {type(dep).__name__} platform cannot initialise Goverse's schema in an ad-hoc database"
    return None


def is_goverse(dep: Any) -> bool:
    return getattr(dep.spec, "stack", "reference") == "goverse"


def pg_password(dep: Any) -> str:
    """The stack's PostgreSQL password, from the platform (a Kubernetes Secret) or the local password
    file (never logged or reported)."""
    if isinstance(dep, PostgresPassword):
        try:
            return dep.postgres_password()
        except Exception:  # noqa: BLE001 - unknown password: the checks needing it say unknown
            return ""
    path = getattr(getattr(dep, "topology", None), "pg_password_file", None)
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclasses.dataclass
class AdhocCluster:
    """One ad-hoc cluster. ``create`` makes the database; ``stop_all`` stops what ``spawn`` started."""

    dep: Any
    tag: str
    prefix: str
    database: str
    config_dir: Path
    names: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def create(cls, dep: Any, tag: str) -> AdhocCluster:
        if not re.fullmatch(r"[a-z0-9]{1,20}", tag):
            raise ValueError(f"bad ad-hoc cluster tag {tag!r}")
        suffix = secrets.token_hex(3)
        database = f"gvh_cf_{tag}_{suffix}"
        dep.create_adhoc_database(database)
        config_dir = Path(dep.run_dir) / "adhoc"
        config_dir.mkdir(parents=True, exist_ok=True)
        cluster = cls(dep, tag, f"/gvh-conformance/{tag}-{suffix}", database, config_dir)
        if is_goverse(dep):
            dep.init_goverse_schema(cluster.write("pgadmin", cluster.config()), log_name=f"cf-{tag}-pgadmin-init")
        return cluster

    # ---- addresses and configuration -----------------------------------------------------------
    @staticmethod
    def node_addr(node_id: str, host: str = LOOPBACK) -> NodeAddr:
        return NodeAddr(node_id, host, free_port(host), free_port(host))

    @staticmethod
    def gate_addr(gate_id: str, host: str = LOOPBACK) -> GateAddr:
        return GateAddr(gate_id, host, free_port(host), free_port(host), free_port(host))

    @staticmethod
    def inspector_addr(host: str = LOOPBACK) -> InspectorAddr:
        return InspectorAddr(host, free_port(host), free_port(host))

    def etcd_endpoints(self) -> list[str]:
        """Where the harness reads the cluster's etcd (and a link proxy forwards to)."""
        return list(self.dep.adhoc_etcd_endpoints())

    def instance_etcd(self) -> list[str]:
        """The etcd endpoints the instances themselves are given (their config's)."""
        return list(self.config()["cluster"]["etcd"]["endpoints"])

    @staticmethod
    def host_of(proc: Any, configured: str) -> str:
        """The address an instance listens on: the process's own (a pod's IP) where the platform knows
        it only once it runs, else the one its config gave it."""
        return str(getattr(proc, "host", None) or configured)

    def config(self, nodes: list[NodeAddr] = (), gates: list[GateAddr] = (),  # type: ignore[assignment]
               inspector: InspectorAddr | None = None, etcd: list[str] | None = None,
               pg: tuple[str, int] | None = None) -> dict[str, Any]:
        """The cluster's YAML (as a dict) with this prefix and database; ``etcd``/``pg`` reroute the
        links (e.g. through a fault proxy)."""
        return dict(self.dep.adhoc_config(self.prefix, self.database, nodes, gates, inspector, etcd=etcd, pg=pg,
                                          pg_password=pg_password(self.dep) if is_goverse(self.dep) else ""))

    def write(self, name: str, doc: dict[str, Any]) -> Path:
        """Write a config and return the path to give the process. The run directory gets a copy
        without the password; a config holding one (real Goverse) is given from the deployment's
        private directory instead."""
        path = self.config_dir / f"{self.tag}-{name}.yaml"
        safe = self.dep.redacted_config(doc)
        path.write_text(yaml.safe_dump(safe, sort_keys=False), encoding="utf-8")
        return Path(self.dep.adhoc_config_file(f"{self.tag}-{name}", doc, path))

    # ---- processes ---------------------------------------------------------------------------------
    def spawn(self, component: str, name: str, config: Path | None, env: dict[str, str | None] | None = None,
              args: list[str] | tuple[str, ...] = ()) -> Any:
        full_name = f"cf-{self.tag}-{name}"
        argv = (["--config", str(config)] if config is not None else []) + list(args)
        proc = self.dep.spawn_adhoc(component, full_name, env=env or {}, extra_args=argv)
        self.names.append(full_name)
        return proc

    def log(self, name: str) -> str:
        """What the instance logged (its log file, or its pod's log)."""
        return str(self.dep.adhoc_log(f"cf-{self.tag}-{name}"))

    def stop(self, name: str, grace: float | None = None) -> int | None:
        return self.dep.stop_adhoc(f"cf-{self.tag}-{name}", grace)

    def stop_all(self, grace: float = 3.0) -> None:
        """Stop every instance of the cluster at once: each stop waits for its drain and (pods) for the
        deletion to finish, which one after the other added up to tens of seconds on a small cluster."""
        from concurrent.futures import ThreadPoolExecutor

        def one(full: str) -> None:
            try:
                self.dep.stop_adhoc(full, grace)
            except Exception:  # noqa: BLE001 - best effort in finalizers
                return

        names = list(dict.fromkeys(self.names))
        if names:
            with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix=f"adhoc-stop-{self.tag}") as pool:
                list(pool.map(one, names))

    # ---- observation -------------------------------------------------------------------------------
    def view(self) -> EtcdView:
        return EtcdView(self.etcd_endpoints(), self.prefix, self.dep.spec.shards)

    def info_records(self) -> dict[str, dict[str, Any]]:
        """Reference-stack extension: ``<prefix>/refstack/info/node/<advertise>`` JSON per process."""
        import etcd3gw

        host, port = self.etcd_endpoints()[0].split("://", 1)[-1].rsplit(":", 1)
        client = etcd3gw.client(host=host, port=int(port), timeout=2.0)
        out: dict[str, dict[str, Any]] = {}
        for value, meta in client.get_prefix(f"{self.prefix}/refstack/info/"):
            key = meta["key"].decode() if isinstance(meta["key"], bytes) else str(meta["key"])
            try:
                out[key[len(self.prefix) + len("/refstack/info/"):]] = json.loads(value)
            except ValueError:
                continue
        return out

    def registered_nodes(self) -> set[str]:
        return set(self.view().state().nodes)

    def observe(self, name: str, proc: Any, timeout: float, secrets_: list[str],
                expected_advertise: str | None = None) -> InstanceObservation:
        """Wait until the process registers in etcd (found by its pid in the info record, or by the
        expected advertise address) or exits; return what was seen."""
        t0 = time.monotonic()
        found: dict[str, Any] = {}

        def look() -> bool:
            # membership first: the info record is written in the same transaction, so it is there too
            nodes = self.registered_nodes()
            for key, info in self.info_records().items():
                if key.startswith("node/") and proc.pid is not None and info.get("pid") == proc.pid:
                    found.update(advertise=key[len("node/"):], node_id=info.get("id"))
            if found.get("advertise") not in nodes and expected_advertise in nodes:
                found["advertise"] = expected_advertise
                # no pid to match (a pod's): the info record under that address names the id
                info = self.info_records().get(f"node/{expected_advertise}") or {}
                found["node_id"] = info.get("id", found.get("node_id"))
            found["registered"] = found.get("advertise") in nodes
            return bool(found["registered"]) or not proc.is_running()

        wait_for(f"{name} registered in etcd or exited", look, timeout, interval=0.1)
        waited = time.monotonic() - t0
        code = None if proc.is_running() else proc.returncode
        return InstanceObservation(name=name, registered=bool(found.get("registered")),
                                   advertise=found.get("advertise"), node_id=found.get("node_id"), exit_code=code,
                                   log_tail=str(redact(_tail(self.log(name)), secrets_)), waited_s=waited)


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.05) -> bool:
    """``wait_until`` that reports a timeout as False (the judges decide what a timeout means)."""
    try:
        wait_until(probe, timeout, what, interval=interval)
        return True
    except TimeoutError:
        return False
