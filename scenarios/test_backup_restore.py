"""Seed §6.1 backup and restore, and §7.1 PersistentVolume failure, under the counter workload.

Backup and restore — given a 3-node, 2-gate stack under load, when the operator takes a backup
(``etcdctl snapshot save``, then ``pg_dump``) while clients keep writing, the load goes on, and then
the stack's state is wiped (every process killed, etcd's and PostgreSQL's data directories removed)
and restored from that backup, then what the restore brought back equals what was acknowledged before
the backup point: for every counter key, Σ increments acknowledged before pg_dump started ≤ restored
value ≤ Σ increments invoked (and not definitely failed) before it finished; after the restore no
acknowledged write is lost again (L from the restored values on), and the cluster converges (C).
Reported in run.json: ``restore_s`` (how long the restore procedure took — the RTO of the procedure),
``fault_to_ready_s`` (fault → stack converged and ready again), the probe-measured ``rto_s`` (per
window in ``faults``; the wipe's is wipe → reads served again) and ``rpo_s`` (backup point → fault:
the data window the recovery gave up).

Volume loss — when PostgreSQL's data directory disappears under the running server (its pod comes
back on an empty volume), the operator stops the nodes (their memory holds state newer than any
backup), recovers PostgreSQL from the last backup and starts the nodes again: the same restored-data
and L checks hold, RTO and RPO are reported. etcd keeps its data: the shard map survives. Until the
nodes are stopped they keep serving reads of active objects from memory (writes fail), so the probe
(reads) dips only when the recovery stops them: the probe RTO is measured from the restore window,
``fault_to_ready_s`` from the loss.

Every step is an operator-action fault applied by the nemesis (``TakeBackup``, ``Wipe``, ``VolumeLoss``):
each gets a window in the history, and the loss's guaranteed undo is the recovery — its heal restores
from the backup — so the window runs from the loss to "restored and ready" and a scenario that failed
in between still gets its data back. A backup has no undo (its heal verifies its files are there).

The backup files live in the stack's run directory (``stacks/test_backup_restore/backups/``): they
hold counters and the shard map, no secret (pg_dump does not dump role passwords).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import budgets
from harness.capabilities import STORED_READ_GAP_S, stored_state_reason
from harness.checkers import converged, no_lost_writes, reads_see_acknowledged, rto
from harness.checkers.operations import no_lost_writes_after_restore, restored_matches_backup
from harness.faults.spec import Restart, TakeBackup, VolumeLoss, Wipe
from harness.platforms.operations import restore_procedure_s, rpo_s
from harness.scenario import unsupported_is_skip

pytestmark = [pytest.mark.e2e]

BASELINE_S = 2.0


def baseline_s(scenario: Any) -> float:
    """Load before the backup point: 2 s, plus on a stack that saves periodically (Goverse) one save
    interval and the read gap — its database, and so the backup, holds only what was acknowledged
    that long before the point, and ``restored_matches_backup`` needs some of it to judge."""
    caps = scenario.capabilities
    if caps is None or caps.persistence_interval_s <= 0 or stored_state_reason(caps) is not None:
        return BASELINE_S
    return BASELINE_S + caps.persistence_interval_s + STORED_READ_GAP_S
AFTER_BACKUP_S = 2.0  # load acknowledged after the backup point: the data window a recovery gives up
AFTER_S = 3.5  # ≥ availability window + stable window after recovery, so RTO is measurable


def recovery_budget(stack, restored: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """A recovery (restore + restart + shard map converged) measured by the probe: 3× the convergence
    budget, generous on purpose — restore time is reported, the budget only catches "never back" —
    plus what the procedure itself took before the stack could act (stop the nodes, the etcd and
    PostgreSQL restores, start them again), as the scale steps add the platform's preStop and start.
    Why: on Kubernetes those steps are Jobs, scale-to-zero and pod starts — about a minute on a 2-core
    machine against ~1.5 s locally — so a fixed budget judged the procedure, not the stack. Returns
    the budget and its parts (reported in run.json as ``rto_budget``)."""
    parts = {"convergence_x3_s": 3 * budgets.convergence(stack.spec.timers),
             "procedure_s": restore_procedure_s(restored.get("phases"))}
    return round(sum(parts.values()), 3), parts


def test_backup_and_restore(stack, scenario):
    t = stack.spec.timers
    wl = scenario.workload()
    with unsupported_is_skip():
        scenario.operations(on_endpoints=wl.set_gates)  # handed to the nemesis: restarts publish gates to wl
    dest = Path(stack.run_dir) / "backups" / scenario.id
    with scenario.observing(), wl.running():
        scenario.settle(baseline_s(scenario), "baseline")
        with unsupported_is_skip():
            backup = scenario.nemesis.apply(TakeBackup(str(dest)), hold=0).outcome
        scenario.settle(AFTER_BACKUP_S, "load after the backup point")
        wiped = scenario.nemesis.apply(Wipe(str(dest), tuple(wl.counter_keys)), hold=0)  # heal: the restore
        t_fault, restored = wiped.began_at, wiped.undone
        t_ready = scenario.recorder.now()
        scenario.settle_clean(AFTER_S, "after the restore", budgets.convergence(t))
    wl.final_reads()
    budget, parts = recovery_budget(stack, restored)
    result = scenario.conclude(
        restored_matches_backup(), no_lost_writes_after_restore(), converged(within_s=budgets.convergence(t)),
        rto(budget_s=budget),
        extra={"rpo_s": rpo_s(backup.t_point, t_fault), "restore_s": restored["restore_s"], "rto_budget": parts,
               "restore_phases": restored.get("phases"), "fault_to_ready_s": round(t_ready - t_fault, 3),
               "backup_s": round(backup.t_end - backup.t_start, 3), "backup_bytes": backup.sizes,
               "backup_point_s": round(backup.t_point, 3)},
    )
    assert result.passed, result.explain()


def lose_volume(stack: Any, scenario: Any, component: str,
                after_backup: Callable[[], None] | None = None) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Under load: back up, let load go on (``after_backup`` may disturb the stack meanwhile), lose
    ``component``'s data directory, restore it from the backup, and observe the after phase. Returns
    (backup, restore result, timing extras for run.json)."""
    t = stack.spec.timers
    wl = scenario.workload()
    with unsupported_is_skip():
        scenario.operations(on_endpoints=wl.set_gates)  # handed to the nemesis: restarts publish gates to wl
    dest = Path(stack.run_dir) / "backups" / scenario.id
    with scenario.observing(), wl.running():
        scenario.settle(baseline_s(scenario), "baseline")
        with unsupported_is_skip():
            backup = scenario.nemesis.apply(TakeBackup(str(dest)), hold=0).outcome
        if after_backup is not None:
            after_backup()
        scenario.settle(AFTER_BACKUP_S, "load after the last backup")
        # heal: the recovery from the backup (nodes stopped, the component restored, everything started)
        lost = scenario.nemesis.apply(VolumeLoss(component, str(dest), tuple(wl.counter_keys)), hold=0)
        t_fault, restored = lost.began_at, lost.undone
        t_ready = scenario.recorder.now()
        scenario.settle_clean(AFTER_S, "after the recovery", budgets.convergence(t))
    wl.final_reads()
    # RPO only where data is given up: losing etcd loses coordination, and L judges that nothing else went
    extra = {"rpo_s": rpo_s(backup.t_point, t_fault) if component == "postgres" else 0.0,
             "restore_s": restored["restore_s"],
             "restore_phases": restored.get("phases"), "fault_to_ready_s": round(t_ready - t_fault, 3),
             "lost": f"{component} data directory", "backup_s": round(backup.t_end - backup.t_start, 3),
             "backup_bytes": backup.sizes, "backup_point_s": round(backup.t_point, 3)}
    extra["rto_budget_s"], extra["rto_budget"] = recovery_budget(stack, restored)
    return backup, restored, extra


