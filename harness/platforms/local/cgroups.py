"""CPU quota and memory limit for a process tree, through cgroups v1 or v2.

Why cgroups: "CPU starvation of one node" and "memory pressure until OOM kill" must hit exactly one
stack process (and its children) with the kernel's own mechanisms — a quota the scheduler enforces and
a limit the OOM killer enforces — not a CPU-burning neighbour whose effect depends on the machine.

Layouts: this machine is *hybrid* (cpu and memory are v1 controllers; the v2 tree has none of them);
most current distributions are pure v2. Each controller is looked up separately in
``/proc/self/mountinfo``: a v1 hierarchy that carries it wins, else the v2 tree if its
``cgroup.controllers`` lists it, else :class:`Unsupported`. Groups are created *under the harness's own
cgroup* in that hierarchy (on v1 memory that keeps the container's limits above ours); on v2, where a
cgroup with processes cannot delegate controllers, under the nearest ancestor that has (or can enable)
the controller in ``cgroup.subtree_control``.

Every group is named ``<prefix>-<name>``; :meth:`heal` moves each process back to the cgroup it came
from before removing the group, and :func:`cleanup_leftovers` does the same for crashed runs.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import psutil

from harness.platforms.base import PlatformError, Unsupported
from harness.waiting import wait_until

Version = Literal["v1", "v2"]
MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class Hierarchy:
    """Where one controller lives: the mount point, v1/v2, and the harness's own group in it."""

    controller: str
    version: Version
    mount: Path
    own: str  # our cgroup path relative to the mount, "/" for the root

    def path(self, rel: str) -> Path:
        return self.mount / rel.lstrip("/")


# --- discovery (pure parsers + thin readers) -------------------------------------------------------


