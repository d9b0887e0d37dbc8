"""Sweep what runs that died without teardown (SIGKILL, OOM, a lost CI runner) left on this machine.

A run can clean up after itself on success, failure and Ctrl-C, but not after SIGKILL. Every run
claims its prefix (``/run/goverse-harness/owners/<prefix>`` holds its pid); a prefix whose owner is
gone is dead, and everything named with it — network namespaces with the processes inside them,
veths, the bridge, cgroups, FUSE daemons, mounts, loop devices, and its stack temp dir — is safe
to remove. Live runs,
including parallel ones, are never touched. The pytest plugin sweeps at session start on the local
platform; ``goverse-harness cleanup`` does it by hand.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from harness import pidrecord
from harness.platforms.local import cgroups, diskfault, netns

STACK_DIR_PREFIX = "gvh-stack-"  # a local stack's temp dir: data dirs, configs, sockets
OWNER_FILE = ".owner"  # in that dir: the pid of the process that deployed the stack


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_stack_dirs(tmp: Path | None = None) -> list[Path]:
    """Stack temp dirs whose deploying process is gone (dirs without an owner file are left alone)."""
    out = []
    for d in sorted(Path(tmp or tempfile.gettempdir()).glob(f"{STACK_DIR_PREFIX}*")):
        try:
            pid = int((d / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if not _alive(pid) and not (d / ".kept").exists():  # a --keep-stack stack is `down`'s to remove
            out.append(d)
    return out


def sweep_dead_runs(tag: str = "gvh", *, dry_run: bool = False) -> dict[str, list[str]]:
    """Remove the leftovers of every dead run whose prefix starts with ``tag``.

    Returns ``{prefix: [what was removed]}``; with ``dry_run`` lists what would be removed.
    The processes a dead run recorded go first (whatever state its namespaces are in: once those are
    gone nothing else can find them), then mounts and cgroups, then namespaces and links, and last
    the ownership mark, so a sweep interrupted halfway is finished by the next one."""
    out: dict[str, list[str]] = dict(pidrecord.end_dead_runs(dry_run=dry_run))
    from harness.platforms.local.keep import kept_prefixes

    kept = kept_prefixes()
    for prefix in netns.dead_prefixes(tag):
        if prefix in kept:
            continue  # a --keep-stack stack: `goverse-harness down` removes it
        if dry_run:
            out[prefix] = (netns.leftovers(prefix) + diskfault.leftovers(prefix)
                           + [f"cgroup {g}" for g in cgroups.find_groups(prefix)])
            continue
        removed = diskfault.cleanup_leftovers(prefix)
        removed += cgroups.cleanup_leftovers(prefix)
        removed += netns.cleanup_leftovers(prefix)
        netns.release_prefix(prefix)
        out[prefix] = removed
    for d in dead_stack_dirs():  # after the unmounts above: a mount inside would pin it
        if dry_run:
            out.setdefault("stack dirs", []).append(f"dir {d}")
            continue
        if any(str(d) in m[1] for m in diskfault.mounts()):
            continue  # still mounted (a live run's FUSE layer?): leave it
        with contextlib.suppress(OSError):
            shutil.rmtree(d)
            out.setdefault("stack dirs", []).append(f"dir {d}")
    return out