def test_volume_loss_postgres(stack, scenario):
    t = stack.spec.timers
    _, _, extra = lose_volume(stack, scenario, "postgres")
    result = scenario.conclude(
        restored_matches_backup(), no_lost_writes_after_restore(), converged(within_s=budgets.convergence(t)),
        rto(budget_s=extra["rto_budget_s"]), extra=extra,
    )
    assert result.passed, result.explain()


def test_volume_loss_etcd(stack, scenario):
    """etcd's data directories (every member) are lost; the operator restores etcd from the last
    snapshot and restarts the nodes. PostgreSQL kept everything, so nothing acknowledged may be lost
    — not even what came after the backup point (L over the whole run): etcd holds coordination only
    (membership, leases, the shard map), and a snapshot older than the claims and fences written
    since must not stop the stack from serving again (C, R)."""
    t = stack.spec.timers

    def move_shards() -> None:
        # claims after the snapshot raise PostgreSQL's fences past every revision the restored etcd
        # will hand out for a while, which the nodes must get past
        scenario.nemesis.apply(Restart("node-1", graceful=True), hold=0.5)
        scenario.wait_converged(budgets.convergence(t))

    _, _, extra = lose_volume(stack, scenario, "etcd", after_backup=move_shards)
    result = scenario.conclude(
        no_lost_writes(), reads_see_acknowledged(), converged(within_s=budgets.convergence(t)),
        rto(budget_s=extra["rto_budget_s"]), extra=extra,
    )
    assert result.passed, result.explain()
