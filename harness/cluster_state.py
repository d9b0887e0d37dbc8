"""The cluster-state oracle: read Goverse's shard map from etcd and judge convergence (platform-neutral).

Why from etcd and not from the stack's own endpoints: etcd is the source of truth in Goverse's design
(contract §4.1), and readiness endpoints lie (v0.1.1's /ready latches). The convergence oracle is:
every shard ``i`` has ``target == current`` (non-empty) and ``current`` is a live node key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import etcd3gw


@dataclass(frozen=True)
class ClusterState:
    shards: dict[int, tuple[str, str]]  # shard -> (target, current) as advertise addresses
    nodes: set[str]  # live node advertise addresses
    gates: set[str]
    leader: str | None
    num_shards: int

    def unconverged(self) -> list[int]:
        bad = []
        for i in range(self.num_shards):
            target, current = self.shards.get(i, ("", ""))
            if not current or target != current or current not in self.nodes:
                bad.append(i)
        return bad

    @property
    def converged(self) -> bool:
        return bool(self.nodes) and not self.unconverged()

    def owners(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _t, cur in self.shards.values():
            if cur:
                out[cur] = out.get(cur, 0) + 1
        return out

    def summary(self, names: dict[str, str] | None = None) -> dict[str, Any]:
        """The compact sample recorded into the history (advertise addresses mapped to names)."""
        nm = names or {}
        return {
            "converged": self.converged,
            "unconverged": len(self.unconverged()),
            "live_nodes": sorted(nm.get(n, n) for n in self.nodes),
            "owners": {nm.get(k, k): v for k, v in sorted(self.owners().items())},
            "leader": nm.get(self.leader or "", self.leader),
        }


def parse_shard_value(value: str) -> tuple[str, str]:
    """``"target,current[,f=flag...]"`` -> (target, current)."""
    parts = value.split(",")
    target = parts[0] if parts else ""
    current = parts[1] if len(parts) > 1 and not parts[1].startswith("f=") else ""
    return target, current


class EtcdView:
    """A small reader over etcd's JSON gateway, trying every endpoint in turn."""

    def __init__(self, endpoints: list[str], prefix: str, num_shards: int, timeout: float = 2.0) -> None:
        self.prefix = prefix.rstrip("/")
        self.num_shards = num_shards
        self._clients = []
        for ep in endpoints:
            hostport = ep.split("://", 1)[-1]
            host, port = hostport.rsplit(":", 1)
            self._clients.append(etcd3gw.client(host=host, port=int(port), timeout=timeout))

    def _get_prefix(self, key: str) -> list[tuple[bytes, Any]]:
        last: Exception | None = None
        for c in self._clients:
            try:
                return c.get_prefix(key)
            except Exception as exc:  # noqa: BLE001 - try the next endpoint
                last = exc
        raise ConnectionError(f"no etcd endpoint answered: {last!r}")

    def state(self) -> ClusterState:
        rows = self._get_prefix(self.prefix + "/")
        shards: dict[int, tuple[str, str]] = {}
        nodes: set[str] = set()
        gates: set[str] = set()
        leader: str | None = None
        for value, meta in rows:
            key = meta["key"].decode() if isinstance(meta["key"], bytes) else meta["key"]
            val = value.decode() if isinstance(value, bytes) else str(value)
            rel = key[len(self.prefix) + 1:]
            if rel.startswith("shard/"):
                try:
                    shards[int(rel[6:])] = parse_shard_value(val)
                except ValueError:
                    continue
            elif rel.startswith("nodes/"):
                nodes.add(rel[6:])
            elif rel.startswith("gates/"):
                gates.add(rel[6:])
            elif rel == "leader":
                leader = val
        return ClusterState(shards=shards, nodes=nodes, gates=gates, leader=leader, num_shards=self.num_shards)
