"""Disk faults under a data directory, and sweeping what they leave behind.

The two mechanisms live in their own modules: :mod:`smallfs` (a small dedicated filesystem for "disk
full") and :mod:`faultfs` (a FUSE pass-through layer for I/O latency and EIO, served by
:mod:`faultfs_daemon`); :mod:`mounts` reads and undoes mounts. This module keeps the names callers
import (``SmallFilesystem``, ``FaultFS``, ``fuse_support``, ``mounts``, ``is_mounted``), the daemon's
entry point (``python -m harness.platforms.local.diskfault serve PREFIX SOURCE MOUNTPOINT``) and the
sweeping of a dead run's mounts, loop devices, images and FUSE daemons.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from typing import Literal

import psutil

from harness.platforms.local.faultfs import FaultFS, fuse_support
from harness.platforms.local.mounts import _umount, is_mounted, mounts
from harness.platforms.local.netns import sh
from harness.platforms.local.smallfs import SmallFilesystem, _detach_loop, _loops

__all__ = ["FaultFS", "SmallFilesystem", "_detach_loop", "_umount", "cleanup_leftovers", "fuse_support",
           "is_mounted", "leftovers", "mounts"]

log = logging.getLogger(__name__)

FsKind = Literal["tmpfs", "ext4"]
Mode = Literal["none", "latency", "eio"]


# --- sweeping -----------------------------------------------------------------------------------------


def leftovers(prefix: str) -> list[str]:
    """Mounts, loop devices, images and FUSE daemons of ``prefix`` that still exist."""
    loops = [(d, f) for d, f in _loops() if prefix in f]
    devs = {d for d, _ in loops}
    out = [f"mount {m[1]} ({m[0]})" for m in mounts()
           if m[0].startswith(prefix) or prefix in m[1] or m[0] in devs]
    out += [f"loop {d} ({f})" for d, f in loops]
    out += [f"process {p.pid}" for p in _daemons(prefix)]
    return out


def _daemons(prefix: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info.get("cmdline") or []
        if "harness.platforms.local.diskfault" in cmd and "serve" in cmd and prefix in " ".join(cmd):
            out.append(p)
    return out


def cleanup_leftovers(prefix: str) -> list[str]:
    """Unmount every mount of ``prefix`` (by fsname or path), detach its loop devices, delete their
    images and kill its FUSE daemons."""
    removed = []
    devs = {d for d, f in _loops() if prefix in f}
    for src, mnt, _ in sorted(mounts(), key=lambda m: len(m[1]), reverse=True):
        if src.startswith(prefix) or prefix in mnt or src in devs:
            _umount(mnt)
            removed.append(f"mount {mnt}")
    for p in _daemons(prefix):
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
            removed.append(f"process {p.pid}")
    for dev, back in _loops():
        if prefix in back:
            sh(["losetup", "-d", dev], check=False)
            path = back.replace(" (deleted)", "")
            with contextlib.suppress(OSError):
                os.unlink(path)
            removed.append(f"loop {dev}")
    return removed


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "serve":
        from harness.platforms.local.faultfs_daemon import _serve

        _serve(argv[1], argv[2], argv[3])
        return 0
    print("usage: python -m harness.platforms.local.diskfault serve PREFIX SOURCE MOUNTPOINT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
