"""Operator actions as faults: how any platform's interpreter carries out ``ScaleTo``, ``RollingRestart``,
``UpdateConfig``, ``RotateSecret``, ``Upgrade``, ``Rollback``, ``TakeBackup``, ``Restore``, ``Wipe`` and
``VolumeLoss`` (``harness/faults/spec.py``) — through the platform's ``Operations`` contract.

Why one module for every platform: the action and its undo are the same procedure wherever the stack
runs (scale back to the count before, roll the previous config or version back out, restore from the
backup); only the ``Operations`` implementation differs. So each interpreter merges
:meth:`OperatorActions.handlers` into its handler table, and a platform gets these fault kinds as soon
as it has an ``Operations`` implementation. Going through the nemesis gives every action a window in
the history (t_inject when the action is done, t_heal when its undo is) and a guaranteed undo: the
nemesis heals every fault still active at the end of a scenario, even when it failed.

The undo is decided *before* the action: an ``UpdateConfig`` whose previous value is not one value set
everywhere is refused (``Unsupported``) before anything changes. Actions with no meaningful undo
(a rolling restart, a secret rotation, a backup, a completed restore) say so in their docstring and
their heal is a verified no-op: it changes nothing and raises ``PlatformError`` if the action did not
leave what it should have.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from harness.faults.nemesis import Injected
from harness.faults.outcomes import ActionDetail, ActionHealed, RollSummary, RotationSummary
from harness.faults.spec import (
    Fault,
    Restore,
    Rollback,
    RollingRestart,
    RotateSecret,
    ScaleTo,
    TakeBackup,
    UpdateConfig,
    Upgrade,
    VolumeLoss,
    Wipe,
)
from harness.platforms.base import PlatformError, Unsupported
from harness.platforms.operations import Backup, Operations, RollResult

OperationsSource = Callable[[], Operations]
Action = Injected[ActionDetail, ActionHealed]
log = logging.getLogger(__name__)


@runtime_checkable
class BindsOperations(Protocol):
    """An interpreter that carries out operator actions with the ``Operations`` it is handed."""

    def use_operations(self, ops: Operations | OperationsSource) -> None: ...


def previous_config(values: dict[str, str | None], key: str) -> str:
    """The one value ``key`` had on every instance (what an undo rolls back to); ``Unsupported`` when
    there is none to guarantee: no instance, unset somewhere, or different values (pure)."""
    if not values:
        raise Unsupported(f"update-config {key}: no running instance to configure")
    unset = sorted(n for n, v in values.items() if v is None)
    if unset:
        raise Unsupported(f"update-config {key}: unset on {unset}, so there is no previous value to roll back to")
    distinct = sorted({v for v in values.values() if v is not None})
    if len(distinct) != 1:
        raise Unsupported(f"update-config {key}: instances differ ({len(distinct)} values), so no single previous "
                          "value to roll back to")
    return distinct[0]


def previous_version(versions: dict[str, str]) -> str:
    """The one version every instance runs (what a rollback's undo rolls forward to) (pure)."""
    distinct = sorted(set(versions.values()))
    if len(distinct) != 1:
        raise Unsupported(f"instances run {distinct or 'nothing'}: no single version to roll forward to")
    return distinct[0]


def _undo_on_failure(action: Callable[[], Any], undo: Callable[[], Any], what: str) -> Any:
    """Run ``action``; if it fails part-way, run its undo (best effort) before re-raising: a half-done
    action never reached the nemesis, so no heal would undo it otherwise."""
    try:
        return action()
    except BaseException:
        try:
            undo()
        except Exception:  # noqa: BLE001 - the action's own error is the one to report
            log.exception("undoing the failed %s failed too", what)
        raise


def _roll_summary(roll: RollResult) -> RollSummary:
    return {"roll_s": roll.duration_s, "instances": [s.name for s in roll.steps]}


class OperatorActions:
    """The operator-action handlers of one interpreter, over the ``Operations`` it is given.

    ``source`` makes the ``Operations`` on first use; :meth:`use` replaces it (a scenario hands over the
    ones that record into its history and publish gates to its workload). An action and its undo use
    the same ``Operations`` object (an upgrade's rollback needs the versions it remembered)."""

    def __init__(self, source: OperationsSource | None = None) -> None:
        self._source = source
        self._ops: Operations | None = None

    def use(self, ops: Operations) -> None:
        """Carry out later actions with ``ops``."""
        self._ops = ops

    def use_source(self, source: OperationsSource) -> None:
        """Make the ``Operations`` with ``source`` on the next action that needs them."""
        self._source, self._ops = source, None

    def operations(self) -> Operations:
        if self._ops is None:
            if self._source is None:
                raise Unsupported("operator actions need the platform's Operations, and none was given")
            self._ops = self._source()
        return self._ops

    def handlers(self) -> dict[type[Fault], Callable[[Any], Action]]:
        return {
            ScaleTo: self.scale,
            RollingRestart: self.rolling_restart,
            UpdateConfig: self.update_config,
            RotateSecret: self.rotate_secret,
            Upgrade: self.upgrade,
            Rollback: self.rollback,
            TakeBackup: self.take_backup,
            Restore: self.restore,
            Wipe: self.wipe,
            VolumeLoss: self.volume_loss,
        }

    # ---- scale ------------------------------------------------------------------------------------
    def scale(self, fault: ScaleTo) -> Action:
        ops = self.operations()
        before = len(ops.running(fault.component))
        step = _undo_on_failure(lambda: ops.scale(fault.component, fault.n, drain_endpoints=fault.drain_endpoints),
                                lambda: ops.scale(fault.component, before), str(fault))
        inj: Action = Injected(list(step.changed), lambda: None, {"how": "operations.scale", "from": before,
                                                                  "to": fault.n, "converged_s": step.converged_s},
                               outcome=step)

        def heal() -> ActionHealed:
            back = ops.scale(fault.component, before)
            inj.undone = back
            return {"undo": f"scaled back to {before}", "changed": back.changed, "converged_s": back.converged_s}
        inj.heal = heal
        return inj

    # ---- rolls --------------------------------------------------------------------------------------
    def rolling_restart(self, fault: RollingRestart) -> Action:
        ops = self.operations()
        roll = ops.rolling_restart(fault.components)
        names = [s.name for s in roll.steps]

        def heal() -> ActionHealed:
            down = [n for n in names if n not in set(ops.running())]
            if down:
                raise PlatformError(f"rolling restart: {down} did not stay up after their restart")
            return {"undo": "none: a restart has nothing to give back", "verified_running": names}
        return Injected(names, heal, {"how": "operations.rolling_restart", **_roll_summary(roll)}, outcome=roll)

    def update_config(self, fault: UpdateConfig) -> Action:
        ops = self.operations()
        previous = previous_config(ops.config_value(fault.key, fault.components), fault.key)
        roll = _undo_on_failure(lambda: ops.update_config(fault.key, fault.value, fault.components),
                                lambda: ops.update_config(fault.key, previous, fault.components), str(fault))
        inj: Action = Injected([s.name for s in roll.steps], lambda: None,
                       {"how": "operations.update_config", "previous": previous, **_roll_summary(roll)}, outcome=roll)

        def heal() -> ActionHealed:
            back = ops.update_config(fault.key, previous, fault.components)
            inj.undone = back
            return {"undo": f"{fault.key} rolled back to its previous value", **_roll_summary(back)}
        inj.heal = heal
        return inj

    def upgrade(self, fault: Upgrade) -> Action:
        ops = self.operations()
        before = previous_version({n: ops.version_of(n) for c in fault.components for n in ops.running(c)})
        roll = _undo_on_failure(lambda: ops.rolling_upgrade(fault.version, fault.components),
                                lambda: ops.rolling_upgrade(before, fault.components), str(fault))
        inj: Action = Injected([s.name for s in roll.steps], lambda: None,
                       {"how": "operations.rolling_upgrade", "previous": roll.verified.get("previous"),
                        **_roll_summary(roll)}, outcome=roll)

        def heal() -> ActionHealed:
            back = ops.rollback(fault.components)
            inj.undone = back
            return {"undo": "rolled back to the previous versions", **_roll_summary(back)}
        inj.heal = heal
        return inj

    def rollback(self, fault: Rollback) -> Action:
        ops = self.operations()
        left = previous_version({n: ops.version_of(n) for c in fault.components for n in ops.running(c)})
        roll = _undo_on_failure(lambda: ops.rollback(fault.components),
                                lambda: ops.rolling_upgrade(left, fault.components), str(fault))
        inj: Action = Injected([s.name for s in roll.steps], lambda: None,
                       {"how": "operations.rollback", "left": left, **_roll_summary(roll)}, outcome=roll)

        def heal() -> ActionHealed:
            forward = ops.rolling_upgrade(left, fault.components)
            inj.undone = forward
            return {"undo": f"rolled forward to {left}", **_roll_summary(forward)}
        inj.heal = heal
        return inj

    # ---- secrets ------------------------------------------------------------------------------------
    def rotate_secret(self, fault: RotateSecret) -> Action:
        ops = self.operations()
        rot = ops.rotate_postgres_password()
        summary: RotationSummary = {"reload_s": rot.reload_s, "revoked": rot.revoked, "old_rejected": rot.old_rejected,
                   "new_accepted": rot.new_accepted}

        def heal() -> ActionHealed:
            if not (rot.old_rejected and rot.new_accepted):
                raise PlatformError(f"secret rotation did not complete (old rejected: {rot.old_rejected}, "
                                    f"new accepted: {rot.new_accepted}); there is no undo for it either")
            return {"undo": "none: a revoked secret stays revoked", **summary}
        return Injected(["postgres"], heal, {"how": "operations.rotate_postgres_password", **summary}, outcome=rot)

    # ---- backup, restore, data loss -----------------------------------------------------------------
    def take_backup(self, fault: TakeBackup) -> Action:
        backup = self.operations().backup(Path(fault.dest))
        manifest = backup.save()

        dest = Path(fault.dest).resolve()

        def heal() -> ActionHealed:
            # only files on this machine (under ``dest``) can be looked at here; a platform that keeps its
            # backups on a volume of its own (Kubernetes: the backup PVC) verified them when it took them
            files = [p for p in (backup.pg_dump, backup.etcd_snapshot, manifest) if p is not None]
            local = [p for p in files if Path(p).resolve().is_relative_to(dest)]
            missing = [str(p) for p in local if not Path(p).exists()]
            if missing:
                raise PlatformError(f"backup files vanished before the heal: {missing}")
            return {"undo": "none: a backup is kept", "files_present": True, "checked_here": [str(p) for p in local],
                    "on_the_platform": [str(p) for p in files if p not in local]}
        return Injected(["etcd", "postgres"], heal, {"how": "operations.backup", "t_point": round(backup.t_point, 6),
                                                     "sizes": backup.sizes}, outcome=backup)

    def _restore(self, backup: Backup, keys: Sequence[str], etcd: bool, postgres: bool,
                 t_fault: float | None) -> dict[str, Any]:
        return self.operations().restore(backup, list(keys), etcd=etcd, postgres=postgres, t_fault=t_fault)

    def restore(self, fault: Restore) -> Action:
        backup = Backup.load(fault.backup)
        done = self._restore(backup, fault.keys, fault.etcd, fault.postgres, None)
        targets = [c for c, on in (("etcd", fault.etcd), ("postgres", fault.postgres)) if on]

        def heal() -> ActionHealed:
            if done.get("restore_s") is None:
                raise PlatformError(f"the restore reported no duration, so it did not complete: {sorted(done)}")
            return {"undo": "none: a completed restore replaced the state it recovered from"}
        return Injected(targets, heal, {"how": "operations.restore", "restore_s": done.get("restore_s")},
                        outcome=done)

    def _loss_then_restore(self, lose: Callable[[], dict[str, Any]], backup_dir: str, keys: Sequence[str],
                           etcd: bool, postgres: bool, targets: list[str], how: str) -> Action:
        backup = Backup.load(backup_dir)  # before the loss: no backup, no undo, nothing lost
        lost = lose()
        inj: Action = Injected(targets, lambda: None, {"how": how, "backup_point": round(backup.t_point, 6)},
                               outcome=lost)

        def heal() -> ActionHealed:
            restored = self._restore(backup, keys, etcd, postgres, inj.began_at)
            inj.undone = restored
            out: ActionHealed = {"undo": f"restored {'+'.join(targets)} from {Path(backup_dir).name}"}
            # the restore's figures it reported, in this order (the history's keys as before)
            if "restore_s" in restored:
                out["restore_s"] = restored["restore_s"]
            if "rpo_s" in restored:
                out["rpo_s"] = restored["rpo_s"]
            if "phases" in restored:
                out["phases"] = restored["phases"]
            return out
        inj.heal = heal
        return inj

    def wipe(self, fault: Wipe) -> Action:
        ops = self.operations()
        return self._loss_then_restore(ops.wipe, fault.backup, fault.keys, True, True, ["etcd", "postgres"],
                                       "operations.wipe")

    def volume_loss(self, fault: VolumeLoss) -> Action:
        ops = self.operations()
        return self._loss_then_restore(lambda: ops.lose_data_dir(fault.component), fault.backup, fault.keys,
                                       fault.component == "etcd", fault.component == "postgres", [fault.component],
                                       "operations.lose_data_dir")
