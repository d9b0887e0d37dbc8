"""Removing a local stack (idempotent, never raises), or handing it over with ``--keep-stack``."""

from __future__ import annotations

import contextlib
import shutil
import signal
from pathlib import Path

from harness.platforms.local.deployment.control import ProcessControl


class Teardown(ProcessControl):
    """``teardown()`` and ``keep()``."""

    def teardown(self) -> None:
        """Stop everything and remove everything; idempotent, never raises."""
        with self._lock:
            if self._torn_down:
                return
            self._torn_down = True
        for p in self._procs.values():
            if p.process is not None:
                with contextlib.suppress(Exception):
                    p.process.signal(signal.SIGCONT)  # a paused process cannot exit
                    p.process.stop(2.0)
        self._unwire_faults()
        for closer in (self.etcd, self.postgres):
            if closer is not None:
                with contextlib.suppress(Exception):
                    for proc in ([m.process for m in getattr(closer, "members", [])] or
                                 [getattr(closer, "process", None)]):
                        if proc is not None:
                            proc.signal(signal.SIGCONT)
                with contextlib.suppress(Exception):
                    closer.stop()
        if self.network is not None:
            with contextlib.suppress(Exception):
                self.network.teardown()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def keep(self) -> Path:
        """``--keep-stack``: leave the stack running after this process exits (``goverse-harness down``
        removes it). Returns the kept record, which holds the endpoints and what to end."""
        from harness.platforms.local.keep import keep_running

        procs = [p.process for p in self._procs.values() if p.process is not None]
        procs += [m.process for m in (self.etcd.members if self.etcd else []) if m.process is not None]
        if self.postgres is not None and self.postgres.process is not None:
            procs.append(self.postgres.process)
        ep = self.endpoints()
        info = {"gates": ep.gates, "inspector": ep.inspector, "etcd": ep.etcd, "etcd_prefix": ep.prefix,
                "postgres": ep.postgres_dsn_redacted,
                "postgres_password_file": str(self._tmp / "pg-password") if self._tmp else None,
                "logs": str(self.run_dir / "logs")}
        self._torn_down = True  # nothing of this stack is ours to stop any more
        return keep_running(self.fault_prefix, procs, self._tmp, info)
