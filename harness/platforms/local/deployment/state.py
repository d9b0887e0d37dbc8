"""The state every part of a local deployment reads: its fields, the process table's entries, the
host/port plumbing (network namespaces or 127.0.0.1) and small helpers.

Why a part of its own: bring-up, fault wiring, observation, control and teardown all act on the
same fields; declaring them once here lets each part be a small class over this state
(``deploy.LocalDeployment`` composes the parts).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.cluster_state import EtcdView
from harness.platforms.base import Instance, PlatformError, StackSpec, Unsupported
from harness.platforms.local.config_render import Topology
from harness.platforms.local.process import ManagedProcess
from harness.platforms.local.services import EtcdCluster, PostgresServer, free_port
from harness.waiting import Abort


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
class DeploymentState:
    """The fields of a running local stack (``LocalDeployment``'s state) and its host plumbing."""

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

