"""Memory pressure on the local platform, besides the cgroup limit: the stressor that fills the
target's group, the target's ``oom_score_adj`` (set and restored), and the supervisor that restarts
what the OOM killer took while the fault holds. Used by ``LocalInjector._inject_memory_pressure``.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
from typing import Any

from harness.faults.outcomes import MemoryRestart
from harness.platforms.base import PlatformError


def set_oom_score_adj(pid: int, value: str) -> tuple[int, str]:
    """Set a process's ``oom_score_adj``; returns (pid, previous value) for the restore."""
    path = f"/proc/{pid}/oom_score_adj"
    with open(path, encoding="ascii") as f:
        old = f.read().strip()
    with open(path, "w", encoding="ascii") as f:
        f.write(value)
    return pid, old


def restore_oom_scores(dep: Any, scores: dict[str, tuple[int, str]]) -> None:
    """Put the scores back on the processes that still run (an OOM-killed one took its score along,
    and its pid may belong to someone else by now, so only the target's live process is touched)."""
    for t, (pid, old) in scores.items():
        proc = dep.process(t)
        if proc.pid != pid or not proc.is_running():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{pid}/oom_score_adj", "w", encoding="ascii") as f:
            f.write(old)


_OOM_KILLED = re.compile(r"Memory cgroup out of memory: Killed process (\d+) ")


def parse_oom_kills(kernel_log: str) -> list[int]:
    """Pids the memory cgroup OOM killer killed, in the order of the kernel log's lines."""
    return [int(m.group(1)) for m in _OOM_KILLED.finditer(kernel_log)]


def kernel_oom_kills(pids: set[int]) -> list[int] | None:
    """Which of ``pids`` the kernel log says the memory cgroup OOM killer killed. Why the log: when a
    container's main process dies, its runtime kills what is left in the container's cgroups and
    removes them, our nested group included, so the group's own ``oom_kill`` counter is gone by the
    time a heal reads it. None when the log cannot be read (no ``dmesg``, or not allowed)."""
    try:
        res = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    return [p for p in parse_oom_kills(res.stdout) if p in pids]


STRESSOR_CODE = r"""
import sys
if sys.stdin.readline().strip() == "go":
    target, chunk, written = int(sys.argv[3]) << 20, b"\x01" * (1 << 20), 0
    with open(sys.argv[2], "wb", buffering=0) as f:
        while written < target:
            written += f.write(chunk)
    sys.stdin.readline()
"""


class MemoryStressor:
    """A process inside the target's memory cgroup that fills a small tmpfs with ``limit_mb`` (Chaos
    Mesh's StressChaos memory stressor, which runs inside the pod's cgroup).

    Why a stressor and not only a limit: cgroup v1 on this kernel charges a moved process only for
    memory it allocates *after* the move (``move_charge_at_immigrate`` no longer moves charges) and
    refuses a limit below the current usage, so a limit alone leaves a steady-state node untouched.
    The stressor fills the group up to the limit; the next allocation finds no room, and the kernel's
    OOM killer chooses within the group by badness (resident memory + ``oom_score_adj``).

    Why tmpfs pages rather than the stressor's own heap: they are charged to the group but are in no
    process's resident set, so the stressor stays small and the target — made the preferred victim
    with ``oom_score_adj`` 1000, restored at heal — is the one killed even when it is tiny. (Chaos
    Mesh exempts its stressor with -1000 instead, but lowering a score needs CAP_SYS_RESOURCE, which
    containers often lack; this one does.) The pages stay charged until the heal unmounts the tmpfs,
    so the squeeze lasts as long as the fault. Same mechanism on cgroup v2 (``memory.max``). The tmpfs
    and the stressor's command line carry the run prefix, so sweepers find them after a crash."""

    def __init__(self, prefix: str, target: str) -> None:
        self.prefix = prefix
        self.target = target
        self.proc: subprocess.Popen[str] | None = None
        self.fill: Any = None  # diskfault.SmallFilesystem holding the charged pages
        self.filled_mb = 0.0

    def start(self, group: Any, limit_mb: int) -> MemoryStressor:
        import tempfile

        from harness.platforms.local import cgroups
        from harness.platforms.local.diskfault import SmallFilesystem

        try:
            where = tempfile.mkdtemp(prefix=f"{self.prefix}-memfill-")
            self.fill = SmallFilesystem(self.prefix, where, size_mb=2 * limit_mb + 16).mount()
            self.proc = subprocess.Popen(
                [sys.executable, "-c", STRESSOR_CODE, f"{self.prefix}-stressor-{self.target}",
                 str(self.fill.mountpoint / "fill"), str(limit_mb)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                start_new_session=True)
            if group is None or not cgroups.move(self.proc.pid, group):
                raise PlatformError(f"memory stressor for {self.target} exited before it joined the cgroup")
            assert self.proc.stdin is not None
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
        except BaseException:
            self.heal()
            raise
        return self

    def heal(self) -> float:
        """Kill the stressor and unmount its tmpfs (the charged pages go with it); returns how many
        MB it had written into the group (it may itself be OOM-killed once the target is gone)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=10)
        fill, self.fill = self.fill, None
        if fill is not None:
            with contextlib.suppress(OSError):
                self.filled_mb = round((fill.mountpoint / "fill").stat().st_size / 2**20, 1)
            fill.unmount()
            with contextlib.suppress(OSError):
                fill.mountpoint.rmdir()
        return self.filled_mb


class Supervisor:
    """Restarts stack processes that died while a fault holds them (a kubelet's restart policy).

    Why the harness does it: on the local platform nothing else supervises the stack — the harness is the
    platform. Polls ten times a second (a process exit has no portable wakeup here); records when
    each target died, with which exit code, and when it was running again."""

    POLL_S = 0.1

    def __init__(self, dep: Any, limits: dict[str, Any]) -> None:
        self.dep = dep
        self.limits = limits
        self.kills: dict[str, int] = {}
        self.restarts: list[MemoryRestart] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-supervisor", daemon=True)
        self._t0 = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def heal(self) -> None:
        """Stop supervising (idempotent); registered with the deployment so teardown stops it too."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        for key, value in list(self.dep.fault_limits.items()):
            if value is self:
                self.dep.fault_limits.pop(key, None)

    def _run(self) -> None:
        while not self._stop.wait(self.POLL_S):
            if getattr(self.dep, "_torn_down", False):
                return  # the stack is being stopped on purpose: restarting it would leak a process
            for t, lim in self.limits.items():
                proc = self.dep.process(t)
                if proc.is_running():
                    continue
                code = proc.returncode
                died = round(time.monotonic() - self._t0, 3)
                with contextlib.suppress(OSError):
                    self.kills[t] = lim.oom_kills()
                try:
                    self.dep.start(t)
                    self.restarts.append({"target": t, "exit_code": code, "died_after_s": died,
                                          "restarted_after_s": round(time.monotonic() - self._t0, 3)})
                except Exception as exc:  # noqa: BLE001 - reported in the heal result
                    self.restarts.append({"target": t, "exit_code": code, "died_after_s": died,
                                          "restart_error": repr(exc)})
