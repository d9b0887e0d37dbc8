"""Backup, wipe, volume loss and restore on the local stack (seed §7.1): pg_dump and an etcd snapshot
taken under load, everything recorded as windows and samples that the restore checkers judge
(harness/checkers/operations.py: restored_matches_backup, no_lost_writes_after_restore).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.operation_kinds import (
    BACKUP_KIND,
    VOLUME_LOSS_KIND,
    WIPE_KIND,
)
from harness.platforms.base import PlatformError, Unsupported
from harness.platforms.local.operations_base import OperationsBase
from harness.platforms.local.tools import find_etcdctl, run_tool
from harness.platforms.operations import (
    COMPONENT_ORDER,
    Backup,
    RestoreProcedure,
    ordinal,
)

log = logging.getLogger(__name__)


class BackupOperations(RestoreProcedure, OperationsBase):
    """Backing up and restoring the stack's state, and the data losses a restore recovers from."""

    # ----------------------------------------------------------------------- backup and restore
    def backup(self, dest: Path) -> Backup:
        """``etcdctl snapshot save`` then ``pg_dump -Fc`` of the Goverse database, under load.

        The etcd snapshot is taken first so PostgreSQL's shard fences in the dump are never older than
        the claims in the snapshot. The backup point is the start of pg_dump (its snapshot is taken
        after it): everything acknowledged before it is in the dump."""
        dep = self.dep
        etcdctl = find_etcdctl()
        if etcdctl is None:
            raise Unsupported("etcdctl not found (apt-get install etcd-client)")
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        snap = dest / "etcd.snapshot.db"
        dump = dest / "goverse.pgdump"
        pg = dep.postgres
        with self.window(BACKUP_KIND, "etcd+postgres", {"dir": dest.name}) as res:
            t_start = self._now()
            endpoint = next((m.client_url for m in dep.etcd.members if m.healthy()), dep.etcd.members[0].client_url)
            run_tool([etcdctl, "--endpoints", endpoint, "snapshot", "save", str(snap)], "etcdctl snapshot save",
                      env={"ETCDCTL_API": "3"})
            t_point = self._now()
            run_tool([str(pg.bindir / "pg_dump"), "-h", str(pg.socket_dir), "-p", str(pg.port), "-U", "postgres",
                       "-d", pg.database, "-Fc", "-f", str(dump)], "pg_dump")
            t_end = self._now()
            sizes = {"etcd_snapshot": snap.stat().st_size, "pg_dump": dump.stat().st_size}
            res.update(t_point=round(t_point, 6), t_end=round(t_end, 6), **sizes)
        return Backup(dest, snap, dump, t_start, t_point, t_end, sizes)

    def _kill_stack(self, components: Sequence[str] = COMPONENT_ORDER) -> list[str]:
        killed = []
        for n in self.running():
            if self._proc(n).instance.component in components:
                self.dep.stop(n, graceful=False)
                killed.append(n)
        self._killed.update(killed)
        return killed

    def wipe(self) -> dict[str, Any]:
        """Disaster: every stack process SIGKILLed, etcd's and PostgreSQL's data directories removed."""
        with self.window(WIPE_KIND, "all", {}) as res:
            killed = self._kill_stack()
            self.dep.etcd.stop(remove_data=True)
            self.dep.postgres.stop(remove_data=True)
            res.update(killed=killed, etcd="data removed", postgres="data removed")
        return res

    def lose_data_dir(self, component: str = "postgres") -> dict[str, Any]:
        """A lost volume: the data directory disappears under the running server, which then dies (its
        pod restarts on an empty volume). ``postgres`` or ``etcd`` (every member)."""
        with self.window(VOLUME_LOSS_KIND, component, {}) as res:
            if component == "postgres":
                pg = self.dep.postgres
                shutil.rmtree(pg.data_dir, ignore_errors=True)
                pg.kill()
                pg.stop(remove_data=True)
            elif component == "etcd":
                for m in self.dep.etcd.members:
                    shutil.rmtree(m.data_dir, ignore_errors=True)
                self.dep.etcd.stop(remove_data=True)
            else:
                raise Unsupported(f"lose_data_dir: postgres or etcd, got {component!r}")
            res["lost"] = component
        return res

    def _restore_etcd(self, backup: Backup) -> None:
        etcdctl = find_etcdctl()
        if etcdctl is None or backup.etcd_snapshot is None:
            raise Unsupported("etcd restore needs etcdctl and an etcd snapshot in the backup")
        cluster = self.dep.etcd
        for m in cluster.members:
            if m.process.is_running():
                m.stop()
            shutil.rmtree(m.data_dir, ignore_errors=True)
        initial = ",".join(f"{m.name}={m.peer_url}" for m in cluster.members)
        for m in cluster.members:
            run_tool([etcdctl, "snapshot", "restore", str(backup.etcd_snapshot), "--name", m.name,
                       "--data-dir", str(m.data_dir), "--initial-cluster", initial,
                       "--initial-cluster-token", cluster.token, "--initial-advertise-peer-urls", m.peer_url],
                      f"etcdctl snapshot restore ({m.name})", env={"ETCDCTL_API": "3"})
        cluster.start(timeout=20)

    def _restore_postgres(self, backup: Backup) -> None:
        pg = self.dep.postgres
        if pg.process is not None and pg.process.is_running():
            raise PlatformError("restore: PostgreSQL still runs on its old data; wipe or lose it first")
        pg.start(timeout=30)  # a fresh initdb, the application role (current password) and database
        run_tool([str(pg.bindir / "pg_restore"), "-h", str(pg.socket_dir), "-p", str(pg.port), "-U", "postgres",
                   "-d", pg.database, "--exit-on-error", "--single-transaction", str(backup.pg_dump)], "pg_restore")

    def counter_values(self, keys: Iterable[str]) -> dict[str, int]:
        """Counter values as stored in PostgreSQL (a key never persisted is 0, a fresh counter)."""
        keys = list(keys)
        with self.dep.postgres.admin_connect(dbname=self.dep.postgres.database) as conn:
            # by id only: the counter's type name is a setting (object_type), ids are unique anyway
            rows = conn.execute("SELECT object_id, data FROM goverse_objects WHERE object_id = ANY(%s)",
                                (keys,)).fetchall()
        found = {r[0]: int((r[1] or {}).get("value", 0)) for r in rows}
        return {k: found.get(k, 0) for k in keys}

    # ---- restore's steps (the procedure: ``RestoreProcedure.restore``) -------------------------------
    def _restore_timeout(self) -> float:
        return 2 * self._converge_budget()

    def _stop_nodes(self) -> list[str]:
        return self._kill_stack(("node",))

    def _start_stopped_after_restore(self) -> dict[str, Any]:
        """Every stack process killed before (by the restore, a wipe or a volume loss), in component
        order, then by ordinal."""
        rank = {c: i for i, c in enumerate(COMPONENT_ORDER)}
        for n in sorted(self._killed, key=lambda n: (rank.get(self._proc(n).instance.component, 9), ordinal(n))):
            self.dep.start(n)
        self._killed.clear()
        return {}
