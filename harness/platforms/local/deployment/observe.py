"""Observation of a running local stack: the shard-map oracle, stored state, readiness and convergence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from harness.cluster_state import ClusterState
from harness.platforms.base import Instance, PlatformError
from harness.platforms.local.deployment.state import DeploymentState, StackProcessDied, _now, _tail, is_balanced
from harness.platforms.pgcompact import vacuum_full
from harness.waiting import wait_until


class Observation(DeploymentState):
    """What a local stack's oracles say (etcd's shard map, PostgreSQL's rows) and waiting on them."""

    def cluster_state(self) -> ClusterState:
        if self._view is None:
            raise PlatformError("stack not deployed")
        return self._view.state()

    def advertise_names(self) -> dict[str, str]:
        assert self.topology is not None
        names = {f"{n.host}:{n.api_port}": n.id for n in self.topology.nodes}
        names.update({f"{g.host}:{g.grpc_port}": g.id for g in self.topology.gates})
        return names

    def shard_map(self) -> dict[int, tuple[str, str]]:
        names = self.advertise_names()
        return {i: (names.get(t, t), names.get(c, c)) for i, (t, c) in self.cluster_state().shards.items()}

    def live_nodes(self) -> set[str]:
        names = self.advertise_names()
        return {names.get(n, n) for n in self.cluster_state().nodes}

    def persisted_objects(self, object_ids: list[str]) -> dict[str, Any]:
        """What PostgreSQL holds for these objects (``goverse_objects.data`` by id), read as the
        superuser over the private socket, past every fault proxy and firewall.

        Why an oracle on the stored state: a node serves from memory, so a stale write that lands in
        PostgreSQL behind its successor's back (an unfenced flush by a node coming back from a
        partition or a pause) is invisible to clients until the object is reloaded — which in
        production may be hours later, at the next restart or rebalance. Comparing what is stored
        with what was acknowledged finds it now."""
        if self.postgres is None:
            raise PlatformError("stack not deployed")
        try:
            with self.postgres.admin_connect(dbname=self.postgres.database) as conn:
                rows = conn.execute("SELECT object_id, data FROM goverse_objects WHERE object_id = ANY(%s)",
                                    (list(object_ids),)).fetchall()
        except Exception as exc:  # noqa: BLE001 - psycopg errors; the caller records it as a failed sample
            raise PlatformError(f"reading goverse_objects failed: {exc}") from exc
        return {str(r[0]): r[1] for r in rows}

    def compact_storage(self) -> dict[str, int]:
        """``VACUUM FULL`` the stack's tables, as a DBA or a fresh restore leaves them: no free space
        inside their files, so the next writes must allocate new blocks. Returns each table's size
        in bytes afterwards (why: harness/platforms/pgcompact.py)."""
        if self.postgres is None:
            raise PlatformError("stack not deployed")
        with self.postgres.admin_connect(dbname=self.postgres.database) as conn:
            return vacuum_full(conn)

    def _ready(self, inst: Instance) -> bool:
        try:
            return requests.get(f"{inst.ops_url}/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def wait_converged(self, timeout: float, balanced: bool = True) -> float:
        """Wait until every shard has target == current with the owner alive and, with ``balanced``,
        the running nodes' shard counts are within the rebalancing tolerance (so a rejoined node's
        rebalance has finished); returns seconds waited."""
        t0 = _now()
        running_nodes = {p.instance.name for p in self._procs.values()
                         if p.instance.component == "node" and p.instance.running}

        def ok() -> bool:
            self._check_alive()
            st = self.cluster_state()
            names = self.advertise_names()
            owners = {names.get(c, c): n for c, n in st.owners().items()}
            if not (st.converged and set(owners) <= running_nodes):
                return False
            return not balanced or is_balanced(owners, running_nodes, self.spec.shards)

        what = "shard map converged (every shard target == current, owner alive)" + (
            " and balanced" if balanced else "")
        wait_until(ok, timeout, what, interval=0.1,
                   describe=lambda: str(self.cluster_state().summary(self.advertise_names())))
        return _now() - t0

    def wait_ready(self, timeout: float) -> float:
        """Wait for convergence, then for every running node/gate/inspector to report /ready 200."""
        t0 = _now()
        self._check_alive()
        self.wait_converged(timeout)
        for p in list(self._procs.values()):
            if not p.instance.running:
                continue
            wait_until(lambda inst=p.instance: self._check_alive() or self._ready(inst),  # type: ignore[misc]
                       max(1.0, timeout - (_now() - t0)), f"{p.instance.name} /ready == 200", interval=0.1)
        return _now() - t0

    def _check_alive(self) -> bool:
        """Fail fast (with the log tail) if a stack process died during bring-up."""
        for name, p in self._procs.items():
            if p.instance.running and p.process is not None and not p.process.is_running():
                tail = _tail(Path(p.instance.log_path or ""))
                raise StackProcessDied(f"{name} exited with code {p.process.returncode}; last log lines:\n{tail}")
        return False
