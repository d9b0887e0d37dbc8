"""Operator actions (day-2 operations) as a platform offers them: the ``Operations`` contract, the
results it returns, and the pure procedure helpers every platform's implementation shares.

Why a contract: scenarios ask their platform for its operations (``Platform.operations(dep, recorder)``)
and must not know which platform they run on; a platform that cannot do an action raises
``Unsupported`` (an explained skip). The local implementation is
:class:`harness.platforms.local.operations.LocalOperations`.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from harness.operation_kinds import RESTORE_KIND, RESTORED_F
from harness.platforms.base import PlatformError

COMPONENT_ORDER = ("node", "gate", "inspector")
_LEVEL_RANK = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "critical": 50}


def ordinal(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class RecordsOperations:
    """What every platform's operations share for the history: the recorder's clock, an operation
    window around a procedure (its result, or the error that ended it, stored with the stop event),
    and samples under process ``operations``; and the gates clients should use. Why one copy: the checkers
    read these windows and samples the same way whichever platform wrote them, and every platform publishes
    its serving gates the same way. Needs ``self.rec``, ``self.dep``, ``self.on_endpoints``."""

    rec: Any

    def _now(self) -> float:
        return float(self.rec.now()) if self.rec is not None else time.monotonic()

    @contextlib.contextmanager
    def window(self, kind: str, target: Any, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Record an operation window; the body fills the yielded dict, stored with the stop event."""
        fid = self.rec.nemesis_start(kind, target, params or {}) if self.rec is not None else None
        result: dict[str, Any] = {}
        try:
            yield result
        except BaseException as exc:
            result["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            raise
        finally:
            if self.rec is not None and fid is not None:
                self.rec.nemesis_stop(fid, kind, target, result)

    def _sample(self, f: str, value: Any) -> None:
        if self.rec is not None:
            self.rec.sample(f, value, process="operations")

    # the gates clients should use (``on_endpoints``), the same on every platform
    dep: Any
    on_endpoints: Any

    def running(self, component: str | None = None) -> list[str]:
        """Names of the running stack instances (nodes, gates, inspector), optionally of one component,
        by component then ordinal — from the deployment contract's ``instances``, so every platform
        lists them alike."""
        names = [i.name for i in self.dep.instances(component)
                 if i.running and i.component in COMPONENT_ORDER and (component is None or i.component == component)]
        return sorted(names, key=lambda n: (n.rsplit("-", 1)[0], ordinal(n)))

    def serving_gates(self, exclude: Iterable[str] = ()) -> dict[str, str]:
        """Client URLs of the running gates (minus ``exclude``): what an endpoint list would hold."""
        skip = set(exclude)
        return {n: u for n, u in self.dep.gate_urls(only_running=True).items() if n not in skip}

    def _publish_endpoints(self, exclude: Iterable[str] = ()) -> None:
        if self.on_endpoints is not None:
            gates = self.serving_gates(exclude)
            if gates:
                self.on_endpoints(gates)


class RollbackToPrevious:
    """``rollback`` as the undo of the last ``rolling_upgrade``, the same on every platform: roll every
    instance back to the one version they ran before it, with the platform's own one-at-a-time
    procedure (``rolling_upgrade(kind="rollback")``), then forget it (a second rollback has nothing
    to return to). The platform's ``rolling_upgrade`` fills ``_previous_versions``."""

    _previous_versions: dict[str, str]

    def rolling_upgrade(self, version: str, components: Sequence[str] = COMPONENT_ORDER,
                        timeout: float | None = None, kind: str = "rolling-upgrade") -> RollResult:
        raise NotImplementedError

    def rollback(self, components: Sequence[str] = COMPONENT_ORDER, timeout: float | None = None) -> RollResult:
        """Roll back to the version every instance ran before the last :meth:`rolling_upgrade`."""
        prev = set(self._previous_versions.values())
        if len(prev) != 1:
            raise PlatformError(f"rollback: need exactly one previous version, have {sorted(prev) or 'none'} "
                                "(call rolling_upgrade first)")
        result = self.rolling_upgrade(prev.pop(), components, timeout, kind="rollback")
        self._previous_versions = {}
        return result


class RestoreProcedure(RecordsOperations):
    """``restore`` as docs/runbooks/restore.md exercises it, one procedure on every platform: stop the
    nodes (their memory holds state newer than the backup and must not be written over it), restore
    etcd and/or PostgreSQL, read the counters ``keys`` back straight from PostgreSQL (sample
    ``restored``, judged by ``restored_matches_backup``), start what was stopped and wait until the
    stack is ready. Why here: the steps, their phases and the recorded result are what the backup
    scenarios judge, and two copies of them (local, Kubernetes) had to be kept in step by hand; a
    platform supplies only the steps' mechanics (the hooks below)."""

    def _restore_timeout(self) -> float:
        raise NotImplementedError

    def _stop_nodes(self) -> list[str]:
        """Stop every running node; the names stopped."""
        raise NotImplementedError

    def _restore_etcd(self, backup: Backup) -> None:
        raise NotImplementedError

    def _restore_postgres(self, backup: Backup) -> None:
        raise NotImplementedError

    def counter_values(self, keys: Iterable[str]) -> dict[str, int]:
        raise NotImplementedError

    def _start_stopped_after_restore(self) -> dict[str, Any]:
        """Start what ``_stop_nodes`` stopped; what to add to the result (after ``stopped_nodes``)."""
        raise NotImplementedError

    def _after_restore_ready(self) -> None:
        """After the stack is ready again (e.g. hand the workload the gates that serve)."""

    def restore(self, backup: Backup, keys: Iterable[str], etcd: bool = True, postgres: bool = True,
                t_fault: float | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Recover from ``backup`` (see the class). Returns ``restore_s`` (the procedure's duration), the
        nodes stopped, the phases' durations and, given the fault time, ``rpo_s``."""
        timeout = timeout if timeout is not None else self._restore_timeout()
        target = "+".join(c for c, on in (("etcd", etcd), ("postgres", postgres)) if on) or "stack"
        with self.window(RESTORE_KIND, target, {"backup": backup.dir.name}) as res:
            t0 = time.monotonic()
            phases: dict[str, float] = {}

            def phase(name: str) -> None:
                phases[name] = round(time.monotonic() - t0 - sum(phases.values()), 3)

            stopped = self._stop_nodes()
            phase("stop_nodes_s")
            if etcd:
                self._restore_etcd(backup)
                phase("etcd_s")
            if postgres:
                self._restore_postgres(backup)
                phase("postgres_s")
            t_data = self._now()
            values = self.counter_values(keys)
            self._sample(RESTORED_F, {"backup_point": backup.t_point, "backup_end": backup.t_end,
                                      "t_data": t_data, "values": values})
            started = self._start_stopped_after_restore()
            phase("start_s")
            self.dep.wait_ready(timeout)
            phase("ready_s")
            self._after_restore_ready()
            res.update(restore_s=round(time.monotonic() - t0, 3), stopped_nodes=stopped, **started, phases=phases)
            if t_fault is not None:
                res["rpo_s"] = rpo_s(backup.t_point, t_fault)
        return res


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


#: the level of a text log line: ``[2026-12-03 12:31:30.159] [WARN] [Cluster] …`` (Goverse's logger) or
#: logfmt ``level=info``
TEXT_LEVEL = re.compile(r"^(?:\[[^\]]*\]\s*)?\[(?P<b>[A-Za-z]+)\]|\blevel=(?P<k>[A-Za-z]+)\b")
#: a stack that logged at least this many records at a lower level, none below the new one, shows that
#: the setting changed nothing visible (docs/conformance.md, 2.6-log-level, uses the same rule)
LEVEL_MIN_RECORDS = 20


def log_levels(text: str) -> Counter[str]:
    """How many log lines per level: a JSON line's ``level``, or a text line's ``[LEVEL]`` /
    ``level=x``; other lines (the supervisor's ``--- name:`` headers, stack traces) are skipped."""
    out: Counter[str] = Counter()
    for line in text.splitlines():
        line = line.strip()
        level: Any = None
        if line.startswith("{"):
            try:
                level = json.loads(line).get("level")
            except (ValueError, AttributeError):
                continue
        elif not line.startswith("--- "):
            m = TEXT_LEVEL.search(line)
            level = (m.group("b") or m.group("k")) if m else None
        if isinstance(level, str) and level.lower() in _LEVEL_RANK:
            out[level.lower()] += 1
    return out


def last_run(text: str) -> str:
    """The part of a process log written by its latest start (after the last supervisor header)."""
    i = text.rfind("\n--- ")
    return text[i + 1:] if i >= 0 else text


def level_in_effect(levels: Mapping[str, int], configured: str, before: Mapping[str, int] | None = None,
                    before_value: str | None = None) -> tuple[bool | None, str]:
    """Is ``LOG_LEVEL=configured`` what the process logs at? No line below the level may appear, and for
    ``debug`` at least one debug line must (a positive proof; absence alone proves nothing).

    ``before``: the levels the same instance logged before the roll, at ``before_value``. When that was
    lower and it logged ``LEVEL_MIN_RECORDS`` or more records, none below ``configured``, the setting
    made no visible difference: the stack does not log by it (Goverse v0.1.1's loggers start at WARN
    and read no LOG_LEVEL), and "no info line since" proves nothing — not in effect."""
    want = configured.lower()
    if want not in _LEVEL_RANK:
        raise ValueError(f"unknown log level {configured!r}")
    below = {lv: n for lv, n in levels.items() if _LEVEL_RANK.get(lv, 100) < _LEVEL_RANK[want] and n}
    if below:
        return False, f"lines below {want} were logged: {dict(sorted(below.items()))}"
    old = (before_value or "").lower()
    if before is not None and old in _LEVEL_RANK and _LEVEL_RANK[old] < _LEVEL_RANK[want]:
        n_before = sum(before.values())
        if n_before >= LEVEL_MIN_RECORDS and not any(
                n for lv, n in before.items() if _LEVEL_RANK.get(lv, 100) < _LEVEL_RANK[want]):
            return False, (f"at LOG_LEVEL={old} before the roll it logged {n_before} records, none below {want} "
                           f"({dict(sorted(before.items()))}): the setting changes nothing it logs")
    if not sum(levels.values()):  # None: cannot tell (config_in_effect: unknown unless another fails)
        return None, "no log line with a level since the restart: the level in effect is unknown"
    if want == "debug" and not levels.get("debug"):
        return False, f"no debug line since the restart (levels seen: {dict(sorted(levels.items()))})"
    return True, f"levels seen since the restart: {dict(sorted(levels.items()))}"


# The restore's own steps (``RestoreProcedure.restore``'s phases) before the stack can act: what the
# operator's procedure spent; ``ready_s``, the wait for the stack to serve and converge, is the stack's.
RESTORE_PROCEDURE_PHASES = ("stop_nodes_s", "etcd_s", "postgres_s", "start_s")


def restore_procedure_s(phases: dict[str, float] | None) -> float:
    """Seconds a restore spent in its procedure steps (``RESTORE_PROCEDURE_PHASES``), without the final
    wait for the stack. Why: a recovery's RTO budget is the stack's, and the procedure's duration is
    the platform's (about a minute of Jobs, scale-to-zero and pod starts on Kubernetes against ~1.5 s
    locally), so the backup scenarios add it to the budget as the scale steps add preStop and start."""
    unknown = sorted(set(phases or {}) - {*RESTORE_PROCEDURE_PHASES, "ready_s"})
    if unknown:
        raise ValueError(f"restore phases {unknown} are neither procedure steps {RESTORE_PROCEDURE_PHASES} "
                         "nor ready_s: say which side of the RTO budget they are on")
    return round(sum(float((phases or {}).get(k, 0.0)) for k in RESTORE_PROCEDURE_PHASES), 3)


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
    #: seconds inside ``converged_s`` the platform held leaving instances before their SIGTERM, one after
    #: the other (Kubernetes: each pod's ``preStop`` sleep; local: 0) — the platform's declared stop cost,
    #: not the stack's work, so step budgets add it (``steps_converged_within``)
    stop_delay_s: float = 0.0
    #: seconds inside ``converged_s`` until the platform had started the slowest added instance's process
    #: (Kubernetes: pod scheduling, sandbox, network, container creation, read from the container's
    #: ``startedAt``; local: 0, the process is spawned at once) — the platform's start cost, measured
    start_delay_s: float = 0.0


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

    MANIFEST: ClassVar[str] = "backup.json"

    def to_dict(self) -> dict[str, Any]:
        return {"dir": str(self.dir), "etcd_snapshot": None if self.etcd_snapshot is None else str(self.etcd_snapshot),
                "pg_dump": str(self.pg_dump), "t_start": self.t_start, "t_point": self.t_point, "t_end": self.t_end,
                "sizes": dict(self.sizes)}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Backup:
        snap = d.get("etcd_snapshot")
        sizes = {k: int(v) for k, v in dict(d.get("sizes") or {}).items()}
        return Backup(Path(d["dir"]), None if snap is None else Path(snap), Path(d["pg_dump"]), float(d["t_start"]),
                      float(d["t_point"]), float(d["t_end"]), sizes)

    def save(self) -> Path:
        """Write ``backup.json`` beside the files, so a restore named by its directory finds the backup
        point (a fault is data: it names the directory, not this object)."""
        path = self.dir / self.MANIFEST
        path.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        return path

    @staticmethod
    def load(directory: str | Path) -> Backup:
        """The backup whose ``backup.json`` is in ``directory``; a clear error when there is none."""
        path = Path(directory) / Backup.MANIFEST
        try:
            return Backup.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise FileNotFoundError(f"no backup in {directory}: {Backup.MANIFEST} is missing (take one with "
                                    "TakeBackup(dest) first)") from None


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
    def rolling_restart(self, components: Sequence[str] = ("node",), timeout: float | None = None) -> RollResult:
        """Restart every running instance of ``components`` gracefully, one at a time, each ready before
        the next (per-instance windows ``restart-rollout``)."""
        ...
    def config_value(self, key: str, components: Sequence[str] = COMPONENT_ORDER) -> dict[str, str | None]:
        """The value of the environment setting ``key`` each running instance of ``components`` was
        started with (``None``: unset) — what an undo of :meth:`update_config` rolls back to."""
        ...
    def rotate_postgres_password(self, reload_timeout: float | None = None,
                                 reconnect_timeout: float | None = None) -> RotationResult: ...
    def postgres_password(self) -> str: ...  # the current one, in memory only (leak scans); never logged
    def backup(self, dest: Path) -> Backup: ...
    def wipe(self) -> dict[str, Any]: ...
    def lose_data_dir(self, component: str = "postgres") -> dict[str, Any]: ...
    def counter_values(self, keys: Iterable[str]) -> dict[str, int]: ...
    def restore(self, backup: Backup, keys: Iterable[str], etcd: bool = True, postgres: bool = True,
                t_fault: float | None = None, timeout: float | None = None) -> dict[str, Any]: ...
