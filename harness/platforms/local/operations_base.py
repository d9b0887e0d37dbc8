"""The plumbing every local operation shares: recording windows and samples into the scenario's
history, the stack's process table, readiness, the gates clients are sent to, the convergence deadline.

Why a base class: the operations are split by job (operations.py: scaling, rolling restarts and
upgrades, secret rotation; backup.py: backup, wipe, volume loss, restore) and all stand on this.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import requests

from harness.history import Recorder
from harness.platforms.base import Timers
from harness.platforms.operations import RecordsOperations
from harness.waiting import wait_until

log = logging.getLogger(__name__)


class OperationsBase(RecordsOperations):
    """State and plumbing of operator actions on a :class:`~harness.platforms.local.deploy.LocalDeployment`.

    ``recorder`` is the scenario's history recorder (``scenario.recorder``); without one the operations
    still work but leave no windows (e.g. set-up steps that are not part of the experiment).

    ``on_endpoints`` stands in for a load balancer's endpoint list (a Kubernetes Service's
    EndpointSlice): it is called with the gates that should receive client traffic — before a gate is
    taken down it is removed, once it is ready again (or a new one is) it is added. Pass the
    workload's ``set_gates`` so clients follow the roll the way they follow a Service."""

    def __init__(self, deployment: Any, recorder: Recorder | None = None,
                 on_endpoints: Callable[[dict[str, str]], None] | None = None) -> None:
        self.dep = deployment
        self.rec = recorder
        self.on_endpoints = on_endpoints
        self.timers: Timers = deployment.spec.timers
        self._previous_versions: dict[str, str] = {}
        self._killed: set[str] = set()  # stack processes a wipe/restore stopped, started again by restore

    # ---------------------------------------------------------------------------------- plumbing

    def _proc(self, name: str) -> Any:
        try:
            return self.dep._procs[name]
        except KeyError:
            raise KeyError(f"no stack instance {name!r}; have {sorted(self.dep._procs)}") from None

    def _is_ready(self, name: str) -> bool:
        p = self._proc(name)
        self.dep._check_alive()
        try:
            return requests.get(f"{p.instance.ops_url}/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def wait_instance_ready(self, name: str, timeout: float) -> float:
        t0 = time.monotonic()
        wait_until(lambda: self._is_ready(name), timeout, f"{name} /ready == 200", interval=0.05)
        return time.monotonic() - t0

    def _converge_budget(self) -> float:
        """How long an operation waits for the shard map to converge before giving up: lease + stability
        + 8 ticks + 5 s. A deadline of the procedure (the value ``budgets.convergence`` also uses), not
        a verdict: what the scenario accepts is judged by its checkers against its own budget."""
        t = self.timers
        return round(t.lease_ttl + t.stability + 8 * t.tick + 5.0, 2)

    def _leader(self) -> str | None:
        try:
            st = self.dep.cluster_state()
        except Exception:  # noqa: BLE001 - no leader known: the order just loses its refinement
            return None
        return self.dep.advertise_names().get(st.leader or "", None)
