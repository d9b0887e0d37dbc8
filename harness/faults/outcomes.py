"""The outcome vocabulary: what every fault interpreter returns for each fault kind, on every platform.

An interpreter's ``Injected`` carries two records the history keeps: ``detail`` (merged into the
nemesis ``start`` event's params: what was done, and ``how`` on this platform) and the heal result
(the ``stop`` event's result: what the undo did). Checkers and scenarios judge faults from those
records ("did the cut bite", "was the target OOM-killed and restarted"), so a platform that names a
key differently (``backend`` for ``how``, ``replaced`` for ``restarted``) silently breaks every judge
on that platform. Why TypedDicts: they are the dicts the history already holds (no conversion, the
history stays byte for byte the same) and mypy checks every literal an interpreter builds against
them — an unknown key, a missing required one or a wrong type is a type error, not a skipped check.

One TypedDict per fault kind for each side; keys only one mechanism has (a Chaos Mesh experiment's
name, a fault proxy's byte count) are ``NotRequired``, the ones every platform must give are
required. ``harness/faults/handlers.py`` ties each kind to its pair, so an interpreter's handler for
``Kill`` must return ``Injected[KillDetail, KillHealed]``.

Pure vocabulary: this module imports nothing of the harness, so checkers (which may read only the
history) can name these records too (docs/architecture.md).
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class ChaosRecovered(TypedDict):
    """A heal that deleted Chaos Mesh experiments: all recovered, and those deleted by force."""

    recovered: bool
    forced: list[str]


# ---- processes and pods ---------------------------------------------------------------------------
class KillDetail(TypedDict):
    signal: str
    how: str
    replies_held_on: NotRequired[list[str]]  # fault proxy links whose PostgreSQL replies were held (local)


class KillHealed(TypedDict):
    restarted: list[str]  # started again (local) or replaced (Kubernetes)
    how_back: NotRequired[dict[str, str]]  # per instance, how it came back (Kubernetes, node access)
    pods_gone: NotRequired[list[str]]  # pods replaced meanwhile: their network rules went with them


class RestartDetail(TypedDict):
    graceful: bool
    exit_codes: dict[str, int | None]
    how: str


class RestartHealed(TypedDict):
    restarted: list[str]


class PauseDetail(TypedDict):
    how: str


class PauseHealed(TypedDict):
    resumed: list[str]


# ---- partitions -------------------------------------------------------------------------------------
class PartitionShape(TypedDict):
    """What the planning step resolved (``PartitionPlan.detail``); every interpreter adds ``how``."""

    shape: str
    one_way: bool
    victim: str | None
    grudge: dict[str, list[str]]  # host -> the hosts it drops, sorted


class PartitionDetail(PartitionShape):
    how: str
    experiments: NotRequired[list[str]]  # Chaos Mesh
    partition: NotRequired[str]  # the NetworkPolicy fallback's quarantine label


class PartitionHealed(TypedDict):
    healed: list[str]  # the hosts whose drops were removed
    pods_gone: NotRequired[list[str]]
    policies_deleted: NotRequired[int]
    recovered: NotRequired[bool]
    forced: NotRequired[list[str]]


CutEvidence = TypedDict("CutEvidence", {
    "from": str, "to": str, "addr": str, "outcome": str, "dropped": bool | None, "why": str,
}, total=False)
"""A connect across a partition while it held (``Injected.verify``); ``dropped`` None: nothing to probe."""


class PartitionEvidence(TypedDict):
    verified_cut: CutEvidence


# ---- links ------------------------------------------------------------------------------------------
class LinkDetail(TypedDict):
    """Latency, black hole (timeout) and reset on links: through a fault proxy, nft or Chaos Mesh."""

    how: str
    via: NotRequired[str]  # faultproxy | nft
    links: NotRequired[list[str]]  # src->dst
    ms: NotRequired[int]
    jitter_ms: NotRequired[int]
    direction: NotRequired[str]
    toxic: NotRequired[str]
    action: NotRequired[str]
    experiments: NotRequired[list[str]]


class LinkFigures(TypedDict, total=False):
    """The fault's own figures an interpreter puts first in a ``LinkDetail`` (then links, via, how)."""

    ms: int
    jitter_ms: int
    direction: str
    toxic: str


class LinkHealed(TypedDict, total=False):
    cleared: list[str]
    bytes_during: dict[str, int]  # bytes the proxy moved on each link while the fault held
    pods_gone: list[str]  # Kubernetes: the pod (and its proxy with the toxic) was replaced meanwhile
    recovered: bool
    forced: list[str]


