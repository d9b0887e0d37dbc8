"""What a run started, on disk, so that a sweeper can end it after the run was SIGKILLed.

Why a record and not a search: a killed run's processes (etcd, PostgreSQL, nodes, gates, the inspector)
are re-parented to PID 1 and carry nothing that names the run once their network namespaces are gone;
looking for them by namespace or command line misses them. Every :class:`ManagedProcess` appends
``pid``, its start time and its process group to ``<records>/<owner pid>-<owner start time>.jsonl`` as
it starts. When the owner (the harness process that started them) is gone, :func:`end_dead_runs` kills
each recorded process that is still the same process (same pid *and* start time, so a reused pid is
never hit), its descendants and the rest of its process group. A run that exits normally removes its
record file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

SYSTEM_DIR = Path("/run/goverse-harness/procs")
_LOCK = threading.Lock()
_START_TOLERANCE_S = 0.05  # psutil's create_time is derived from clock ticks: allow rounding


def records_dir() -> Path:
    """``/run/goverse-harness/procs`` as root, a per-user temp directory otherwise (GVH_PROC_RECORDS overrides)."""
    override = os.environ.get("GVH_PROC_RECORDS")
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return SYSTEM_DIR
    return Path(tempfile.gettempdir()) / f"goverse-harness-{os.geteuid()}" / "procs"


def start_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return None


def _same(start_a: float | None, start_b: float) -> bool:
    return start_a is not None and abs(start_a - start_b) <= _START_TOLERANCE_S


def own_record() -> Path:
    """This process's record file (not created until something is recorded)."""
    me = os.getpid()
    return records_dir() / f"{me}-{start_time(me) or 0:.2f}.jsonl"


def record(pid: int, name: str) -> None:
    """Note that this process started ``pid`` (a session leader: its process group id is ``pid``)."""
    start = start_time(pid)
    if start is None:
        return  # already gone: nothing to end later
    line = json.dumps({"pid": pid, "start": start, "name": name}) + "\n"
    try:
        with _LOCK:
            path = own_record()
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(line)
    except OSError as exc:  # a read-only /run must not stop a run; the sweep is then namespace-based only
        log.warning("cannot record process %s (%s) for cleanup: %s", name, pid, exc)


def forget(pids: set[int]) -> None:
    """Drop ``pids`` from this process's record (a kept stack's processes are no longer this run's)."""
    with _LOCK, contextlib.suppress(OSError):
        path = own_record()
        keep = [ln for ln in path.read_text(encoding="utf-8").splitlines()
                if ln.strip() and json.loads(ln).get("pid") not in pids]
        path.write_text("".join(f"{ln}\n" for ln in keep), encoding="utf-8")


def forget_own_record() -> None:
    """Remove this process's record (on a normal exit, after its processes were stopped)."""
    with contextlib.suppress(OSError):
        own_record().unlink()


@dataclass(frozen=True)
class DeadRun:
    """A record whose owner is gone."""

    path: Path
    owner_pid: int
    entries: list[dict[str, object]]


def dead_runs(where: Path | None = None) -> list[DeadRun]:
    """Records whose owning harness process is no longer running (pid gone, or reused by another process)."""
    base = where or records_dir()
    out: list[DeadRun] = []
    if not base.is_dir():
        return out
    for path in sorted(base.glob("*.jsonl")):
        try:
            pid_s, start_s = path.stem.split("-", 1)
            owner, owner_start = int(pid_s), float(start_s)
        except ValueError:
            continue
        if _same(start_time(owner), owner_start):
            continue  # alive: never touched
        entries: list[dict[str, object]] = []
        with contextlib.suppress(OSError):
            for line in path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError):
                    entries.append(json.loads(line))
        out.append(DeadRun(path, owner, entries))
    return out


def victims(entry: dict[str, object]) -> list[psutil.Process]:
    """The recorded process if it is still the same one, its descendants, and its process group's members
    started after it (a group can outlive its leader, e.g. PostgreSQL backends)."""
    try:
        pid, start = int(str(entry["pid"])), float(str(entry["start"]))
    except (KeyError, ValueError):
        return []
    found: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        leader = psutil.Process(pid)
        if _same(leader.create_time(), start):
            found[pid] = leader
            for child in leader.children(recursive=True):
                found[child.pid] = child
    for proc in psutil.process_iter(["pid", "create_time"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if (proc.pid not in found and os.getpgid(proc.pid) == pid
                    and (proc.info["create_time"] or 0) + _START_TOLERANCE_S >= start):
                found[proc.pid] = proc
    return list(found.values())


def end_dead_runs(*, dry_run: bool = False, where: Path | None = None, timeout: float = 10.0) -> dict[str, list[str]]:
    """SIGKILL every process a dead run recorded (see module doc). Returns ``{"pid OWNER": [what]}``;
    with ``dry_run`` only lists them. Record files go once their processes are gone."""
    out: dict[str, list[str]] = {}
    for run in dead_runs(where):
        doomed: list[psutil.Process] = []
        names: list[str] = []
        for entry in run.entries:
            for proc in victims(entry):
                doomed.append(proc)
                names.append(f"process {entry.get('name', '?')} {proc.pid}"
                             + ("" if proc.pid == entry.get("pid") else f" (of {entry.get('pid')})"))
        key = f"run pid {run.owner_pid}"
        out[key] = names
        if dry_run:
            continue
        for proc in doomed:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGCONT)  # a paused process cannot die before it is continued
                proc.kill()
        _gone, alive = psutil.wait_procs(doomed, timeout=timeout)
        if alive:
            log.warning("processes of dead run %s survived SIGKILL: %s", run.owner_pid, [p.pid for p in alive])
            continue  # keep the record: the next sweep tries again
        with contextlib.suppress(OSError):
            run.path.unlink()
    return {k: v for k, v in out.items() if v}
