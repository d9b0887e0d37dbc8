"""One supervised OS process: start, signal, stop with a grace period, always reaped.

Why its own process group: a component may fork (PostgreSQL's backends, a shell wrapper such as
``ip netns exec``). Faults and teardown must hit the whole tree, and Ctrl-C in the harness's terminal
must not reach the stack directly (the harness decides when and how things stop). Every process that
is still alive when the interpreter exits is SIGKILLed by an ``atexit`` hook, so nothing is left behind
even when a caller forgets to stop it; and every start is recorded (harness.pidrecord)
so that a sweeper ends them when the harness itself was SIGKILLed and no hook could run.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pwd
import signal as _signal
import subprocess
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import pidrecord

log = logging.getLogger(__name__)

_LIVE: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def _kill_leftovers() -> None:
    with _LIVE_LOCK:
        leftovers = list(_LIVE)
    for proc in leftovers:
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            proc.kill()
    pidrecord.forget_own_record()  # everything it names is stopped: nothing for a sweeper to end


atexit.register(_kill_leftovers)


class ManagedProcess:
    """A child process in its own session, stdout+stderr appended to ``log_path``.

    ``env`` entries are layered over a copy of ``os.environ``; a ``None`` value removes the variable.
    ``user`` runs the child as that OS user (needs root unless it is the current user).
    ``wrap`` is a command prefix, e.g. ``["ip", "netns", "exec", "ns1"]``.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: str | Path,
        env: Mapping[str, str | None] | None = None,
        cwd: str | Path | None = None,
        user: str | None = None,
        wrap: Sequence[str] | None = None,
    ) -> None:
        if not argv:
            raise ValueError(f"{name}: argv must not be empty")
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.cwd = str(cwd) if cwd is not None else None
        self.user = user
        self.wrap = [str(w) for w in wrap] if wrap else []
        self._popen: subprocess.Popen[bytes] | None = None
        self._pgid: int | None = None

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the process (again, if it ran before and exited)."""
        if self.is_running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = None
        if self.env is not None:
            env = dict(os.environ)
            for key, value in self.env.items():
                if value is None:
                    env.pop(key, None)
                else:
                    env[key] = value
        user_kwargs: dict[str, Any] = {}
        argv = self.wrap + self.argv
        if self.user is not None and self.user != pwd.getpwuid(os.getuid()).pw_name:
            entry = pwd.getpwnam(self.user)
            if self.wrap:
                # The wrapper (e.g. `ip netns exec`) needs root, so drop privileges after it, not before.
                argv = self.wrap + ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                                    "--clear-groups", "--", *self.argv]
            else:
                user_kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            if env is None:
                env = dict(os.environ)
            env["HOME"] = entry.pw_dir
            env["USER"] = env["LOGNAME"] = self.user
        with open(self.log_path, "ab", buffering=0) as logf:
            logf.write(f"--- {self.name}: {' '.join(argv)}\n".encode())
            self._popen = subprocess.Popen(  # noqa: S603 - argv is built by the harness, no shell
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
                **user_kwargs,
            )
        self._pgid = self._popen.pid  # session leader: pgid == pid
        pidrecord.record(self._popen.pid, self.name)  # lets `goverse-harness cleanup` end it if we are SIGKILLed
        with _LIVE_LOCK:
            _LIVE.add(self)
        log.debug("started %s pid=%s", self.name, self._popen.pid)

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> int | None:
        if self._popen is None:
            return None
        return self._popen.poll()

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the main process (SIGSTOP/SIGCONT/SIGHUP/SIGTERM faults)."""
        if self._popen is None or self._popen.poll() is not None:
            raise ProcessLookupError(f"{self.name} is not running")
        self._popen.send_signal(sig)

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (e.g. pause a wrapper and its child together)."""
        if self._pgid is None:
            raise ProcessLookupError(f"{self.name} was never started")
        os.killpg(self._pgid, sig)

    def wait(self, timeout: float | None = None) -> int | None:
        """Exit code, or ``None`` if still running after ``timeout`` seconds."""
        if self._popen is None:
            return None
        try:
            return self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL the whole group. Returns the exit code
        (negative signal number if killed), ``None`` if it was never started."""
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(_signal.SIGTERM)
            # a SIGSTOPped process cannot act on SIGTERM until it is continued
            self._group_signal(_signal.SIGCONT)
            if self.wait(grace) is None:
                log.warning("%s did not exit within %.1fs of SIGTERM; SIGKILL", self.name, grace)
        return self.kill()

    def kill(self) -> int | None:
        """SIGKILL the whole process group and reap the main process."""
        if self._popen is None:
            return None
        self._group_signal(_signal.SIGKILL)
        code = self._popen.wait()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        return code

    def detach(self) -> int | None:
        """Leave the process running past this interpreter (``--keep-stack``): the exit hook no longer
        kills it. Returns its pid (``None`` if it is not running)."""
        with _LIVE_LOCK:
            _LIVE.discard(self)
        return self.pid if self.is_running() else None

    def _group_signal(self, sig: int) -> None:
        if self._pgid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pgid, sig)

    def __repr__(self) -> str:
        state = "running" if self.is_running() else f"exited({self.returncode})"
        return f"ManagedProcess({self.name!r}, pid={self.pid}, {state})"