# ---- resources --------------------------------------------------------------------------------------
class CpuDetail(TypedDict):
    how: str
    quota: NotRequired[float]
    experiments: NotRequired[list[str]]


class CpuHealed(TypedDict, total=False):
    throttled: dict[str, dict[str, int]]  # instance -> {periods, throttled}
    recovered: bool
    forced: list[str]


class MemoryDetail(TypedDict):
    how: str
    limit_mb: NotRequired[int]
    experiments: NotRequired[list[str]]


class MemoryRestart(TypedDict):
    """One OOM-killed target coming back (the local supervisor's or the kubelet's restart)."""

    target: str
    exit_code: int | None  # -9: killed by SIGKILL (the OOM killer)
    died_after_s: NotRequired[float]
    restarted_after_s: NotRequired[float]
    restart_error: NotRequired[str]
    reason: NotRequired[str | None]
    oom_killed_by_kernel: NotRequired[bool | None]  # the kernel log names its pid (Kubernetes, node access)
    by: NotRequired[str]


class MemoryHealed(TypedDict, total=False):
    oom_kills: dict[str, int | str]  # a count, or why none could be read (the group went with its container)
    oom_killed_pids: list[int] | None  # pids the kernel log says it OOM-killed (Kubernetes, node access)
    restarts: list[MemoryRestart]
    filled_mb: dict[str, float]
    recovered: bool
    forced: list[str]


class DiskDetail(TypedDict):
    disk: str  # full | latency | eio
    how: str
    latency_ms: NotRequired[int]
    via: NotRequired[str]
    ballast_bytes: NotRequired[int]
    free_bytes: NotRequired[int]
    filesystem_mb: NotRequired[int]
    experiments: NotRequired[list[str]]


class DiskHealed(TypedDict, total=False):
    free_bytes: int
    recovered: bool
    forced: list[str]
    postgres_restarted: bool  # the local platform started PostgreSQL again: it had exited under the fault


# ---- operator actions (one implementation for every platform: harness/platforms/actions.py) ---------
class RollSummary(TypedDict):
    roll_s: float
    instances: list[str]


class RotationSummary(TypedDict):
    reload_s: float | None
    revoked: int
    old_rejected: bool
    new_accepted: bool


ActionDetail = TypedDict("ActionDetail", {
    "how": str,  # operations.<method>
    # the action's figures ("from" is a Python keyword, hence this spelling)
    "from": NotRequired[int],
    "to": NotRequired[int],
    "instances": NotRequired[list[str]],
    "roll_s": NotRequired[float],
    "previous": NotRequired[Any],
    "left": NotRequired[str],
    "converged_s": NotRequired[float | None],
    "reload_s": NotRequired[float | None],
    "revoked": NotRequired[int],
    "old_rejected": NotRequired[bool],
    "new_accepted": NotRequired[bool],
    "t_point": NotRequired[float],
    "sizes": NotRequired[dict[str, int]],
    "restore_s": NotRequired[float | None],
    "backup_point": NotRequired[float],
})
"""An operator action's start-event detail: ``how`` and the action's figures."""


class ActionHealed(TypedDict):
    undo: str  # what the heal did, or "none: …" with why
    instances: NotRequired[list[str]]
    roll_s: NotRequired[float]
    changed: NotRequired[list[str]]
    converged_s: NotRequired[float | None]
    verified_running: NotRequired[list[str]]
    reload_s: NotRequired[float | None]
    revoked: NotRequired[int]
    old_rejected: NotRequired[bool]
    new_accepted: NotRequired[bool]
    files_present: NotRequired[bool]
    checked_here: NotRequired[list[str]]
    on_the_platform: NotRequired[list[str]]
    restore_s: NotRequired[float | None]
    rpo_s: NotRequired[float | None]
    phases: NotRequired[Any]


# ---- what the nemesis adds to every heal result -----------------------------------------------------
class Verification(TypedDict, total=False):
    """``Injected.verify``'s evidence as the nemesis records it, with its own times."""

    verified_cut: CutEvidence
    error: str
    started_at: float
    ended_at: float | None
    conclusive: bool


class HealRecord(TypedDict, total=False):
    """The nemesis's keys in every stop event's result (docs/faults.md "Fault windows")."""

    heal_began_at: float
    actual_hold_s: float
    requested_hold_s: float
    verification: Verification
    heal_error: str


class PartitionStopped(PartitionHealed, HealRecord):
    """A partition's stop event result as the history holds it (what ``partition_bit`` reads)."""
