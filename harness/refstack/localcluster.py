"""Start a whole reference cluster (N nodes, M gates, inspector) as real processes on 127.0.0.1.

Why here and not only in the local platform: the reference stack's own tests, its benchmark and its
documentation need one small, dependable way to bring a cluster up on existing etcd and PostgreSQL
servers — without the harness's scenario machinery. Every process is a ``ManagedProcess`` (own process
group, log file) and ``close()`` stops them all on every exit path.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
import yaml
from google.protobuf.message import Message

from harness import wire
from harness.ports import free_port
from harness.process import ManagedProcess
from harness.refstack.sharding import ShardEntry, is_converged
from harness.waiting import Deadline, wait_until

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PgAccess:
    host: str
    port: int
    user: str
    database: str
    password: str = field(repr=False)


@dataclass
class Member:
    name: str
    kind: str
    process: ManagedProcess
    api: str  # node: internal API base URL; gate: client API; inspector: HTTP
    ops: str = ""
    advertise: str = ""


@dataclass
class CallResult:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return self.status == 200

    def message(self) -> Message:
        return wire.unpack(self.body["response"])


def etcd_shard_map(etcd_url: str, prefix: str) -> tuple[dict[int, ShardEntry], set[str], str]:
    """(shard entries, live node advertise addresses, leader) read straight from etcd."""
    def rng(key: str, end: str | None) -> list[dict[str, Any]]:
        body = {"key": base64.b64encode(key.encode()).decode()}
        if end is not None:
            body["range_end"] = base64.b64encode(end.encode()).decode()
        r = requests.post(f"{etcd_url}/v3/kv/range", json=body, timeout=2)
        r.raise_for_status()
        return [{"key": base64.b64decode(kv["key"]).decode(), "value": base64.b64decode(kv.get("value", "")).decode()}
                for kv in r.json().get("kvs", [])]
    shards: dict[int, ShardEntry] = {}
    for kv in rng(f"{prefix}/shard/", f"{prefix}/shard0"):
        shards[int(kv["key"].rsplit("/", 1)[1])] = ShardEntry.parse(kv["value"])
    nodes = {kv["key"][len(prefix) + len("/nodes/"):] for kv in rng(f"{prefix}/nodes/", f"{prefix}/nodes0")}
    leader = rng(f"{prefix}/leader", None)
    return shards, nodes, leader[0]["value"] if leader else ""


class LocalCluster:
    """Config file + processes for one reference cluster under ``workdir``."""

    def __init__(self, workdir: Path, etcd_endpoints: Iterable[str], pg: PgAccess, *, nodes: int = 3,
                 gates: int = 2, inspector: bool = True, shards: int = 64, prefix: str | None = None,
                 lease_ttl: float = 3.0, stability: float = 1.0, tick: float = 0.25, call_timeout: float = 5.0,
                 shutdown_grace: float = 10.0, bugs: Iterable[str] = (), version: str = "A",
                 log_format: str = "json") -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.etcd_endpoints = list(etcd_endpoints)
        self.pg = pg
        self.shards = shards
        self.prefix = prefix or f"/goverse-test-{secrets.token_hex(3)}"
        self.shutdown_grace = shutdown_grace
        self.bugs = tuple(bugs)
        self.version = version
        self.log_format = log_format
        self.password_file = self.workdir / "pg-password"
        self.password_file.write_text(pg.password + "\n", encoding="utf-8")
        os.chmod(self.password_file, 0o600)
        self.members: dict[str, Member] = {}
        self.killed_at_close: list[str] = []
        doc: dict[str, Any] = {
            "version": 1,
            "cluster": {
                "shards": shards, "provider": "etcd",
                "etcd": {"endpoints": self.etcd_endpoints, "prefix": self.prefix},
                "cluster_state_stability_duration": f"{stability}s", "default_call_timeout": f"{call_timeout}s",
                "lease_ttl": f"{lease_ttl}s", "management_tick": f"{tick}s", "shutdown_grace": f"{shutdown_grace}s",
            },
            "postgres": {"host": pg.host, "port": pg.port, "user": pg.user, "database": pg.database,
                         "password_file": str(self.password_file), "sslmode": "disable"},
            "nodes": [], "gates": [],
        }
        for i in range(nodes):
            api, ops = free_port(), free_port()
            doc["nodes"].append({"id": f"node-{i}", "grpc_addr": f"127.0.0.1:{api}",
                                 "advertise_addr": f"127.0.0.1:{api}", "http_addr": f"127.0.0.1:{ops}"})
        for i in range(gates):
            grpc, http, ops = free_port(), free_port(), free_port()
            doc["gates"].append({"id": f"gate-{i}", "grpc_addr": f"127.0.0.1:{grpc}",
                                 "http_addr": f"127.0.0.1:{http}", "ops_addr": f"127.0.0.1:{ops}"})
        if inspector:
            doc["inspector"] = {"grpc_addr": f"127.0.0.1:{free_port()}", "http_addr": f"127.0.0.1:{free_port()}"}
        self.config = doc
        self.config_path = self.workdir / "goverse.yaml"
        self.config_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        for n in doc["nodes"]:
            self._add(n["id"], "node", ["--node-id", n["id"]], f"http://{n['grpc_addr']}", f"http://{n['http_addr']}",
                      n["advertise_addr"])
        for g in doc["gates"]:
            self._add(g["id"], "gate", ["--gate-id", g["id"]], f"http://{g['http_addr']}", f"http://{g['ops_addr']}",
                      g["grpc_addr"])
        if inspector:
            url = f"http://{doc['inspector']['http_addr']}"
            self._add("inspector", "inspector", [], url, url)

    def _add(self, name: str, kind: str, extra: list[str], api: str, ops: str, advertise: str = "") -> None:
        argv = [sys.executable, "-m", "harness.refstack", kind, "--config", str(self.config_path),
                "--version-tag", self.version, *extra]
        if self.bugs:
            argv += ["--bugs", ",".join(self.bugs)]
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith(("GOVERSE_", "POD_", "REFSTACK_"))}
        env.update({"LOG_FORMAT": self.log_format, "LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1"})
        proc = ManagedProcess(name, argv, self.workdir / f"{name}.log", env=env)
        self.members[name] = Member(name, kind, proc, api, ops, advertise)

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 30.0) -> float:
        """Start every process and wait until the shard map converged and every gate is ready.
        Returns the seconds it took."""
        t0 = time.monotonic()
        try:
            for m in self.members.values():
                if not m.process.is_running():
                    m.process.start()
            wait_until(lambda: all(self._alive(m) for m in self.members.values()) and self.converged(), timeout,
                       "shard map converged", interval=0.05, describe=self._describe)
            ready_checked = [m for m in self.members.values() if m.kind in ("gate", "inspector")]
            for m in ready_checked:
                wait_until(lambda m=m: self._alive(m) and requests.get(f"{m.ops}/ready", timeout=1).status_code == 200,  # type: ignore[misc]
                           timeout, f"{m.name} ready", describe=lambda m=m: self.log_tail(m.name))  # type: ignore[misc]
        except BaseException:
            self.close()
            raise
        return time.monotonic() - t0

    def _alive(self, m: Member) -> bool:
        if not m.process.is_running():
            raise RuntimeError(f"{m.name} exited with {m.process.returncode}:\n{self.log_tail(m.name)}")
        return True

    def close(self) -> None:
        """SIGTERM everything (gates first), SIGKILL what does not exit within the grace period."""
        order = sorted(self.members.values(), key=lambda m: {"gate": 0, "inspector": 1, "node": 2}[m.kind])
        for m in order:
            if m.process.is_running():
                m.process.signal(signal.SIGTERM)
        deadline = Deadline(self.shutdown_grace + 2)
        self.killed_at_close = []
        for m in order:
            if m.process.pid is not None and m.process.wait(deadline.remaining()) is None:
                self.killed_at_close.append(m.name)
                log.warning("%s did not exit within the grace period; SIGKILL:\n%s", m.name, self.log_tail(m.name))
            m.process.kill()  # SIGKILL if still running; reaps and clears the process group either way

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # --------------------------------------------------------------- inspection
    def nodes(self) -> list[Member]:
        return [m for m in self.members.values() if m.kind == "node"]

    def gates(self) -> list[Member]:
        return [m for m in self.members.values() if m.kind == "gate"]

    def node_by_advertise(self, advertise: str) -> Member:
        for m in self.nodes():
            if m.advertise == advertise:
                return m
        raise KeyError(advertise)

    def shard_map(self) -> tuple[dict[int, ShardEntry], set[str], str]:
        return etcd_shard_map(self.etcd_endpoints[0], self.prefix)

    def converged(self, expect_nodes: set[str] | None = None, balanced: bool = False) -> bool:
        """Every shard settled on a live node; with ``balanced`` also shard counts within 1."""
        shards, live, _ = self.shard_map()
        if expect_nodes is not None and live != expect_nodes:
            return False
        if not is_converged(shards, self.shards, live):
            return False
        if balanced:
            counts = [sum(1 for e in shards.values() if e.current == n) for n in live]
            return max(counts) - min(counts) <= 1
        return True

    def wait_converged(self, timeout: float, expect_nodes: set[str] | None = None, balanced: bool = False) -> float:
        t0 = time.monotonic()

        def check() -> bool:
            for m in self.members.values():
                if m.process.pid is not None and m.process.returncode is not None and m.kind != "node":
                    raise RuntimeError(f"{m.name} exited with {m.process.returncode}:\n{self.log_tail(m.name)}")
            return self.converged(expect_nodes, balanced)
        what = "shard map converged" + (" and balanced" if balanced else "")
        wait_until(check, timeout, what, interval=0.05, describe=self._describe)
        return time.monotonic() - t0

    def _describe(self) -> str:
        try:
            shards, live, leader = self.shard_map()
        except requests.RequestException as exc:
            return f"etcd unreadable: {exc}"
        bad = [s for s in range(self.shards) if not (shards.get(s) and shards[s].current
                                                     and shards[s].current == shards[s].target
                                                     and shards[s].current in live)]
        return f"live={sorted(live)} leader={leader} unsettled={len(bad)} e.g. {[(s, shards.get(s)) for s in bad[:3]]}"

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.members[name].process.log_path
        try:
            return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # ------------------------------------------------------------------ clients
    def call(self, gate: int | str, type_name: str, object_id: str, method: str, msg: Message,
             timeout: float = 10.0, session: requests.Session | None = None) -> CallResult:
        g = self.members[gate if isinstance(gate, str) else f"gate-{gate}"]
        http = session or requests
        r = http.post(f"{g.api}/api/v1/objects/call/{type_name}/{object_id}/{method}",
                      json={"request": wire.pack(msg)}, timeout=timeout)
        return CallResult(r.status_code, _json(r), r.headers)

    def reliable_call(self, gate: int | str, type_name: str, object_id: str, method: str, call_id: str,
                      msg: Message, timeout: float = 10.0) -> CallResult:
        g = self.members[gate if isinstance(gate, str) else f"gate-{gate}"]
        r = requests.post(f"{g.api}/api/v1/objects/reliable-call/{type_name}/{object_id}/{method}",
                          json={"call_id": call_id, "request": wire.pack(msg)}, timeout=timeout)
        return CallResult(r.status_code, _json(r), r.headers)


def _json(r: requests.Response) -> dict[str, Any]:
    try:
        data = r.json()
    except ValueError:
        return {"raw": r.text}
    return data if isinstance(data, dict) else {"value": data}




def fresh_database(server: Any, name: str | None = None) -> PgAccess:
    """Create an empty database owned by the application role on a ``PostgresServer`` and return its
    access data, so clusters sharing one server never share fences or objects."""
    from psycopg import sql

    name = name or f"goverse_{secrets.token_hex(4)}"
    with server.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(server.user)))
    return PgAccess(server.host, server.port, server.user, name, server.password)
