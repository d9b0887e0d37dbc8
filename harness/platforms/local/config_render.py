"""Render the Goverse YAML configuration for a local topology (pure: data in, dict out).

Why pure: the same topology must give the same file every time, and the rendering is tested without
starting anything. The reference stack understands a few extension keys (lease TTL, tick, shutdown
grace, password file) that real Goverse v0.1.1 does not; they are only emitted for ``stack=reference``.
Real Goverse reads its PostgreSQL password only from ``postgres.password`` in this file (no environment
variable, no file) and its PostgreSQL and etcd addresses only from here, so for ``stack=goverse`` the
password is in the document (the file is 0600, the kept copy goes through :func:`redacted`) and each
node gets its own document whose addresses are its fault-proxy links (:func:`with_links`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from harness.platforms.base import GateAddr, InspectorAddr, NodeAddr, StackSpec

__all__ = ["GateAddr", "InspectorAddr", "NodeAddr", "REDACTED", "Topology", "redacted", "render_config", "with_links"]


@dataclass
class Topology:
    """Addresses of every stack process; what the config and the Deployment agree on."""

    etcd_endpoints: list[str]
    pg_host: str
    pg_port: int
    pg_user: str
    pg_database: str
    pg_password_file: str
    pg_password: str = ""  # only rendered for stack=goverse (it reads no password file)
    nodes: list[NodeAddr] = field(default_factory=list)
    gates: list[GateAddr] = field(default_factory=list)
    inspector: InspectorAddr | None = None


def _dur(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms}ms"


def render_config(spec: StackSpec, topo: Topology) -> dict[str, Any]:
    """The YAML document (as a dict) for every process of the stack."""
    t = spec.timers
    cluster: dict[str, Any] = {
        "shards": spec.shards,
        "provider": "etcd",
        "etcd": {"endpoints": list(topo.etcd_endpoints), "prefix": spec.prefix},
        "cluster_state_stability_duration": _dur(t.stability),
        "default_call_timeout": _dur(t.call_timeout),
    }
    postgres: dict[str, Any] = {
        "host": topo.pg_host,
        "port": topo.pg_port,
        "user": topo.pg_user,
        "database": topo.pg_database,
        "sslmode": "disable",
    }
    if spec.stack == "reference":
        cluster.update(lease_ttl=_dur(t.lease_ttl), management_tick=_dur(t.tick),
                       shutdown_grace=_dur(t.shutdown_grace))
        postgres["password_file"] = topo.pg_password_file
    else:
        postgres["password"] = topo.pg_password
    doc: dict[str, Any] = {
        "version": 1,
        "cluster": cluster,
        "postgres": postgres,
        "nodes": [
            {
                "id": n.id,
                "grpc_addr": f"{n.host}:{n.api_port}",
                "advertise_addr": f"{n.host}:{n.api_port}",
                "http_addr": f"{n.host}:{n.ops_port}",
            }
            for n in topo.nodes
        ],
        "gates": [
            {
                "id": g.id,
                "grpc_addr": f"{g.host}:{g.grpc_port}",
                "advertise_addr": f"{g.host}:{g.grpc_port}",
                "http_addr": f"{g.host}:{g.http_port}",
                "ops_addr": f"{g.host}:{g.ops_port}",
            }
            for g in topo.gates
        ],
    }
    if topo.inspector is not None:
        i = topo.inspector
        doc["inspector"] = {
            "grpc_addr": f"{i.host}:{i.grpc_port}",
            "http_addr": f"{i.host}:{i.http_port}",
            "advertise_addr": f"{i.host}:{i.grpc_port}",
        }
    return doc


REDACTED = "<redacted>"


def redacted(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of a rendered document without the PostgreSQL password (what may be kept or reported)."""
    out = copy.deepcopy(doc)
    pg = out.get("postgres")
    if isinstance(pg, dict) and pg.get("password"):
        pg["password"] = REDACTED
    return out


def with_links(doc: dict[str, Any], pg: tuple[str, int] | None = None,
               etcd: list[str] | None = None) -> dict[str, Any]:
    """A copy of ``doc`` whose PostgreSQL address and/or etcd endpoints are replaced, e.g. by one
    node's fault-proxy links: Goverse reads these addresses only from its config file, so routing one
    node's traffic through a proxy means giving that node its own file."""
    out = copy.deepcopy(doc)
    if pg is not None:
        out["postgres"]["host"], out["postgres"]["port"] = pg[0], int(pg[1])
    if etcd is not None:
        out["cluster"]["etcd"]["endpoints"] = list(etcd)
    return out
