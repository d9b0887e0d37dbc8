"""Reading and undoing mounts (/proc/mounts; lazy unmount when busy), for the disk faults and sweeping."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from harness.platforms.local.netns import sh

log = logging.getLogger(__name__)

FsKind = Literal["tmpfs", "ext4"]
Mode = Literal["none", "latency", "eio"]


# --- mounts -----------------------------------------------------------------------------------------


def mounts() -> list[tuple[str, str, str]]:
    """(source, mount point, fstype) of every mount, from /proc/mounts (octal escapes decoded)."""
    out = []
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            dec = [p.encode().decode("unicode_escape") for p in parts[:3]]
            out.append((dec[0], dec[1], dec[2]))
    return out


def is_mounted(path: str | Path) -> bool:
    p = os.path.realpath(path)
    return any(m[1] == p for m in mounts())


def _umount(path: str | Path) -> None:
    if not is_mounted(path):
        return
    if sh(["umount", str(path)], check=False).returncode != 0:
        sh(["umount", "-l", str(path)], check=False)  # busy: detach now, the kernel frees it later
