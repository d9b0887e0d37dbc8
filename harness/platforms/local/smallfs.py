"""A small dedicated filesystem for "disk full": tmpfs with ``size=``, or an ext4 image on a loop device.

Why: "PostgreSQL's disk is full" must not fill the machine's disk (and every other test with it). The
data directory lives on its own small filesystem, so :meth:`SmallFilesystem.fill` can write a ballast
file until ENOSPC and :meth:`SmallFilesystem.free` can delete it, leaving the data itself untouched.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Literal

from harness.platforms.base import Unsupported
from harness.platforms.local.mounts import _umount, is_mounted
from harness.platforms.local.netns import sh
from harness.waiting import WaitTimeout, wait_until

log = logging.getLogger(__name__)

FsKind = Literal["tmpfs", "ext4"]
Mode = Literal["none", "latency", "eio"]


# --- a small filesystem for "disk full" ---------------------------------------------------------------


class SmallFilesystem:
    """A ``size_mb`` filesystem mounted at ``mountpoint`` (created if missing; existing contents are
    copied onto the new filesystem, so it can be slid under an existing data directory).

    ``kind="tmpfs"`` is instant and needs nothing but root; ``kind="ext4"`` is a loop-mounted image
    (``mkfs.ext4 -m 0``: no root-reserved blocks, so the ballast really leaves nothing for anyone), whose
    ENOSPC behaviour and fsync path are those of a real disk filesystem.
    """

    def __init__(
        self,
        prefix: str,
        mountpoint: str | Path,
        size_mb: int = 64,
        kind: FsKind = "tmpfs",
        owner: tuple[int, int] | None = None,
        mode: int | None = None,
        workdir: str | Path | None = None,
    ) -> None:
        if os.geteuid() != 0:
            raise Unsupported("mounting a filesystem needs root")
        if kind not in ("tmpfs", "ext4"):
            raise ValueError(f"kind must be tmpfs or ext4, got {kind!r}")
        self.prefix = prefix
        self.mountpoint = Path(mountpoint).resolve()
        self.size_mb = size_mb
        self.kind = kind
        self.owner = owner
        self.mode = mode
        self.workdir = Path(workdir or tempfile.gettempdir())
        self.image: Path | None = None
        self.loopdev: str | None = None
        self.ballast = self.mountpoint / f".{prefix}-ballast"
        self.mounted = False

    def mount(self) -> SmallFilesystem:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        st = self.mountpoint.stat()
        owner = self.owner or (st.st_uid, st.st_gid)
        mode = self.mode if self.mode is not None else (st.st_mode & 0o7777)
        saved: Path | None = None
        try:
            if any(self.mountpoint.iterdir()):
                saved = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-save-", dir=self.workdir))
                sh(["cp", "-a", f"{self.mountpoint}/.", str(saved)])
            if self.kind == "tmpfs":
                sh(["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode={mode:o}",
                    f"{self.prefix}-tmpfs", str(self.mountpoint)])
            else:
                self._mount_ext4()
            self.mounted = True
            os.chown(self.mountpoint, *owner)
            os.chmod(self.mountpoint, mode)
            if saved is not None:
                sh(["cp", "-a", f"{saved}/.", str(self.mountpoint)])
        except BaseException:
            self.unmount()
            raise
        finally:
            if saved is not None:
                shutil.rmtree(saved, ignore_errors=True)
        return self

    def _mount_ext4(self) -> None:
        if not shutil.which("mkfs.ext4") or not shutil.which("losetup"):
            raise Unsupported("ext4 image needs mkfs.ext4 and losetup (e2fsprogs, mount)")
        self.image = self.workdir / f"{self.prefix}-disk-{os.getpid()}-{id(self):x}.img"
        with open(self.image, "wb") as f:
            f.truncate(self.size_mb * 1024 * 1024)
        sh(["mkfs.ext4", "-q", "-F", "-m", "0", "-L", self.prefix[:16], str(self.image)])
        self.loopdev = sh(["losetup", "--find", "--show", str(self.image)]).stdout.strip()
        sh(["mount", "-t", "ext4", self.loopdev, str(self.mountpoint)])
        with contextlib.suppress(OSError):
            (self.mountpoint / "lost+found").rmdir()  # PostgreSQL's initdb refuses a non-empty dir

    def free_bytes(self) -> int:
        st = os.statvfs(self.mountpoint)
        return st.f_bavail * st.f_frsize

    def fill(self) -> int:
        """Write the ballast until the filesystem returns ENOSPC; returns the ballast's size.
        Existing files are not touched; writes by anyone (any uid) now fail with ENOSPC."""
        written = self.ballast.stat().st_size if self.ballast.exists() else 0
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
                buf = b"\0" * chunk
                while True:
                    try:
                        n = os.write(fd, buf)
                    except OSError as exc:
                        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                            break
                        raise
                    written += n
            with contextlib.suppress(OSError):
                os.fsync(fd)
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        """Delete the ballast (heal)."""
        with contextlib.suppress(FileNotFoundError):
            self.ballast.unlink()

    def unmount(self) -> None:
        """Unmount, detach the loop device and delete the image (idempotent). The contents go too."""
        if self.mounted or is_mounted(self.mountpoint):
            _umount(self.mountpoint)
            self.mounted = False
        if self.loopdev:
            _detach_loop(self.loopdev, str(self.image or ""))
            self.loopdev = None
        if self.image is not None:
            with contextlib.suppress(FileNotFoundError):
                self.image.unlink()
            self.image = None

    def __enter__(self) -> SmallFilesystem:
        return self.mount()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unmount()


def _detach_loop(dev: str, image: str, timeout: float = 10.0) -> None:
    """Detach ``dev`` and wait until it no longer holds ``image``. Why wait: right after an unmount the
    kernel may still hold the device, so ``losetup -d`` fails busy or only marks it for autoclear, and
    a teardown that returns then leaves a loop device behind for a moment (or for good)."""
    def gone() -> bool:
        if not any(d == dev and (not image or b.replace(" (deleted)", "") == image) for d, b in _loops()):
            return True
        sh(["losetup", "-d", dev], check=False)
        return False

    try:
        wait_until(gone, timeout, f"loop device {dev} to detach", interval=0.1)
    except WaitTimeout as exc:  # teardown goes on; the sweeper removes it later
        log.warning("loop device %s still attached after %gs: %s", dev, timeout, exc)


def _loops() -> list[tuple[str, str]]:
    r = sh(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"], check=False)
    return [(p[0], p[1]) for p in (line.split(None, 1) for line in r.stdout.splitlines()) if len(p) == 2]