def parse_mountinfo(text: str) -> list[tuple[str, Path, str, set[str]]]:
    """cgroup mounts as (fstype, mount point, mount root, v1 controllers) from mountinfo text."""
    out = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2"):
            continue
        opts = set(rfields[2].split(","))
        out.append((rfields[0], Path(fields[4]), fields[3], opts))
    return out


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` → {controller: path}; the v2 entry is under key ``""``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for c in parts[1].split(",") if parts[1] else [""]:
            out[c.removeprefix("name=")] = parts[2]
    return out


def find_hierarchy(
    controller: str,
    mountinfo: str | None = None,
    self_cgroup: str | None = None,
) -> Hierarchy:
    """The hierarchy that carries ``controller`` (``cpu`` or ``memory``) for this process."""
    mounts = parse_mountinfo(MOUNTINFO.read_text() if mountinfo is None else mountinfo)
    mine = parse_proc_cgroup(Path("/proc/self/cgroup").read_text() if self_cgroup is None else self_cgroup)
    for fstype, mnt, root, opts in mounts:
        if fstype == "cgroup" and controller in opts and controller in mine:
            return Hierarchy(controller, "v1", mnt, _relative(mine[controller], root))
    for fstype, mnt, root, _ in mounts:
        if fstype != "cgroup2" or "" not in mine:
            continue
        ctrl_file = mnt / "cgroup.controllers"
        with contextlib.suppress(OSError):
            if controller in ctrl_file.read_text().split():
                return Hierarchy(controller, "v2", mnt, _relative(mine[""], root))
    raise Unsupported(f"no cgroup hierarchy with the {controller} controller is mounted "
                      f"(v1 {controller} mount or v2 cgroup.controllers listing it)")


def _relative(path: str, mount_root: str) -> str:
    if mount_root != "/" and path.startswith(mount_root):
        path = path[len(mount_root):] or "/"
    return path or "/"


def v2_parent_for(h: Hierarchy, controllers: Iterable[str]) -> Path:
    """The v2 group under which ours can use ``controllers``: our own group's nearest ancestor (or the
    root) whose ``cgroup.subtree_control`` has them, enabling them where that is allowed."""
    need = set(controllers)
    rel = h.own
    candidates = []
    while True:
        candidates.append(h.path(rel))
        if rel in ("/", ""):
            break
        rel = str(Path(rel).parent)
    for cand in candidates[1:] + candidates[:1] if len(candidates) > 1 else candidates:
        sub = cand / "cgroup.subtree_control"
        try:
            have = set(sub.read_text().split())
        except OSError:
            continue
        if need <= have:
            return cand
        try:
            sub.write_text(" ".join(f"+{c}" for c in sorted(need - have)))
            return cand
        except OSError:
            continue
    raise Unsupported(f"no v2 cgroup above {h.own} can delegate {sorted(need)}")


def group_dir(h: Hierarchy, name: str) -> Path:
    if h.version == "v1":
        return h.path(h.own) / name
    return v2_parent_for(h, [h.controller]) / name


# --- moving processes --------------------------------------------------------------------------------


def tree_pids(pid: int) -> list[int]:
    """``pid`` and every live descendant (children inherit the cgroup only if forked *after* a move,
    so the ones already running are moved explicitly)."""
    try:
        p = psutil.Process(pid)
        return [pid] + [c.pid for c in p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def current_group(pid: int, h: Hierarchy) -> Path | None:
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    groups = parse_proc_cgroup(text)
    rel = groups.get(h.controller if h.version == "v1" else "")
    return None if rel is None else h.path(rel)


def move(pid: int, group: Path) -> bool:
    """Put ``pid`` (all its threads) into ``group``; False if the process is gone."""
    try:
        (group / "cgroup.procs").write_text(f"{pid}\n")
        return True
    except ProcessLookupError:
        return False
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return False
        raise PlatformError(f"cannot move pid {pid} into {group}: {exc}") from exc


def procs(group: Path) -> list[int]:
    try:
        return [int(x) for x in (group / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def remove_group(group: Path, fallback: Path, timeout: float = 5.0) -> None:
    """Move whatever is still in ``group`` to ``fallback`` and remove it (retrying while exiting
    processes linger)."""
    if not group.exists():
        return

    def attempt() -> bool:
        for child in sorted((p for p in group.iterdir() if p.is_dir()), reverse=True):
            remove_group(child, fallback, timeout)
        for pid in procs(group):
            move(pid, fallback)
        try:
            group.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                return False
            raise

    wait_until(attempt, timeout, f"cgroup {group} to be removable", describe=lambda: str(procs(group)))


# --- the two limits ------------------------------------------------------------------------------------


@dataclass
class _Limit:
    """Common life cycle: create the group, write limits, move the tree in; heal moves it back."""

    prefix: str
    name: str
    pid: int
    controller: str = field(init=False, default="")
    hierarchy: Hierarchy | None = field(default=None, repr=False)
    group: Path | None = field(init=False, default=None)
    _origin: dict[int, Path] = field(init=False, default_factory=dict, repr=False)

    def _h(self) -> Hierarchy:
        if self.hierarchy is None:
            if os.geteuid() != 0:
                raise Unsupported("cgroup limits need root")
            self.hierarchy = find_hierarchy(self.controller)
        return self.hierarchy

    def _create(self) -> Path:
        h = self._h()
        group = group_dir(h, f"{self.prefix}-{self.name}")
        group.mkdir(exist_ok=True)
        self.group = group
        return group

    def _enter(self, group: Path) -> None:
        h = self._h()
        pids = tree_pids(self.pid)
        if not pids:
            raise PlatformError(f"pid {self.pid} is not running")
        for pid in pids:
            origin = current_group(pid, h)
            if origin is not None and origin != group:
                self._origin.setdefault(pid, origin)
            move(pid, group)

    def heal(self) -> None:
        """Move every process back where it came from and remove the group (idempotent)."""
        if self.group is None:
            return
        group, h = self.group, self._h()
        default = self._origin.get(self.pid, group_dir_parent(h))
        for pid in procs(group):
            move(pid, self._origin.get(pid, default))
        remove_group(group, default)
        self.group = None
        self._origin.clear()

    def __enter__(self) -> _Limit:
        self.apply()  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        self.heal()


def group_dir_parent(h: Hierarchy) -> Path:
    return h.path(h.own)


@dataclass
class CpuLimit(_Limit):
    """At most ``quota`` CPUs (0.1 = 10 % of one core) for ``pid`` and its children."""

    quota: float = 0.1
    period_us: int = 100_000

    def __post_init__(self) -> None:
        self.controller = "cpu"
        if self.quota <= 0:
            raise ValueError("quota must be > 0")

    def apply(self) -> CpuLimit:
        group = self._create()
        quota_us = max(1000, int(self.quota * self.period_us))
        try:
            if self._h().version == "v1":
                (group / "cpu.cfs_period_us").write_text(str(self.period_us))
                (group / "cpu.cfs_quota_us").write_text(str(quota_us))
            else:
                (group / "cpu.max").write_text(f"{quota_us} {self.period_us}")
            self._enter(group)
        except BaseException:
            self.heal()
            raise
        return self

    def throttled(self) -> tuple[int, int]:
        """(periods, throttled periods) so far — the evidence that the quota bites."""
        if self.group is None:
            return (0, 0)
        stat = dict(line.split() for line in (self.group / "cpu.stat").read_text().splitlines() if line)
        return int(stat.get("nr_periods", 0)), int(stat.get("nr_throttled", 0))


#: the largest weight each cgroup version accepts (v1 ``cpu.shares``, v2 ``cpu.weight``)
MAX_CPU_WEIGHT: dict[str, int] = {"v1": 262144, "v2": 10000}


@dataclass
class CpuWeight(_Limit):
    """The largest CPU weight for ``pid`` and its children: when the CPUs are contended they get them
    first; when they are not, nothing changes (a weight is no quota and takes nothing from an idle
    machine). Used for the harness itself (``--observer-priority``): the observer's clock must keep
    time on a loaded machine, or every timing it measures is void (harness starved, ``unknown``)."""

    def __post_init__(self) -> None:
        self.controller = "cpu"

    def apply(self) -> CpuWeight:
        group = self._create()
        try:
            version = self._h().version
            knob = "cpu.shares" if version == "v1" else "cpu.weight"
            (group / knob).write_text(str(MAX_CPU_WEIGHT[version]))
            self._enter(group)
        except BaseException:
            self.heal()
            raise
        return self

    def weight(self) -> int:
        """The weight of the group the process is in now (the evidence that it took)."""
        h = self._h()
        group = current_group(self.pid, h)
        if group is None:
            return 0
        return int((group / ("cpu.shares" if h.version == "v1" else "cpu.weight")).read_text())


@dataclass
class MemoryLimit(_Limit):
    """At most ``limit_mb`` of memory (no swap) for ``pid`` and its children; beyond it the kernel's
    OOM killer picks a victim inside the group, which :meth:`oom_kills` counts."""

    limit_mb: int = 64

    def __post_init__(self) -> None:
        self.controller = "memory"

    @property
    def limit_bytes(self) -> int:
        return self.limit_mb * 1024 * 1024

    def apply(self) -> MemoryLimit:
        group = self._create()
        try:
            if self._h().version == "v1":
                # charge the pages a process already has to the new group, or only new allocations
                # would count (the kernel warns this is deprecated; a failure is tolerated)
                with contextlib.suppress(OSError):
                    (group / "memory.move_charge_at_immigrate").write_text("3")
                self._enter(group)
                (group / "memory.limit_in_bytes").write_text(str(self.limit_bytes))
                with contextlib.suppress(OSError):  # only with swap accounting
                    (group / "memory.memsw.limit_in_bytes").write_text(str(self.limit_bytes))
            else:
                self._enter(group)
                with contextlib.suppress(OSError):
                    (group / "memory.swap.max").write_text("0")
                (group / "memory.max").write_text(str(self.limit_bytes))
        except OSError as exc:
            self.heal()
            if exc.errno == errno.EBUSY:
                raise PlatformError(
                    f"{self.name} already uses more than {self.limit_mb} MB and the kernel cannot "
                    "reclaim it (v1 refuses such a limit instead of OOM-killing); choose a higher limit"
                ) from exc
            raise
        except BaseException:
            self.heal()
            raise
        return self

    def usage_bytes(self) -> int:
        if self.group is None:
            return 0
        f = "memory.usage_in_bytes" if self._h().version == "v1" else "memory.current"
        return int((self.group / f).read_text())

    def oom_kills(self) -> int:
        """Processes the OOM killer has killed in this group since :meth:`apply`."""
        if self.group is None:
            return 0
        f = "memory.oom_control" if self._h().version == "v1" else "memory.events"
        for line in (self.group / f).read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill":
                return int(v)
        return 0


# --- capability probes and sweeping ------------------------------------------------------------------


def available(controller: str) -> tuple[bool, str]:
    """Whether a limit on ``controller`` can be applied here, and why (not)."""
    if os.geteuid() != 0:
        return False, "needs root"
    try:
        h = find_hierarchy(controller)
    except Unsupported as exc:
        return False, str(exc)
    parent = h.path(h.own) if h.version == "v1" else None
    try:
        if parent is None:
            parent = v2_parent_for(h, [controller])
    except Unsupported as exc:
        return False, str(exc)
    if not os.access(parent, os.W_OK):
        return False, f"{parent} is not writable"
    return True, f"cgroup {h.version} at {parent}"


def all_hierarchies() -> list[Path]:
    seen = []
    for fstype, mnt, _, opts in parse_mountinfo(MOUNTINFO.read_text()):
        if fstype == "cgroup2" or opts & {"cpu", "memory"}:
            seen.append(mnt)
    return seen


def find_groups(prefix: str, roots: Iterable[Path] | None = None, max_depth: int = 6) -> list[Path]:
    """Every cgroup directory whose name starts with ``prefix``, deepest first."""
    found: list[Path] = []
    for root in roots if roots is not None else all_hierarchies():
        base_depth = len(root.parts)
        for dirpath, dirnames, _ in os.walk(root):
            depth = len(Path(dirpath).parts) - base_depth
            if depth >= max_depth:
                dirnames[:] = []
            for d in list(dirnames):
                if d.startswith(prefix):
                    found.append(Path(dirpath) / d)
                    dirnames.remove(d)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def cleanup_leftovers(prefix: str, roots: Iterable[Path] | None = None) -> list[str]:
    """Remove every cgroup named ``<prefix>…`` (their processes go to the parent group)."""
    removed = []
    for g in find_groups(prefix, roots):
        remove_group(g, g.parent)
        removed.append(f"cgroup {g}")
    return removed


#: ``--observer-priority`` groups are ``gvh-observer-<pid of the harness>``
OBSERVER_PREFIX = "gvh-observer"


def sweep_dead_observers(roots: Iterable[Path] | None = None) -> list[str]:
    """Remove the observer groups whose harness is gone (killed before its teardown could run)."""
    removed = []
    for g in find_groups(OBSERVER_PREFIX + "-", roots):
        pid = g.name[len(OBSERVER_PREFIX) + 1:]
        if pid.isdigit() and psutil.pid_exists(int(pid)):
            continue
        remove_group(g, g.parent)
        removed.append(f"cgroup {g}")
    return removed


# --- what both fault interpreters do with a set of limits (local processes, pods from the node) ---------
L = TypeVar("L", "CpuLimit", "MemoryLimit")


def throttled_counts(limits: Mapping[str, CpuLimit]) -> dict[str, dict[str, int]]:
    """Per instance, the CFS periods and throttled periods while the quota held (read before the heal
    removes the group; an instance whose group is already gone is left out)."""
    out: dict[str, dict[str, int]] = {}
    for t, lim in limits.items():
        with contextlib.suppress(OSError):
            out[t] = dict(zip(("periods", "throttled"), lim.throttled(), strict=True))
    return out


def heal_limits(kind: str, limits: Mapping[str, _Limit], registry: dict[str, Any]) -> None:
    """Heal every limit and drop it from ``registry`` (the deployment's teardown list, keyed
    ``{kind}-{instance}``); one that fails does not stop the others, and all failures are raised
    together at the end, named by instance."""
    errors = []
    for t, lim in limits.items():
        try:
            lim.heal()
        except Exception as exc:  # noqa: BLE001 - heal the others, then report
            errors.append(f"{t}: {exc!r}")
        registry.pop(f"{kind}-{t}", None)
    if errors:
        raise PlatformError(f"healing {kind} limits failed: {'; '.join(errors)}")


def apply_limits(kind: str, targets: list[str], make: Callable[[str, str], L],
                 registry: dict[str, Any]) -> dict[str, L]:
    """One limit per target (``make(key, target)``, key ``{kind}-{target}``), registered in ``registry``
    (so the deployment's teardown heals it if the run is interrupted) and applied; if one fails, those
    applied are healed before the error surfaces."""
    limits: dict[str, L] = {}
    try:
        for t in targets:
            lim = make(f"{kind}-{t}", t)
            registry[f"{kind}-{t}"] = lim
            limits[t] = lim.apply()
    except BaseException:
        heal_limits(kind, limits, registry)
        raise
    return limits
