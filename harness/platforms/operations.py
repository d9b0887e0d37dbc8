"""Operator actions (day-2 operations) as a platform offers them: the ``Operations`` contract, the
results it returns, and the pure procedure helpers every platform's implementation shares.

Why a contract: scenarios ask their platform for its operations (``Platform.operations(dep, recorder)``)
and must not know which platform they run on; a platform that cannot do an action raises
``Unsupported`` (an explained skip). The local implementation is
:class:`harness.platforms.local.operations.LocalOperations`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

COMPONENT_ORDER = ("node", "gate", "inspector")
_LEVEL_RANK = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "critical": 50}


def ordinal(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def rolling_order(instances: Iterable[tuple[str, str]], leader: str | None = None) -> list[str]:
    """The order in which a rolling operation replaces ``(name, component)`` instances.

    Nodes first (they hold state: if one does not come back the roll halts before anything else was
    touched), then gates, then the inspector. Within a component the highest ordinal goes first, as a
    Kubernetes StatefulSet rolls; the shard leader goes last among the nodes so the roll costs one
    leader election instead of up to one per node. Unknown components come last, by name."""
    items = list(instances)
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise ValueError(f"rolling_order: duplicate instance names in {names}")

    def key(item: tuple[str, str]) -> tuple[int, int, int, str]:
        name, comp = item
        rank = COMPONENT_ORDER.index(comp) if comp in COMPONENT_ORDER else len(COMPONENT_ORDER)
        return (rank, 1 if name == leader else 0, -ordinal(name), name)

    return [n for n, _ in sorted(items, key=key)]


_BUILD_INFO = re.compile(r'^goverse_build_info\{([^}]*)\}\s+(\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_build_versions(metrics_text: str) -> set[str]:
    """Versions a process reports in ``goverse_build_info{version="..."} 1`` (series with value 0 are
    stale labels, not the running version)."""
    out: set[str] = set()
    for line in metrics_text.splitlines():
        m = _BUILD_INFO.match(line.strip())
        if not m:
            continue
        try:
            if float(m.group(2)) == 0:
                continue
        except ValueError:
            continue
        labels = dict(_LABEL.findall(m.group(1)))
        if "version" in labels:
            out.add(labels["version"])
    return out


def log_levels(text: str) -> Counter[str]:
    """How many JSON log lines per ``level`` (non-JSON lines — the supervisor's headers — are skipped)."""
    out: Counter[str] = Counter()
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            level = json.loads(line).get("level")
        except (ValueError, AttributeError):
            continue
        if isinstance(level, str):
            out[level.lower()] += 1
    return out


def level_in_effect(levels: Mapping[str, int], configured: str) -> tuple[bool, str]:
    """Is ``LOG_LEVEL=configured`` what the process logs at? No line below the level may appear, and for
    ``debug`` at least one debug line must (a positive proof; absence alone proves nothing)."""
    want = configured.lower()
    if want not in _LEVEL_RANK:
        raise ValueError(f"unknown log level {configured!r}")
    below = {lv: n for lv, n in levels.items() if _LEVEL_RANK.get(lv, 100) < _LEVEL_RANK[want] and n}
    if below:
        return False, f"lines below {want} were logged: {dict(sorted(below.items()))}"
    if not sum(levels.values()):
        return False, "no JSON log line since the restart: the level in effect is unknown"
    if want == "debug" and not levels.get("debug"):
        return False, f"no debug line since the restart (levels seen: {dict(sorted(levels.items()))})"
    return True, f"levels seen since the restart: {dict(sorted(levels.items()))}"


def rpo_s(t_backup_point: float, t_fault: float) -> float:
    """RPO: the data window a fault at ``t_fault`` loses when recovering from a backup whose point is
    ``t_backup_point`` (everything acknowledged after the point may be gone)."""
    if t_fault < t_backup_point:
        raise ValueError(f"the fault ({t_fault:.3f}s) precedes the backup point ({t_backup_point:.3f}s): "
                         "that backup cannot be the one recovered from")
    return round(t_fault - t_backup_point, 6)


@dataclass
class ScaleStep:
    component: str
    before: int
    after: int
    changed: list[str]
    converged_s: float | None
    shard_map_before: dict[int, tuple[str, str]] = field(default_factory=dict)
    shard_map_after: dict[int, tuple[str, str]] = field(default_factory=dict)


@dataclass
class RollStep:
    name: str
    t_down: float
    t_ready: float
    exit_code: int | None


@dataclass
class RollResult:
    kind: str
    steps: list[RollStep]
    verified: dict[str, Any]

    @property
    def duration_s(self) -> float:
        return round(self.steps[-1].t_ready - self.steps[0].t_down, 3) if self.steps else 0.0


@dataclass
class Backup:
    """A backup on disk and when it was taken (``t_*`` on the scenario's history clock).

    ``t_point`` is the backup point: pg_dump's snapshot is taken no earlier than this, so everything
    acknowledged before it is in the dump; ``t_end`` is when the dump finished."""

    dir: Path
    etcd_snapshot: Path | None
    pg_dump: Path
    t_start: float
    t_point: float
    t_end: float
    sizes: dict[str, int] = field(default_factory=dict)


@dataclass
class RotationResult:
    reload_s: float | None
    revoked: int
    old_rejected: bool
    new_accepted: bool
    nodes_on_new: dict[str, bool]


class Operations(Protocol):
    """What an operator does on purpose, each recorded as a window in the scenario's history."""

    def running(self, component: str | None = None) -> list[str]: ...
    def serving_gates(self, exclude: Iterable[str] = ()) -> dict[str, str]: ...
    def wait_instance_ready(self, name: str, timeout: float) -> float: ...
    def scale(self, component: str, n: int, timeout: float | None = None,
              drain_endpoints: bool = True) -> ScaleStep: ...
    def update_config(self, key: str, value: str, components: Sequence[str] = COMPONENT_ORDER,
                      timeout: float | None = None) -> RollResult: ...
    def versions(self) -> dict[str, list[str]]: ...
    def version_of(self, name: str) -> str: ...
    def rolling_upgrade(self, version: str, components: Sequence[str] = COMPONENT_ORDER,
                        timeout: float | None = None) -> RollResult: ...
    def rollback(self, components: Sequence[str] = COMPONENT_ORDER, timeout: float | None = None) -> RollResult: ...
    def rotate_postgres_password(self, reload_timeout: float | None = None,
                                 reconnect_timeout: float | None = None) -> RotationResult: ...
    def postgres_password(self) -> str: ...  # the current one, in memory only (leak scans); never logged
    def backup(self, dest: Path) -> Backup: ...
    def wipe(self) -> dict[str, Any]: ...
    def lose_data_dir(self, component: str = "postgres") -> dict[str, Any]: ...
    def counter_values(self, keys: Iterable[str]) -> dict[str, int]: ...
    def restore(self, backup: Backup, keys: Iterable[str], etcd: bool = True, postgres: bool = True,
                t_fault: float | None = None, timeout: float | None = None) -> dict[str, Any]: ...
