"""Prometheus metrics with Goverse's names (contract §3.1) plus a few reference-stack extras.

Why Goverse's names: the harness's metric oracles (shards per node, migrations, call outcomes) must read
the same series from both stacks. Extras are prefixed ``refstack_`` (seeded bugs, lease losses, fence
rejections) or are the conventional ``goverse_build_info`` used by upgrade scenarios. The default
registry also carries the process collector (CPU, RSS, fds).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable

import psutil
from prometheus_client import Counter, Gauge, Histogram

from harness.refstack.sharding import ShardEntry

METHOD_CALLS = Counter("goverse_method_calls_total", "Object method calls on this node",
                       ["node", "object_type", "method_name", "status"])
METHOD_DURATION = Histogram("goverse_method_call_duration", "Object method call duration (seconds)",
                            ["node", "object_type", "method_name", "status"],
                            buckets=(0.001, 0.01, 0.1, 1, 10))
SHARDS_TOTAL = Gauge("goverse_shards_total", "Shards whose current owner is this node label", ["node"])
SHARDS_MIGRATING = Gauge("goverse_shards_migrating", "Shards with target != current (both set)")
SHARD_CLAIMS = Counter("goverse_shard_claims_total", "Shards claimed by this node", ["node"])
SHARD_RELEASES = Counter("goverse_shard_releases_total", "Shards released by this node", ["node"])
SHARD_MIGRATIONS = Counter("goverse_shard_migrations_total", "Current owner changes observed",
                           ["from_node", "to_node"])
OPERATION_DURATION = Histogram("goverse_operation_duration_seconds", "Gate-to-node operation duration",
                               ["node_addr", "operation", "status"],
                               buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
OPERATION_TIMEOUTS = Counter("goverse_operation_timeouts_total", "Gate-to-node operations that timed out",
                             ["node_addr", "operation"])
MAPPING_WRITE_FAILURES = Counter("goverse_shard_mapping_write_failures_total", "Failed shard map writes",
                                 ["error_type"])
WATCH_RECONNECTIONS = Counter("goverse_watch_reconnections_total", "Cluster view refresh recoveries",
                              ["node_addr", "outcome"])
NODE_CONNECTED_GATES = Gauge("goverse_node_connected_gates", "Gates registered in the cluster", ["node"])
BUILD_INFO = Gauge("goverse_build_info", "Version of the running process (--version-tag)", ["version"])
SEEDED_BUGS = Gauge("refstack_seeded_bugs", "Seeded bugs switched on in this process", ["bug"])
LEASE_LOSSES = Counter("refstack_lease_losses_total", "Times this process lost its etcd lease", ["node"])
FENCE_REJECTIONS = Counter("refstack_fence_rejections_total", "Writes refused by the shard fence", ["node"])
OWNED_SHARDS = Gauge("refstack_owned_shards", "Shards this node is serving (claimed and fenced)", ["node"])
ACTIVE_OBJECTS = Gauge("refstack_active_objects", "Objects held in memory by this node", ["node"])
READY = Gauge("refstack_ready", "1 when /ready answers 200", ["instance"])
# Seed §2.5: Kubernetes-facing metrics and a concurrency gauge (Goverse has go_goroutines/go_threads).
K8S_READY = Gauge("goverse_k8s_ready", "Readiness probe status (1 = /ready answers 200)")
K8S_STARTUP = Gauge("goverse_k8s_startup_time_seconds", "Seconds from process start to first ready")
POD_INFO = Gauge("goverse_pod_info", "Pod identity from the downward API", ["pod_name", "namespace", "node_name"])
THREADS = Gauge("python_threads", "Threads of this process")
THREADS.set_function(threading.active_count)
_first_ready = threading.Event()


def bind_readiness(ready: Callable[[], tuple[bool, str]]) -> None:
    """goverse_k8s_ready is evaluated at scrape time, so it always agrees with what /ready would say."""

    def value() -> float:
        try:
            return 1.0 if ready()[0] else 0.0
        except Exception:  # noqa: BLE001 - a half-started process is simply not ready
            return 0.0

    K8S_READY.set_function(value)


def set_ready(instance: str, ok: bool) -> None:
    """Readiness as gauges; the first transition to ready also fixes the startup time."""
    READY.labels(instance=instance).set(1 if ok else 0)
    if ok and not _first_ready.is_set():
        _first_ready.set()
        K8S_STARTUP.set(max(0.0, time.time() - psutil.Process().create_time()))


def announce(version: str, bugs: frozenset[str]) -> None:
    BUILD_INFO.labels(version=version).set(1)
    pod = "" if "env-ignored" in bugs else os.environ.get("POD_NAME", "")
    if pod:
        POD_INFO.labels(pod_name=pod, namespace=os.environ.get("POD_NAMESPACE", ""),
                        node_name=os.environ.get("NODE_NAME", "")).set(1)
    for bug in sorted(bugs):
        SEEDED_BUGS.labels(bug=bug).set(1)


_shard_gauge_nodes: set[str] = set()
_shard_gauge_lock = threading.Lock()


def update_shard_gauges(shards: dict[int, ShardEntry], known_nodes: set[str]) -> None:
    """Goverse counts shards per node from CurrentNode on every process. The series of a node that left
    (neither known nor owning a shard) is removed: on Kubernetes a restarted pod comes back under a new
    IP, so its old address would otherwise keep its last count and the sum would exceed the shard count."""
    counts = Tally(e.current for e in shards.values() if e.current)
    now = known_nodes | set(counts)
    with _shard_gauge_lock:
        for gone in _shard_gauge_nodes - now:
            with contextlib.suppress(KeyError):
                SHARDS_TOTAL.remove(gone)
        for node in now:
            SHARDS_TOTAL.labels(node=node).set(counts.get(node, 0))
        _shard_gauge_nodes.clear()
        _shard_gauge_nodes.update(now)
    SHARDS_MIGRATING.set(sum(1 for e in shards.values() if e.migrating))
