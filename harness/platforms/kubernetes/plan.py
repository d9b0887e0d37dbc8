"""Faults (``harness.faults.spec``) translated into Kubernetes actions and Chaos Mesh CRs (pure).

Why separate from the injector: the translation is where a partition can silently select the wrong
pods; here it is a function of (fault, topology, pod names) with no cluster, unit-tested. The injector
(``injector.py``) only executes the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.platforms.kubernetes import chaos

Grudge = Mapping[str, set[str]]


def partition_crs(name: str, grudge: Grudge, pods: Mapping[str, str], namespace: str) -> list[dict[str, Any]]:
    """One NetworkChaos per host with a grudge: it drops packets *from* the hosts it holds a grudge
    against (Chaos Mesh ``direction: from`` with the grudge as ``target``) — Jepsen's semantics."""
    crs = []
    for i, host in enumerate(sorted(grudge)):
        drops = sorted(grudge[host])
        if not drops:
            continue
        sel = chaos.PodSelector(namespace, pods=(pods[host],))
        target = chaos.PodSelector(namespace, pods=tuple(sorted(pods[h] for h in drops)))
        crs.append(chaos.network_partition(f"{name}-{i}", sel, target, direction="from"))
    return crs


def link_delay_cr(name: str, src_pods: list[str], dst_pods: list[str], namespace: str, ms: int,
                  jitter_ms: int = 0) -> dict[str, Any]:
    """Latency on traffic from ``src`` to ``dst`` (netem on the source pods, filtered by target)."""
    return chaos.network_delay(name, chaos.PodSelector(namespace, pods=tuple(sorted(src_pods))), ms,
                               jitter_ms=jitter_ms, target=chaos.PodSelector(namespace, pods=tuple(sorted(dst_pods))),
                               direction="to")


def link_blackhole_cr(name: str, src_pods: list[str], dst_pods: list[str], namespace: str) -> dict[str, Any]:
    """A timeout on a link: packets from ``src`` to ``dst`` vanish (one-way partition)."""
    return chaos.network_partition(name, chaos.PodSelector(namespace, pods=tuple(sorted(src_pods))),
                                   chaos.PodSelector(namespace, pods=tuple(sorted(dst_pods))), direction="to")


def cpu_stress_cr(name: str, pod: str, namespace: str, quota: float) -> dict[str, Any]:
    """Kubernetes cannot lower a running pod's CPU quota, so contention stands in for starvation:
    enough busy workers that the target keeps about ``quota`` of one CPU (recorded in the history)."""
    workers = max(1, min(32, round(1 / max(quota, 0.03))))
    return chaos.stress_cpu(name, chaos.PodSelector(namespace, pods=(pod,)), workers=workers, load=100)


def memory_pressure_cr(name: str, pod: str, namespace: str, limit_mb: int, container_limit_mb: int) -> dict[str, Any]:
    """Allocate inside the pod until its memory limit is exceeded, so the kernel's OOM killer acts."""
    size = max(container_limit_mb - limit_mb, 16) + limit_mb
    return chaos.stress_memory(name, chaos.PodSelector(namespace, pods=(pod,)), size=f"{size}MB")


DISK_ERRNO = {"eio": 5, "full": 28}  # EIO, ENOSPC


def disk_fault_cr(name: str, pod: str, namespace: str, volume_path: str, kind: str, latency_ms: int,
                  container: str | None = None) -> dict[str, Any]:
    """``latency`` adds delay per I/O; ``eio`` and ``full`` make writes fail with EIO / ENOSPC (a full
    disk emulated by its errno: the volume is not actually filled)."""
    sel = chaos.PodSelector(namespace, pods=(pod,))
    names = [container] if container else []
    if kind == "latency":
        return chaos.io_chaos(name, sel, volume_path, "latency", delay_ms=latency_ms, container_names=names)
    if kind in DISK_ERRNO:
        return chaos.io_chaos(name, sel, volume_path, "fault", errno=DISK_ERRNO[kind], methods=["WRITE", "FSYNC"],
                              container_names=names)
    raise ValueError(f"unknown disk fault {kind!r}")


#: where each component keeps data (IOChaos volumePath) and the container that writes it
DATA_VOLUMES = {"postgres": ("/var/lib/postgresql/data", "postgres"), "etcd": ("/var/lib/etcd", "etcd")}
