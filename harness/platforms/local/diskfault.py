"""Disk faults under a data directory: a small dedicated filesystem (disk full) and a FUSE
pass-through layer that injects I/O latency or EIO.

Why a dedicated filesystem: "PostgreSQL's disk is full" must not fill the machine's disk (and every
other test with it). The data directory lives on its own small filesystem — tmpfs with ``size=``, or an
ext4 image on a loop device — so :meth:`SmallFilesystem.fill` can write a ballast file until ENOSPC and
:meth:`SmallFilesystem.free` can delete it, leaving the data itself untouched.

Why FUSE for latency/EIO: the kernel has no device-mapper ``delay``/``error`` targets we can rely on,
and no netem-like knob for block I/O, but it has FUSE. :class:`FaultFS` mounts a pass-through of a
source directory at the data directory's path; a mode switch makes data operations (open, read, write,
fsync, create, rename, unlink, truncate …) slow or fail with EIO, while metadata lookups (stat,
readdir) keep working so the process notices the fault only where a real failing disk would hurt it.
The FUSE daemon is a child process (``python -m harness.platforms.local.diskfault serve …``): it must
keep serving while the harness is busy, must not share the harness's GIL with PostgreSQL's I/O, and if
the harness dies the mount is cleaned up by :func:`cleanup_leftovers` (the daemon's command line and
the mount's fsname carry the run prefix). It needs the ``mfusepy`` package and libfuse 3 (or 2)
(Debian: ``apt-get install -y fuse3``); without them :class:`FaultFS` raises :class:`Unsupported`.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import errno
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import psutil

from harness.platforms.base import PlatformError, Unsupported
from harness.platforms.local.netns import sh
from harness.waiting import WaitTimeout, wait_until

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


# --- FUSE fault layer ---------------------------------------------------------------------------------


def fuse_support() -> tuple[bool, str]:
    """Whether :class:`FaultFS` can run here, and why (not)."""
    if os.geteuid() != 0:
        return False, "FUSE mounts with allow_other need root here"
    if "fuse" not in Path("/proc/filesystems").read_text().split():
        return False, "kernel has no fuse filesystem"
    if not os.path.exists("/dev/fuse"):
        return False, "/dev/fuse is missing"
    if not (ctypes.util.find_library("fuse3") or ctypes.util.find_library("fuse")):
        return False, "libfuse is not installed (apt-get install -y fuse3)"
    try:
        import mfusepy  # noqa: F401
    except ImportError:
        return False, "python package mfusepy is not installed (pip install mfusepy)"
    return True, "FUSE pass-through (mfusepy + libfuse)"


class FaultFS:
    """A FUSE pass-through of ``source`` mounted at ``mountpoint``, whose data operations can be made
    slow (:meth:`latency`) or failing (:meth:`eio`) at runtime; :meth:`heal` makes it transparent again.

    Point the process at ``mountpoint`` (e.g. PostgreSQL's data directory) at deploy time; the real
    files live in ``source``.
    """

    def __init__(self, prefix: str, source: str | Path, mountpoint: str | Path) -> None:
        ok, why = fuse_support()
        if not ok:
            raise Unsupported(f"I/O latency/EIO needs FUSE: {why}")
        self.prefix = prefix
        self.source = Path(source).resolve()
        self.mountpoint = Path(mountpoint).resolve()
        self.proc: subprocess.Popen[str] | None = None
        self.mode: tuple[Mode, float] = ("none", 0.0)

    def mount(self, timeout: float = 15.0) -> FaultFS:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        st = self.source.stat()
        os.chown(self.mountpoint, st.st_uid, st.st_gid)
        os.chmod(self.mountpoint, st.st_mode & 0o7777)
        repo = str(Path(__file__).resolve().parents[3])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.platforms.local.diskfault", "serve", self.prefix,
             str(self.source), str(self.mountpoint)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            start_new_session=True,  # Ctrl-C must not kill the daemon before the harness unmounts
        )
        try:
            wait_until(lambda: self._alive() and is_mounted(self.mountpoint), timeout,
                       f"FUSE fault layer at {self.mountpoint}", describe=self._why_not)
        except BaseException:
            self.unmount()
            raise
        return self

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise PlatformError(f"FUSE daemon exited ({self.proc.returncode}): {self._why_not()}")
        return True

    def _why_not(self) -> str:
        if self.proc is not None and self.proc.poll() is not None and self.proc.stderr:
            return self.proc.stderr.read()[-2000:]
        return "mount not visible yet"

    def _send(self, line: str) -> None:
        if self.proc is None or self.proc.stdin is None or self.proc.stdout is None:
            raise PlatformError("FUSE fault layer is not mounted")
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().strip()
        if reply != "ok":
            raise PlatformError(f"FUSE daemon refused {line!r}: {reply!r} {self._why_not()}")

    def latency(self, ms: float) -> None:
        """Delay every data operation by ``ms`` milliseconds (in force when this returns)."""
        self._send(f"latency {float(ms)}")
        self.mode = ("latency", float(ms))

    def eio(self) -> None:
        """Fail every data operation with EIO."""
        self._send("eio")
        self.mode = ("eio", 0.0)

    def heal(self) -> None:
        self._send("none")
        self.mode = ("none", 0.0)

    def unmount(self) -> None:
        """Stop the daemon and remove the mount (idempotent); ``source`` keeps the data."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert proc.stdin is not None
                proc.stdin.write("none\n")
                proc.stdin.flush()
        _umount(self.mountpoint)  # makes the daemon's fuse loop return
        if proc is not None:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            for f in (proc.stdin, proc.stdout, proc.stderr):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()
        _umount(self.mountpoint)

    def __enter__(self) -> FaultFS:
        return self.mount()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unmount()


def _serve(prefix: str, source: str, mountpoint: str) -> None:
    """The FUSE daemon (child process): pass-through with a mode set by lines on stdin."""
    import mfusepy as fuse

    state: dict[str, Any] = {"mode": "none", "ms": 0.0}
    root = os.path.realpath(source)

    def control() -> None:
        for line in sys.stdin:
            parts = line.split()
            if not parts:
                continue
            if parts[0] in ("none", "eio") or (parts[0] == "latency" and len(parts) == 2):
                state["ms"] = float(parts[1]) if parts[0] == "latency" else 0.0
                state["mode"] = parts[0]
                print("ok", flush=True)
            else:
                print(f"bad command {line.strip()!r}", flush=True)

    def fault() -> None:
        mode = state["mode"]
        if mode == "eio":
            raise fuse.FuseOSError(errno.EIO)
        if mode == "latency" and state["ms"] > 0:
            time.sleep(state["ms"] / 1000.0)  # sleep-ok: injected I/O latency is the point

    def full(path: str) -> str:
        return os.path.join(root, path.lstrip("/"))

    def own(path: str) -> None:
        uid, gid, _ = fuse.fuse_get_context()
        with contextlib.suppress(OSError):
            os.lchown(full(path), uid, gid)

    def wrap_errors(fn: Any) -> Any:
        @functools.wraps(fn)  # mfusepy inspects the signature (e.g. create with or without flags)
        def inner(*a: Any, **kw: Any) -> Any:
            try:
                return fn(*a, **kw)
            except OSError as exc:
                if isinstance(exc, fuse.FuseOSError):
                    raise
                raise fuse.FuseOSError(exc.errno or errno.EIO) from None
        return inner

    class PassThrough(fuse.Operations):  # type: ignore[misc]
        use_ns = True

        @wrap_errors
        def access(self, path: str, amode: int) -> int:
            if not os.access(full(path), amode):
                raise fuse.FuseOSError(errno.EACCES)
            return 0

        @wrap_errors
        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            st = os.lstat(full(path))
            keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino", "st_dev", "st_blocks")
            d = {k: getattr(st, k) for k in keys}
            d.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
            return d

        @wrap_errors
        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *os.listdir(full(path))]

        @wrap_errors
        def readlink(self, path: str) -> str:
            return os.readlink(full(path))

        @wrap_errors
        def statfs(self, path: str) -> dict[str, int]:
            sv = os.statvfs(full(path))
            keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
                    "f_flag", "f_frsize", "f_namemax")
            return {k: getattr(sv, k) for k in keys}

        @wrap_errors
        def chmod(self, path: str, mode: int) -> int:
            os.chmod(full(path), mode)
            return 0

        @wrap_errors
        def chown(self, path: str, uid: int, gid: int) -> int:
            os.lchown(full(path), uid, gid)
            return 0

        @wrap_errors
        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            if times is None:
                os.utime(full(path))
            else:
                os.utime(full(path), ns=times)
            return 0

        @wrap_errors
        def mkdir(self, path: str, mode: int) -> int:
            fault()
            os.mkdir(full(path), mode)
            own(path)
            return 0

        @wrap_errors
        def rmdir(self, path: str) -> int:
            fault()
            os.rmdir(full(path))
            return 0

        @wrap_errors
        def unlink(self, path: str) -> int:
            fault()
            os.unlink(full(path))
            return 0

        @wrap_errors
        def symlink(self, target: str, source_: str) -> int:
            fault()
            os.symlink(source_, full(target))
            own(target)
            return 0

        @wrap_errors
        def link(self, target: str, source_: str) -> int:
            fault()
            os.link(full(source_), full(target))
            return 0

        @wrap_errors
        def rename(self, old: str, new: str) -> int:
            fault()
            os.rename(full(old), full(new))
            return 0

        @wrap_errors
        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            fault()
            if fh is not None:
                os.ftruncate(fh, length)
            else:
                os.truncate(full(path), length)
            return 0

        @wrap_errors
        def open(self, path: str, flags: int) -> int:
            fault()
            return os.open(full(path), flags)

        @wrap_errors
        def create(self, path: str, mode: int, flags: int) -> int:
            fault()
            fd = os.open(full(path), flags | os.O_CREAT, mode)
            own(path)
            return fd

        @wrap_errors
        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            fault()
            return os.pread(fh, size, offset)

        @wrap_errors
        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            fault()
            return os.pwrite(fh, data, offset)

        @wrap_errors
        def fallocate(self, path: str, mode: int, offset: int, size: int, fh: int) -> int:
            fault()
            if mode != 0:
                raise fuse.FuseOSError(errno.EOPNOTSUPP)
            os.posix_fallocate(fh, offset, size)
            return 0

        @wrap_errors
        def flush(self, path: str, fh: int) -> int:
            return 0

        @wrap_errors
        def fsync(self, path: str, datasync: int, fh: int) -> int:
            fault()
            if datasync:
                os.fdatasync(fh)
            else:
                os.fsync(fh)
            return 0

        @wrap_errors
        def release(self, path: str, fh: int) -> int:
            os.close(fh)
            return 0

    threading.Thread(target=control, name="control", daemon=True).start()
    fuse.FUSE(PassThrough(), mountpoint, foreground=True, allow_other=True, default_permissions=True,
              fsname=f"{prefix}-faultfs")


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
        _serve(argv[1], argv[2], argv[3])
        return 0
    print("usage: python -m harness.platforms.local.diskfault serve PREFIX SOURCE MOUNTPOINT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
