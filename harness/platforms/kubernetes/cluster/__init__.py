"""Cluster providers for ``goverse-harness cluster up|down|status|load-image``.

``kind`` and ``k3d`` need a Docker engine; ``binaries`` (``binaries.BinariesCluster``) needs none: it
builds Kubernetes from the Go module proxy and runs it on this machine. The default is kind when a
Docker engine answers, else binaries.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Protocol

from harness.platforms.base import PlatformError

PROVIDERS = ("kind", "k3d", "binaries")


class ClusterProvider(Protocol):
    name: str

    @property
    def kubeconfig(self) -> Path: ...
    def up(self) -> dict[str, float]: ...
    def down(self, export_logs: Path | None = None) -> list[str]: ...
    def status(self) -> dict[str, Any]: ...
    def load_image(self, archive: Path) -> str: ...


def docker_engine_answers() -> bool:
    """Whether a Docker engine (not just the client) answers."""
    if shutil.which("docker") is None:
        return False
    try:
        res = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                             timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return False
    return res.returncode == 0 and bool(res.stdout.strip())


def default_provider() -> str:
    return "kind" if docker_engine_answers() else "binaries"


def make_provider(name: str | None, cluster_name: str = "goverse-harness") -> ClusterProvider:
    """The provider called ``name`` (None: the default for this machine)."""
    name = name or default_provider()
    if name == "binaries":
        from harness.platforms.kubernetes.cluster.binaries import BinariesCluster

        return BinariesCluster()
    if name in ("kind", "k3d"):
        from harness.platforms.kubernetes.cluster.docker_based import DockerCluster

        return DockerCluster(name, cluster_name)
    raise PlatformError(f"--provider: unknown provider {name!r}; allowed: {', '.join(PROVIDERS)}")
