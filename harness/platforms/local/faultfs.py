"""A FUSE pass-through layer whose data operations can be made slow (I/O latency) or failing (EIO).

Why FUSE: the kernel has no device-mapper ``delay``/``error`` targets we can rely on, and no netem-like
knob for block I/O, but it has FUSE. :class:`FaultFS` mounts a pass-through of a source directory at the
data directory's path and drives a daemon process (:mod:`harness.platforms.local.faultfs_daemon`, started
as ``python -m harness.platforms.local.diskfault serve …`` so sweeping finds it by its command line).
Metadata lookups (stat, readdir) keep working so the process notices the fault only where a real
failing disk would hurt it. Needs ``mfusepy`` and libfuse 3 (or 2); without them :class:`FaultFS` raises
:class:`Unsupported`.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Literal

from harness.platforms.base import PlatformError, Unsupported
from harness.platforms.local.mounts import _umount, is_mounted
from harness.waiting import wait_until

log = logging.getLogger(__name__)

FsKind = Literal["tmpfs", "ext4"]
Mode = Literal["none", "latency", "eio"]


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
