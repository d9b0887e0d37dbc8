"""Faults as plain, serialisable data.

Why data: a scenario states *what* goes wrong ("SIGKILL one node", "cut node-0 from PostgreSQL"),
never how; each platform's injector decides how (a signal, nft rules in a namespace, a Chaos Mesh CR).
The same value is a pytest parameter (``ids=str`` gives ``kill-one-node-sigkill``), a history record
(``record()`` → ``{"id", "kind", "target", "params"}``) and a line in ``run.json``; ``from_dict``
reads it back for offline re-checks.

Targets are *specs resolved late* (Jepsen's ``db-nodes``): ``"node-0"`` names an instance,
``"one-node"`` picks one node with the seeded harness RNG when the fault runs, ``"all-gates"`` /
``"gates"`` means every gate, ``"etcd-leader"`` the etcd leader at that moment. :func:`resolve_target`
does the resolution against the live topology; the nemesis records what was actually hit.

A *link* is ``(source spec, destination spec)`` — traffic that flows from the source's clients to the
destination's listener, e.g. ``("node-0", "postgres")`` or ``("gates", "node-1")``.
"""

from __future__ import annotations

import dataclasses
import random as _stdrandom
import re
import signal as _signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from harness import random as hrand
from harness.faults.shapes import SHAPES, TARGETED_SHAPES

Link = tuple[str, str]
DiskKind = Literal["full", "latency", "eio"]
LatencyDirection = Literal["upstream", "downstream", "both"]
ROLES: tuple[str, ...] = ("node", "gate", "etcd", "postgres", "inspector")
_PLURAL = {"nodes": "node", "gates": "gate", "etcds": "etcd", "etcd-members": "etcd"}


class TargetError(ValueError):
    """A target spec does not match anything in the topology (or is malformed)."""


# --- target specs --------------------------------------------------------------------------------


def is_target_spec(spec: str) -> bool:
    """Syntactic check: instance name (``node-0``, ``postgres``), ``one-<role>``, ``all-<role>s`` or
    ``<role>s``, ``etcd-leader`` / ``etcd-follower``."""
    if spec in ("etcd-leader", "etcd-follower", "postgres", "inspector"):
        return True
    if spec in _PLURAL:
        return True
    if _quantified(spec) is not None:
        return True
    m = re.fullmatch(r"([a-z]+)-(\d+)", spec)
    return bool(m and m.group(1) in ROLES)


def resolve_target(
    spec: str,
    topology: Mapping[str, str],
    rng: _stdrandom.Random | None = None,
    etcd_leader: Callable[[], str] | str | None = None,
) -> list[str]:
    """The instance names ``spec`` denotes in ``topology`` (``dict name → role``), in natural order.

    ``one-<role>`` draws with ``rng`` (default: the seeded harness RNG). ``etcd-leader`` needs the
    platform to say who leads (a name or a callable asked only when needed).
    """
    rng = rng or hrand.rng()
    by_role = _by_role(topology)
    if spec in topology:
        return [spec]
    if spec in ("etcd-leader", "etcd-follower"):
        if etcd_leader is None:
            raise TargetError(f"{spec!r} needs the platform to tell the etcd leader")
        leader = etcd_leader() if callable(etcd_leader) else etcd_leader
        if leader not in by_role.get("etcd", []):
            raise TargetError(f"etcd leader {leader!r} is not an etcd member of {sorted(topology)}")
        if spec == "etcd-leader":
            return [leader]
        followers = [h for h in by_role["etcd"] if h != leader]
        if not followers:
            raise TargetError("no etcd follower: a single-member cluster")
        return [rng.choice(followers)]
    role = _PLURAL.get(spec)
    if role is not None:
        return _require(by_role, role, spec)
    q = _quantified(spec)
    if q is not None:
        hosts = _require(by_role, q[1], spec)
        return [rng.choice(hosts)] if q[0] == "one" else hosts
    raise TargetError(f"target {spec!r} matches nothing in {sorted(topology)}")


