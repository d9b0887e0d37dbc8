"""Bringing a local stack up: etcd, PostgreSQL, the config, the process table and spawning it."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from harness.cluster_state import EtcdView
from harness.platforms.base import Instance, PlatformError, Unsupported
from harness.platforms.local.config_render import (
    GateAddr,
    InspectorAddr,
    NodeAddr,
    Topology,
    redacted,
    render_config,
    with_links,
)
from harness.platforms.local.deployment.observe import Observation
from harness.platforms.local.deployment.state import _now, _Proc, _write_private
from harness.platforms.local.deployment.wiring import FaultWiring
from harness.platforms.local.process import ManagedProcess
from harness.platforms.local.services import EtcdCluster, PostgresServer
from harness.platforms.local.sweep import OWNER_FILE, STACK_DIR_PREFIX


class BringUp(FaultWiring, Observation):
    """``up()`` and the process table it builds (argv, environment, config per instance)."""

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

    # ---- process table -----------------------------------------------------------------------------
    def _stack_argv(self, component: str, ident: str | None, config: Path | None = None) -> list[str]:
        assert self.config_path is not None
        if self.spec.stack == "reference":
            argv = [sys.executable, "-m", "harness.refstack", component, "--config", str(self.config_path)]
            if self.spec.version:
                argv += ["--version-tag", self.spec.version]
        else:
            argv = [self._goverse_bin(component), "--config", str(config or self.config_path)]
            if component == "node" and self.spec.goverse_persistence_interval:
                argv.append(f"--persistence-interval={round(self.spec.goverse_persistence_interval * 1000)}ms")
        if component == "node" and ident:
            argv += ["--node-id", ident]
        elif component == "gate" and ident:
            argv += ["--gate-id", ident]
        return argv

    def _goverse_bin(self, component: str) -> str:
        """Real Goverse: the binary of ``component`` (node, gate, inspector); Unsupported when not set."""
        binary = {"node": self.spec.goverse_node_bin, "gate": self.spec.goverse_gate_bin,
                  "inspector": self.spec.goverse_inspector_bin}[component]
        if not binary:
            raise Unsupported(f"goverse_{component}_bin is not set")
        return binary

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
