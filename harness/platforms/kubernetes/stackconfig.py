"""The shared Goverse YAML of a run (the ``goverse-config`` ConfigMap), from a ``StackSpec``.

Why generated per run: shard count, prefix and timers are scenario parameters. Why no per-pod entries:
on Kubernetes, identity comes from the pod (reference stack: ``POD_NAME``/``POD_IP``; Goverse: the
render-config init container), so one document serves every pod. The default spec reproduces the
files in ``manifests/stacks/*/config.yaml`` exactly (a test holds the two together).
"""

from __future__ import annotations

from typing import Any

from harness.platforms.base import StackSpec

ETCD_SERVICE = "goverse-etcd:2379"
POSTGRES_SERVICE = "goverse-postgres"
POSTGRES_PORT = 5432
POSTGRES_DATABASE = "goverse"

#: container ports of the reference stack (defaults of ``python -m harness.refstack``)
REFERENCE_PORTS = {"node_api": 7001, "node_ops": 9101, "gate_http": 8080, "gate_ops": 9102, "inspector_http": 8081}
#: container ports of the goverse stack (see manifests/stacks/goverse)
GOVERSE_PORTS = {"node_api": 50051, "node_ops": 8080, "gate_grpc": 60051, "gate_http": 8080, "gate_ops": 9090,
                 "inspector_http": 8080, "inspector_grpc": 8081}
#: Service ports (what a port-forward or an in-cluster client dials), identical for both stacks
SERVICE_PORTS = {"node_api": 7001, "node_ops": 9101, "gate_http": 8080, "gate_ops": 9102, "inspector_http": 8081,
                 "inspector_grpc": 8082}


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def _go_duration(seconds: float) -> str:
    """Go's time.ParseDuration accepts ``10s``/``1500ms``; Goverse v0.1.1 parses it (contract §1.7)."""
    return f"{int(seconds)}s" if float(seconds).is_integer() else _ms(seconds)


def reference_config(spec: StackSpec) -> dict[str, Any]:
    t = spec.timers
    return {
        "version": 1,
        "cluster": {
            "shards": spec.shards,
            "provider": "etcd",
            "etcd": {"endpoints": [ETCD_SERVICE], "prefix": spec.prefix},
            "cluster_state_stability_duration": _ms(t.stability),
            "lease_ttl": _ms(t.lease_ttl),
            "management_tick": _ms(t.tick),
            "shutdown_grace": _ms(t.shutdown_grace),
            "default_call_timeout": _ms(t.call_timeout),
        },
        "postgres": {"host": POSTGRES_SERVICE, "port": POSTGRES_PORT, "database": POSTGRES_DATABASE,
                     "sslmode": "disable"},
        "inspector": {"http_addr": f"0.0.0.0:{REFERENCE_PORTS['inspector_http']}"},
        "nodes": [],
        "gates": [],
    }


def goverse_config(spec: StackSpec) -> dict[str, Any]:
    """Goverse has no lease/tick settings (fixed in code: 15 s, 5 s); only stability is configurable."""
    return {
        "version": 1,
        "cluster": {
            "shards": spec.shards,
            "provider": "etcd",
            "etcd": {"endpoints": [ETCD_SERVICE], "prefix": spec.prefix},
            "cluster_state_stability_duration": _go_duration(spec.timers.stability),
        },
        "inspector": {
            "grpc_addr": f"0.0.0.0:{GOVERSE_PORTS['inspector_grpc']}",
            "http_addr": f"0.0.0.0:{GOVERSE_PORTS['inspector_http']}",
            "advertise_addr": f"goverse-inspector:{SERVICE_PORTS['inspector_grpc']}",
        },
    }


def stack_config(spec: StackSpec) -> dict[str, Any]:
    return reference_config(spec) if spec.stack == "reference" else goverse_config(spec)