def resolve_link(
    link: Link,
    topology: Mapping[str, str],
    rng: _stdrandom.Random | None = None,
    etcd_leader: Callable[[], str] | str | None = None,
) -> list[tuple[str, str]]:
    """All ``(source, destination)`` instance pairs a link spec covers, never a host to itself."""
    srcs = resolve_target(link[0], topology, rng, etcd_leader)
    dsts = resolve_target(link[1], topology, rng, etcd_leader)
    pairs = [(s, d) for s in srcs for d in dsts if s != d]
    if not pairs:
        raise TargetError(f"link {link!r} covers no pair of distinct instances")
    return pairs


def _quantified(spec: str) -> tuple[str, str] | None:
    """``one-node`` → ``("one", "node")``, ``all-gates`` → ``("all", "gate")``; else ``None``."""
    m = re.fullmatch(r"(one|all)-([a-z]+)", spec)
    if not m:
        return None
    word = m.group(2)
    role = word if word in ROLES else word[:-1] if word.endswith("s") and word[:-1] in ROLES else None
    return (m.group(1), role) if role else None


def _by_role(topology: Mapping[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for host in sorted(topology, key=_natural_key):
        out.setdefault(topology[host], []).append(host)
    return out


def _require(by_role: dict[str, list[str]], role: str, spec: str) -> list[str]:
    hosts = by_role.get(role, [])
    if not hosts:
        raise TargetError(f"target {spec!r}: the topology has no {role}")
    return list(hosts)


def _natural_key(name: str) -> tuple[object, ...]:
    head, _, tail = name.rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (name, -1)


def _short(spec: str) -> str:
    """``node-0`` → ``node0`` (ids stay readable and ``-k node0`` works); other specs unchanged."""
    return re.sub(r"-(\d+)$", r"\1", spec)


def _check_target(spec: str) -> None:
    if not isinstance(spec, str) or not is_target_spec(spec):
        raise TargetError(f"not a target spec: {spec!r}")


def _check_link(link: Link) -> None:
    if not (isinstance(link, tuple) and len(link) == 2):
        raise TargetError(f"a link is a (source, destination) pair, got {link!r}")
    _check_target(link[0])
    _check_target(link[1])


# --- faults -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """Base of every fault. Subclasses set ``kind`` and are frozen dataclasses of JSON-able fields."""

    kind: ClassVar[str] = "fault"
    _registry: ClassVar[dict[str, type[Fault]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        Fault._registry[cls.kind] = cls

    @property
    def target_spec(self) -> str | Link | None:
        """The (unresolved) target or link, for the history record."""
        for name in ("target", "link", "component"):
            if hasattr(self, name):
                return getattr(self, name)  # type: ignore[no-any-return]
        return None

    def params(self) -> dict[str, Any]:
        """Every field except the target/link, as JSON-able values."""
        skip = {"target", "link", "component"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    def record(self) -> dict[str, Any]:
        """The ``value`` of the history's nemesis events: ``{"id", "kind", "target", "params"}``."""
        t = self.target_spec
        return {
            "id": str(self),
            "kind": self.kind,
            "target": list(t) if isinstance(t, tuple) else t,
            "params": self.params(),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Fault:
        """Inverse of :meth:`to_dict` (links come back as tuples)."""
        cls = Fault._registry.get(str(d.get("kind")))
        if cls is None:
            raise ValueError(f"unknown fault kind {d.get('kind')!r}; known: {sorted(Fault._registry)}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k != "kind"}
        return cls(**kw)


@dataclass(frozen=True)
class Kill(Fault):
    """Send ``signal`` to the target's process (SIGKILL = pod deletion without grace). Healing means
    starting it again (the nemesis or the supervisor does that)."""

    kind: ClassVar[str] = "kill"
    target: str = "one-node"
    signal: str = "SIGKILL"
    # > 0: from just before the nemesis's before-inject hooks (the burst of writes) until the signal,
    # hold PostgreSQL's replies to the target node, for this long after the hooks: the burst's
    # transactions commit, their answers never arrive (on the local platform the fault proxy's
    # HoldAfterCommit: answers flow inside a transaction and stop at the first one that says it
    # committed) — committed-but-unanswered writes are certain
    # at the kill instead of depending on 0-2 writes being in flight (issue 15).
    hold_replies_ms: float = 0.0

    def __post_init__(self) -> None:
        _check_target(self.target)
        if not self.signal.startswith("SIG") or not hasattr(_signal, self.signal):
            raise ValueError(f"unknown signal {self.signal!r}")
        if not 0 <= self.hold_replies_ms <= 10_000:
            raise ValueError(f"hold_replies_ms must be 0 … 10000 ms, got {self.hold_replies_ms!r}")

    @property
    def signum(self) -> int:
        return int(getattr(_signal, self.signal))

    def __str__(self) -> str:
        return f"kill-{_short(self.target)}-{self.signal.lower()}"


@dataclass(frozen=True)
class Pause(Fault):
    """SIGSTOP the target; heal is SIGCONT (Jepsen ``hammer-time``). A paused process keeps its
    sockets and leases-in-flight, which is what makes it dangerous when it comes back."""

    kind: ClassVar[str] = "pause"
    target: str = "one-node"

    def __post_init__(self) -> None:
        _check_target(self.target)

    def __str__(self) -> str:
        return f"pause-{_short(self.target)}"


@dataclass(frozen=True)
class Restart(Fault):
    """Stop and start the target: SIGTERM with the grace period when ``graceful``, SIGKILL otherwise."""

    kind: ClassVar[str] = "restart"
    target: str = "one-node"
    graceful: bool = True

    def __post_init__(self) -> None:
        _check_target(self.target)

    def __str__(self) -> str:
        return f"restart-{_short(self.target)}-{'graceful' if self.graceful else 'sigkill'}"


@dataclass(frozen=True)
class Partition(Fault):
    """Packet drops shaped by :mod:`harness.faults.shapes`; heal removes every drop.

    ``target`` picks the victim of a targeted shape (a node for ``isolate-node``, ``node-etcd``,
    ``node-postgres``, ``gates-node``, ``node-gate-etcd``; a gate for ``gate-etcd``; default a random
    one) or is ``"random"`` for a shuffled ``halves``/``bridge``. ``one_way`` keeps only the victim
    side's drops (the victim stops hearing; the others still hear it)."""

    kind: ClassVar[str] = "partition"
    shape: str = "isolate-node"
    target: str | None = None
    one_way: bool = False

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown partition shape {self.shape!r}; known: {', '.join(SHAPES)}")
        if self.target is not None and self.target != "random":
            if self.shape not in TARGETED_SHAPES:
                raise ValueError(f"shape {self.shape!r} takes no target (only 'random')")
            _check_target(self.target)

    def __str__(self) -> str:
        s = f"partition-{self.shape}"
        if self.target is not None and self.target != "one-node":
            s += f"-{_short(self.target)}"
        return s + ("-oneway" if self.one_way else "")


@dataclass(frozen=True)
class Latency(Fault):
    """Add ``ms`` ± ``jitter_ms`` to every chunk sent over ``link`` (netem delay, or the fault proxy's
    latency toxic where the kernel has no netem). ``direction``: ``upstream`` (default) delays what
    the source sends (requests, lease keep-alives), ``downstream`` what it receives (answers, watch
    events: a stale view), ``both`` each way."""

    kind: ClassVar[str] = "latency"
    link: Link = ("one-node", "postgres")
    ms: int = 200
    jitter_ms: int = 0
    direction: LatencyDirection = "upstream"

    def __post_init__(self) -> None:
        _check_link(self.link)
        if self.ms < 0 or self.jitter_ms < 0 or self.jitter_ms > self.ms:
            raise ValueError(f"latency needs 0 <= jitter_ms <= ms, got ms={self.ms} jitter={self.jitter_ms}")
        if self.direction not in ("upstream", "downstream", "both"):
            raise ValueError(f"latency direction must be upstream, downstream or both, got {self.direction!r}")

    def __str__(self) -> str:
        jitter = f"-j{self.jitter_ms}" if self.jitter_ms else ""
        way = "" if self.direction == "upstream" else f"-{self.direction}"
        return f"latency-{_short(self.link[0])}-{_short(self.link[1])}-{self.ms}ms{jitter}{way}"


@dataclass(frozen=True)
class Timeout(Fault):
    """Black-hole ``link``: connections are accepted (or already open) but nothing is forwarded, so
    clients hang until their own timeouts fire (toxiproxy ``timeout`` with 0)."""

    kind: ClassVar[str] = "timeout"
    link: Link = ("one-node", "postgres")

    def __post_init__(self) -> None:
        _check_link(self.link)

    def __str__(self) -> str:
        return f"timeout-{_short(self.link[0])}-{_short(self.link[1])}"


@dataclass(frozen=True)
class Reset(Fault):
    """Reset every connection on ``link`` with a TCP RST, now and on each new attempt (toxiproxy
    ``reset_peer``)."""

    kind: ClassVar[str] = "reset"
    link: Link = ("one-node", "postgres")

    def __post_init__(self) -> None:
        _check_link(self.link)

    def __str__(self) -> str:
        return f"reset-{_short(self.link[0])}-{_short(self.link[1])}"


@dataclass(frozen=True)
class CpuStress(Fault):
    """Starve the target of CPU: a cgroup quota of ``quota`` CPUs (0.1 = 10 % of one core)."""

    kind: ClassVar[str] = "cpu-stress"
    target: str = "one-node"
    quota: float = 0.1

    def __post_init__(self) -> None:
        _check_target(self.target)
        if not 0.001 <= self.quota <= 1024:
            raise ValueError(f"cpu quota must be in [0.001, 1024] CPUs, got {self.quota}")

    def __str__(self) -> str:
        return f"cpu-stress-{_short(self.target)}-{round(self.quota * 100):d}pct"


@dataclass(frozen=True)
class MemoryPressure(Fault):
    """Cap the target's memory at ``limit_mb`` (cgroup); a process that needs more is OOM-killed."""

    kind: ClassVar[str] = "memory-pressure"
    target: str = "one-node"
    limit_mb: int = 64

    def __post_init__(self) -> None:
        _check_target(self.target)
        if self.limit_mb < 4:
            raise ValueError(f"memory limit must be at least 4 MB, got {self.limit_mb}")

    def __str__(self) -> str:
        return f"memory-pressure-{_short(self.target)}-{self.limit_mb}mb"


@dataclass(frozen=True)
class DiskFault(Fault):
    """A disk fault under the target's data directory: ``full`` (ENOSPC), ``latency`` (``latency_ms``
    per I/O) or ``eio`` (I/O errors)."""

    kind: ClassVar[str] = "disk"
    target: str = "postgres"
    disk: DiskKind = "full"
    latency_ms: int = 50

    def __post_init__(self) -> None:
        _check_target(self.target)
        if self.disk not in ("full", "latency", "eio"):
            raise ValueError(f"disk fault kind must be full|latency|eio, got {self.disk!r}")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")

    def __str__(self) -> str:
        return f"disk-{self.disk}-{_short(self.target)}"


# --- operator actions ------------------------------------------------------------------------------
# What an operator does on purpose (seed §6, §7.1), as faults: the nemesis gives each a window in the
# history and a guaranteed undo (its heal), and every platform's interpreter carries them out through
# that platform's ``Operations`` contract (harness/platforms/actions.py). Their kinds differ from the
# windows the operations record inside them (``harness.operation_kinds``: ``scale-node``,
# ``config-update``, ``rolling-upgrade``…), so the per-instance windows the checkers judge never
# overlap an outer window of the same kind.

OPERATOR_COMPONENTS: tuple[str, ...] = ("node", "gate", "inspector")


def _check_components(components: tuple[str, ...]) -> None:
    if not isinstance(components, tuple) or not components:
        raise ValueError(f"components must be a non-empty tuple of {OPERATOR_COMPONENTS}, got {components!r}")
    bad = [c for c in components if c not in OPERATOR_COMPONENTS]
    if bad:
        raise ValueError(f"components: unknown {bad}; allowed: {', '.join(OPERATOR_COMPONENTS)}")


def _components_id(components: tuple[str, ...]) -> str:
    return "all" if tuple(sorted(components)) == tuple(sorted(OPERATOR_COMPONENTS)) else "-".join(
        f"{c}s" for c in components)


def _check_backup_dir(backup: str) -> None:
    if not isinstance(backup, str) or not backup:
        raise ValueError(f"backup must be the backup's directory (a TakeBackup's dest), got {backup!r}")


@dataclass(frozen=True)
class ScaleTo(Fault):
    """Scale ``component`` (``node`` or ``gate``) to ``n`` instances and wait until the new shape is
    ready (nodes: the shard map converged and balanced); heal scales back to the count before.
    ``drain_endpoints``: removed gates leave the client endpoint list before they stop (a
    readiness-gated load balancer) rather than after (an endpoint controller that lags)."""

    kind: ClassVar[str] = "scale"
    component: str = "node"
    n: int = 3
    drain_endpoints: bool = True

    def __post_init__(self) -> None:
        if self.component not in ("node", "gate"):
            raise ValueError(f"only nodes and gates scale, got {self.component!r}")
        if self.n < 0:
            raise ValueError("n must be >= 0")

    def __str__(self) -> str:
        return f"scale-{self.component}s-to-{self.n}"


@dataclass(frozen=True)
class RollingRestart(Fault):
    """Restart every running instance of ``components`` gracefully, one at a time, each ready (nodes:
    shard map converged and balanced) before the next goes down — a ``kubectl rollout restart``.
    No undo: a restarted instance has nothing to give back; the heal verifies every instance it
    restarted is running again."""

    kind: ClassVar[str] = "rolling-restart"
    components: tuple[str, ...] = ("node",)

    def __post_init__(self) -> None:
        _check_components(self.components)

    def __str__(self) -> str:
        return f"rolling-restart-{_components_id(self.components)}"


@dataclass(frozen=True)
class UpdateConfig(Fault):
    """Set the environment setting ``key`` (what a ConfigMap delivers as env vars: ``LOG_LEVEL``,
    ``GOVERSE_*``) to ``value`` and roll it out one instance at a time; heal rolls the value each
    instance had before back out the same way. Refused before anything changes when that previous
    value is not one value set everywhere (an unset or diverging setting has no undo to guarantee)."""

    kind: ClassVar[str] = "update-config"
    key: str = "LOG_LEVEL"
    value: str = "warn"
    components: tuple[str, ...] = OPERATOR_COMPONENTS

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", self.key or ""):
            raise ValueError(f"config key must be an environment setting name (LOG_LEVEL, GOVERSE_*), "
                             f"got {self.key!r}")
        if not isinstance(self.value, str):
            raise ValueError(f"config value must be a string, got {self.value!r}")
        _check_components(self.components)

    def __str__(self) -> str:
        return f"update-config-{self.key.lower().replace('_', '-')}-{self.value.lower()}"


@dataclass(frozen=True)
class RotateSecret(Fault):
    """Rotate the PostgreSQL application password under load (new secret, ``ALTER ROLE``, reload,
    sessions opened with the old secret revoked). No undo, on purpose: a revoked secret must stay
    revoked, so putting the old password back would undo the very thing rotation is for. The heal
    is a verified no-op: it checks the rotation completed (old secret rejected, new one accepted)."""

    kind: ClassVar[str] = "rotate-password"
    secret: str = "postgres-password"

    def __post_init__(self) -> None:
        if self.secret != "postgres-password":
            raise ValueError(f"only the PostgreSQL password rotates (secret='postgres-password'), got {self.secret!r}")

    def __str__(self) -> str:
        return "rotate-secret-postgres-password"


@dataclass(frozen=True)
class Upgrade(Fault):
    """Roll every instance of ``components`` to ``version``, one at a time, each ready before the next;
    heal rolls back to the version each ran before, the same way."""

    kind: ClassVar[str] = "upgrade"
    version: str = "B"
    components: tuple[str, ...] = OPERATOR_COMPONENTS

    def __post_init__(self) -> None:
        if not isinstance(self.version, str) or not re.fullmatch(r"[\w.+-]+", self.version):
            raise ValueError(f"version must be a plain tag, got {self.version!r}")
        _check_components(self.components)

    def __str__(self) -> str:
        return f"upgrade-to-{self.version.lower()}"


@dataclass(frozen=True)
class Rollback(Fault):
    """Roll every instance back to the version it ran before the last upgrade; heal rolls forward
    again to the version the rollback left."""

    kind: ClassVar[str] = "roll-back"
    components: tuple[str, ...] = OPERATOR_COMPONENTS

    def __post_init__(self) -> None:
        _check_components(self.components)

    def __str__(self) -> str:
        return "rollback-to-previous"


@dataclass(frozen=True)
class TakeBackup(Fault):
    """An etcd snapshot and a ``pg_dump`` under load, into the directory ``dest`` (also written:
    ``backup.json``, what :class:`Restore`, :class:`Wipe` and :class:`VolumeLoss` read back). No undo: a
    backup is kept, not taken back; the heal is a verified no-op (the backup's files still exist)."""

    kind: ClassVar[str] = "take-backup"
    dest: str = "backup"

    def __post_init__(self) -> None:
        _check_backup_dir(self.dest)

    def __str__(self) -> str:
        return "backup-etcd-postgres"


@dataclass(frozen=True)
class Restore(Fault):
    """Recover from the backup in ``backup`` (a :class:`TakeBackup` dest): stop the nodes, restore
    etcd and/or PostgreSQL, read back ``keys`` (counters) for the restore checkers, start everything
    and wait until ready. No undo: a completed restore replaced the state it recovered from, which
    is gone; the heal is a verified no-op (the restore reported its duration)."""

    kind: ClassVar[str] = "restore-backup"
    backup: str = "backup"
    keys: tuple[str, ...] = ()
    etcd: bool = True
    postgres: bool = True

    def __post_init__(self) -> None:
        _check_backup_dir(self.backup)
        if not (self.etcd or self.postgres):
            raise ValueError("a restore restores etcd, PostgreSQL or both")

    def __str__(self) -> str:
        return "restore-" + "-".join(c for c, on in (("etcd", self.etcd), ("postgres", self.postgres)) if on)


@dataclass(frozen=True)
class Wipe(Fault):
    """Disaster: every stack process killed, etcd's and PostgreSQL's data directories removed. The
    undo is the operator's: heal restores both from the backup in ``backup`` (reading back ``keys``),
    so the window is wipe → restored and ready."""

    kind: ClassVar[str] = "wipe-state"
    backup: str = "backup"
    keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_backup_dir(self.backup)

    def __str__(self) -> str:
        return "wipe-etcd-postgres"


@dataclass(frozen=True)
class VolumeLoss(Fault):
    """``component``'s data directory (``postgres``, or every ``etcd`` member's) disappears under the
    running server. Heal restores that component from the backup in ``backup`` (reading back ``keys``);
    a volume lost with no backup to recover from has no undo, so a backup is required."""

    kind: ClassVar[str] = "lose-volume"
    component: str = "postgres"
    backup: str = "backup"
    keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.component not in ("postgres", "etcd"):
            raise ValueError(f"volume loss: component must be postgres or etcd, got {self.component!r}")
        _check_backup_dir(self.backup)

    def __str__(self) -> str:
        return f"volume-loss-{self.component}"


OPERATOR_ACTIONS: tuple[type[Fault], ...] = (ScaleTo, RollingRestart, UpdateConfig, RotateSecret, Upgrade, Rollback,
                                             TakeBackup, Restore, Wipe, VolumeLoss)

_ALL: tuple[type[Fault], ...] = (Kill, Pause, Restart, Partition, Latency, Timeout, Reset, CpuStress, MemoryPressure,
                                 DiskFault, *OPERATOR_ACTIONS)
FAULT_KINDS: tuple[str, ...] = tuple(c.kind for c in _ALL)
