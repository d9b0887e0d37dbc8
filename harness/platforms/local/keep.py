"""``--keep-stack`` on the local platform: a stack that outlives the run, and ``goverse-harness down``.

Why more than skipping teardown: the harness kills every process it started when it exits (the
``ManagedProcess`` exit hook) and the next run sweeps a dead run's namespaces. A kept stack's processes
are therefore detached from that hook and moved from the run's process record into a *kept record*
(``<records>/../kept/<prefix>.json``) that sweeps leave alone; ``down`` ends them and removes their
namespaces, mounts, cgroups and stack directory, exactly as a sweep would.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import psutil

from harness import pidrecord
from harness.platforms.local import cgroups, diskfault, netns
from harness.platforms.local.process import ManagedProcess

KEPT_MARK = ".kept"  # in a kept stack's temp dir: sweeps leave the dir alone


def kept_dir() -> Path:
    return pidrecord.records_dir().parent / "kept"


def keep_running(prefix: str, processes: Iterable[ManagedProcess], stack_dir: Path | None,
                 info: Mapping[str, Any]) -> Path:
    """Detach ``processes`` from this run (exit hook, process record) and record them as kept."""
    entries: list[dict[str, Any]] = []
    for proc in processes:
        pid = proc.detach()
        if pid is not None:
            start = pidrecord.start_time(pid)
            if start is not None:
                entries.append({"pid": pid, "start": start, "name": proc.name})
    pidrecord.forget({int(e["pid"]) for e in entries})
    if stack_dir is not None:
        (stack_dir / KEPT_MARK).write_text(prefix + "\n", encoding="utf-8")
    path = kept_dir() / f"{netns.check_prefix(prefix)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"prefix": prefix, "stack_dir": str(stack_dir) if stack_dir else None,
                                "processes": entries, **info}, indent=1, default=str), encoding="utf-8")
    return path


def kept_prefixes() -> set[str]:
    return {p.stem for p in kept_dir().glob("*.json")} if kept_dir().is_dir() else set()


def kept_stacks() -> list[dict[str, Any]]:
    out = []
    for path in sorted(kept_dir().glob("*.json")) if kept_dir().is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            out.append(json.loads(path.read_text(encoding="utf-8")))
    return out


def down(prefix: str) -> list[str]:
    """End a kept stack: its processes, then mounts, cgroups, namespaces, its directory and the record."""
    path = kept_dir() / f"{netns.check_prefix(prefix)}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    removed: list[str] = []
    victims: list[psutil.Process] = []
    for entry in data.get("processes", []):
        for proc in pidrecord.victims(entry):
            victims.append(proc)
            removed.append(f"process {entry.get('name')} {proc.pid}")
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(victims, timeout=10)
    removed += diskfault.cleanup_leftovers(prefix)
    removed += cgroups.cleanup_leftovers(prefix)
    removed += netns.cleanup_leftovers(prefix)
    netns.release_prefix(prefix)
    stack_dir = data.get("stack_dir")
    if stack_dir and Path(stack_dir).exists():
        shutil.rmtree(stack_dir, ignore_errors=True)
        removed.append(f"dir {stack_dir}")
    path.unlink()
    return removed
