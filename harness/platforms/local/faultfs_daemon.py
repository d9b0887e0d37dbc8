"""The FUSE daemon behind :class:`harness.platforms.local.faultfs.FaultFS`: a child process serving the
pass-through mount and reading mode switches (none / latency MS / eio) on stdin.

Why a child process: it must keep serving while the harness is busy and must not share the harness's
GIL with PostgreSQL's I/O; if the harness dies, sweeping kills it (its command line carries the prefix).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import sys
import threading
import time
from typing import Any, Literal

log = logging.getLogger(__name__)

FsKind = Literal["tmpfs", "ext4"]
Mode = Literal["none", "latency", "eio"]


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
