"""``run --platform kubernetes`` with no cluster: bring the binaries cluster up for the run, and down after.

Why a separate decision: starting or stopping a whole cluster is the most destructive thing the harness
does, and the cases where it must *not* happen are the dangerous ones — a cluster the user named that is
down for a moment, or this machine's own binaries cluster whose API is slow or half broken while other
runs use it. ``plan`` is a pure function of what was observed, so every case is tested without a
cluster; ``ensure`` only carries out what ``plan`` says:

- a cluster answers → use it; the run never takes it down (it did not make it);
- nothing answers and a cluster was named (``--kube-context``, a kubeconfig other than the binaries
  provider's) → refuse, naming it: the harness does not replace a cluster it was pointed at;
- this machine's binaries cluster has processes (or leftovers) but its API does not answer → refuse,
  pointing at ``cluster status`` / ``cluster down``: never started twice, never taken down under others;
- no binaries cluster at all → ``up`` (with the stack's images), and ``down`` when the run's process
  exits unless ``--keep-cluster``.
"""

from __future__ import annotations

import atexit
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.platforms.base import PlatformError

log = logging.getLogger(__name__)

BinariesState = Literal["absent", "running", "leftovers"]


@dataclass(frozen=True)
class ClusterPlan:
    action: Literal["use", "up", "refuse"]
    take_down_at_end: bool
    reason: str


def binaries_state(status: dict[str, Any]) -> BinariesState:
    """Classify ``BinariesCluster.status()`` (pure): processes alive → running; none but a state dir or
    host leftovers → leftovers; else absent."""
    if any(pid is not None for pid in (status.get("processes") or {}).values()):
        return "running"
    if status.get("kubeconfig") or status.get("leftovers"):
        return "leftovers"
    return "absent"


def is_named_elsewhere(context: str | None, kubeconfig: str | None, own_kubeconfig: str, own_context: str) -> bool:
    """Whether the user pointed the run at a cluster other than this machine's binaries one (pure)."""
    if context and context != own_context:
        return True
    return bool(kubeconfig) and Path(str(kubeconfig)).resolve() != Path(own_kubeconfig).resolve()


def plan(reachable: bool, why: str, named_elsewhere: bool, state: BinariesState, keep_cluster: bool) -> ClusterPlan:
    """What to do about the cluster before the first deploy of a run (pure; see the module docstring)."""
    if reachable:
        return ClusterPlan("use", False, f"a cluster answers ({why}); used as it is, never taken down by the run")
    if named_elsewhere:
        return ClusterPlan("refuse", False, f"the cluster this run was pointed at does not answer: {why}; the "
                                            "harness starts a cluster only when none was named")
    if state == "running":
        return ClusterPlan("refuse", False, "this machine's binaries cluster has processes but its API does not "
                                            f"answer ({why}); see `goverse-harness cluster status` — it is neither "
                                            "started again nor taken down by a run")
    if state == "leftovers":
        return ClusterPlan("refuse", False, "this machine has leftovers of a binaries cluster that is not running; "
                                            "`goverse-harness cluster down` removes them first")
    return ClusterPlan("up", not keep_cluster,
                       "no cluster answers: the binaries provider brings one up for this run"
                       + (" (kept: --keep-cluster)" if keep_cluster else " and takes it down at the end"))


_started: Any = None  # the provider this process brought up (once per process: every module reuses it)


def ensure(context: str | None, kubeconfig: str | None, keep_cluster: bool) -> tuple[str | None, str | None]:
    """Carry out ``plan`` for ``--platform kubernetes``; returns the (kubeconfig, context) to use."""
    global _started
    from harness.platforms.kubernetes import client
    from harness.platforms.kubernetes.cluster import versions
    from harness.platforms.kubernetes.cluster.binaries import BinariesCluster

    if _started is not None:
        return str(_started.kubeconfig), versions.CONTEXT
    ok, why = client.reachable(kubeconfig, context)
    prov = BinariesCluster()
    decision = plan(ok, why, is_named_elsewhere(context, kubeconfig, str(prov.kubeconfig), versions.CONTEXT),
                    "absent" if ok else binaries_state(prov.status()), keep_cluster)
    log.info("cluster: %s", decision.reason)
    if decision.action == "use":
        return kubeconfig, context
    if decision.action == "refuse":
        raise PlatformError(decision.reason)
    from harness.platforms.kubernetes.cluster import images

    prov.up()
    _started = prov
    if decision.take_down_at_end:
        atexit.register(_down, prov)
    for build in (images.build_refstack, images.build_postgres, images.build_etcd):
        prov.load_image(build())
    return str(prov.kubeconfig), versions.CONTEXT


def _down(prov: Any) -> None:
    left = prov.down()
    if left:
        log.error("the binaries cluster this run brought up left: %s", "; ".join(left))
