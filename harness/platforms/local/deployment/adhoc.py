"""Ad-hoc instances beside a local stack (conformance checks, seed §2.1-§2.4)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from harness.platforms.base import GateAddr, InspectorAddr, LinkProxy, NodeAddr, PlatformError, Unsupported
from harness.platforms.local.config_render import Topology, redacted, render_config
from harness.platforms.local.deployment.bringup import BringUp
from harness.platforms.local.faultproxy import FaultProxy, Latency, Timeout
from harness.platforms.local.process import ManagedProcess


class AdhocProcesses(BringUp):
    """Start and stop extra node/gate/inspector processes outside the stack's process table, and render
    the config of an ad-hoc cluster of them."""

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
            argv = [self._goverse_bin(component), *extra_args]
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


    def adhoc_config(self, prefix: str, database: str, nodes: Sequence[NodeAddr] = (),
                     gates: Sequence[GateAddr] = (), inspector: InspectorAddr | None = None,
                     etcd: list[str] | None = None, pg: tuple[str, int] | None = None,
                     pg_password: str = "") -> dict[str, Any]:
        """The YAML (as a dict) of an ad-hoc cluster under etcd ``prefix`` and PostgreSQL ``database`` on
        this stack's etcd and PostgreSQL; ``etcd``/``pg`` reroute the links (e.g. through a fault proxy),
        ``pg_password`` goes into the document (real Goverse reads it only from there)."""
        assert self.topology is not None
        topo = self.topology
        pg_host, pg_port = pg or (topo.pg_host, topo.pg_port)
        t = Topology(etcd_endpoints=list(etcd or topo.etcd_endpoints), pg_host=pg_host, pg_port=pg_port,
                     pg_user=topo.pg_user, pg_database=database, pg_password_file=topo.pg_password_file,
                     pg_password=pg_password, nodes=list(nodes), gates=list(gates), inspector=inspector)
        return render_config(dataclasses.replace(self.spec, prefix=prefix), t)

    def redacted_config(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``doc`` without its secrets (for the run directory's copy)."""
        return redacted(doc)

    def link_proxy(self) -> LinkProxy:
        """A fresh TCP fault proxy on 127.0.0.1 (``LinkProxy``); the caller stops it."""
        return ProxyLinks(FaultProxy())

    def adhoc_etcd_endpoints(self) -> list[str]:
        """The stack's etcd, as the harness and the ad-hoc processes both reach it."""
        assert self.topology is not None
        return list(self.topology.etcd_endpoints)

    def adhoc_postgres(self) -> tuple[str, int]:
        assert self.topology is not None
        return self.topology.pg_host, self.topology.pg_port

    def create_adhoc_database(self, name: str) -> None:
        """An empty database owned by the stack's user (an ad-hoc cluster's own fencing table)."""
        from psycopg import sql

        assert self.postgres is not None
        with self.postgres.admin_connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(self.postgres.user)))

    def adhoc_config_file(self, name: str, doc: dict[str, Any], copy: Path) -> str:
        """The run directory's copy itself, unless ``doc`` holds a secret (real Goverse's password):
        then a private file only the deployment reads."""
        if redacted(doc) != doc:
            return str(self.private_config(f"adhoc-{name}", doc))
        return str(copy)

    def adhoc_log(self, name: str) -> str:
        try:
            return (self.run_dir / "logs" / f"{name}.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


class ProxyLinks:
    """:class:`~harness.platforms.base.LinkProxy` over the local TCP fault proxy."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy

    def add_link(self, name: str, upstream: tuple[str, int]) -> tuple[str, int]:
        return self.proxy.add_link(name, upstream)

    def hold(self, link: str) -> None:
        self.proxy.set_toxic(link, Timeout())

    def delay(self, link: str, ms: float, direction: Literal["upstream", "downstream", "both"]) -> None:
        self.proxy.set_toxic(link, Latency(ms, direction=direction))

    def clear(self, link: str) -> None:
        self.proxy.clear(link)

    def bytes_up(self, link: str) -> int:
        return self.proxy.stats(link).bytes_up

    def stop(self) -> None:
        self.proxy.stop()
