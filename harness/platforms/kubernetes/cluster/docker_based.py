"""kind and k3d behind the same ``up|down|status|load-image`` interface (both need a Docker engine).

Why thin: kind and k3d do the real work; this only maps our verbs onto theirs and keeps a kubeconfig
under the cache so ``run --platform kubernetes`` finds the cluster the same way for every provider.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from harness.platforms.base import PlatformError
from harness.platforms.kubernetes.cluster import versions as v


class DockerCluster:
    def __init__(self, tool: str, cluster_name: str) -> None:
        self.name = tool
        self.cluster_name = cluster_name

    @property
    def kubeconfig(self) -> Path:
        return v.cache_root() / "clusters" / f"{self.name}-{self.cluster_name}.kubeconfig"

    def _run(self, *args: str, timeout: float = 900) -> str:
        exe = shutil.which(self.name)
        if exe is None:
            raise PlatformError(f"--provider {self.name}: {self.name!r} is not on PATH")
        res = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, check=False)
        if res.returncode != 0:
            raise PlatformError(f"{self.name} {' '.join(args)} failed: {res.stderr.strip()[-2000:]}")
        return res.stdout

    def _exists(self) -> bool:
        if self.name == "kind":
            return self.cluster_name in self._run("get", "clusters").split()
        return self.cluster_name in self._run("cluster", "list", "--no-headers")

    def up(self) -> dict[str, float]:
        t0 = time.monotonic()
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        if not self._exists():
            if self.name == "kind":
                self._run("create", "cluster", "--name", self.cluster_name, "--wait", "180s")
            else:
                self._run("cluster", "create", self.cluster_name, "--wait")
        cfg = (self._run("get", "kubeconfig", "--name", self.cluster_name) if self.name == "kind"
               else self._run("kubeconfig", "get", self.cluster_name))
        self.kubeconfig.write_text(cfg)
        return {"total": round(time.monotonic() - t0, 1)}

    def down(self, export_logs: Path | None = None) -> list[str]:
        if not self._exists():
            return []
        if export_logs is not None and self.name == "kind":
            self._run("export", "logs", str(export_logs), "--name", self.cluster_name)
        if self.name == "kind":
            self._run("delete", "cluster", "--name", self.cluster_name)
        else:
            self._run("cluster", "delete", self.cluster_name)
        self.kubeconfig.unlink(missing_ok=True)
        return []

    def status(self) -> dict[str, Any]:
        return {"provider": self.name, "cluster": self.cluster_name, "exists": self._exists(),
                "kubeconfig": str(self.kubeconfig)}

    def load_image(self, archive: Path) -> str:
        if self.name == "kind":
            self._run("load", "image-archive", str(archive), "--name", self.cluster_name)
        else:
            self._run("image", "import", str(archive), "-c", self.cluster_name)
        return str(archive)
