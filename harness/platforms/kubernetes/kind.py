"""kind clusters from the ``kind`` binary on PATH: create if absent, reuse if present, delete only
what we created.

Why these rules (pytest-kind-ng, e2e-framework users): clusters are slow to create, so reuse one that
exists; a cluster the harness did not create may be someone's, so never delete it; and when a run
fails, ``kind export logs`` is the only way to see what the kubelet and containerd saw.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from harness.platforms.base import PlatformError, Unsupported

log = logging.getLogger(__name__)


class KindCluster:
    def __init__(self, name: str, kind_bin: str = "kind", node_image: str | None = None,
                 config_file: str | None = None) -> None:
        self.name = name
        self.kind_bin = kind_bin
        self.node_image = node_image
        self.config_file = config_file
        self.created = False

    @property
    def context(self) -> str:
        return f"kind-{self.name}"

    def _run(self, *args: str, timeout: float = 600) -> str:
        exe = shutil.which(self.kind_bin)
        if exe is None:
            raise Unsupported(f"{self.kind_bin!r} is not on PATH: install kind (https://kind.sigs.k8s.io) "
                              "or use --platform kubernetes with an existing cluster")
        res = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, check=False)
        if res.returncode != 0:
            raise PlatformError(f"kind {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
        return res.stdout

    def exists(self) -> bool:
        return self.name in self._run("get", "clusters").split()

    def ensure(self, kubeconfig: Path) -> bool:
        """Make sure the cluster exists and ``kubeconfig`` points at it; True if we created it."""
        kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        if not self.exists():
            args = ["create", "cluster", "--name", self.name, "--kubeconfig", str(kubeconfig), "--wait", "180s"]
            if self.node_image:
                args += ["--image", self.node_image]
            if self.config_file:
                args += ["--config", self.config_file]
            log.info("creating kind cluster %s", self.name)
            self._run(*args, timeout=900)
            self.created = True
        else:
            log.info("reusing kind cluster %s", self.name)
            kubeconfig.write_text(self._run("get", "kubeconfig", "--name", self.name))
        return self.created

    def load_image(self, image: str) -> None:
        """Side-load a locally built image into the nodes (no registry involved)."""
        self._run("load", "docker-image", image, "--name", self.name)

    def export_logs(self, directory: Path) -> None:
        try:
            self._run("export", "logs", str(directory), "--name", self.name, timeout=300)
        except (PlatformError, Unsupported, subprocess.TimeoutExpired) as exc:
            log.warning("kind export logs failed: %s", exc)

    def delete(self) -> None:
        """Delete the cluster, but only if this object created it."""
        if not self.created:
            log.info("kind cluster %s was not created by this run: leaving it", self.name)
            return
        self._run("delete", "cluster", "--name", self.name, timeout=300)
        self.created = False
