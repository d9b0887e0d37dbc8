"""The nemesis's bookkeeping with a recording injector (pure: no platform): each fault healed exactly
once, ``heal_all`` newest first and never raising, windows stamped at the moments of effect, the
requested and actual hold recorded, and a verification recorded with its own times outside the hold.
Operator actions (scale, config, upgrade/rollback, rotation, backup/restore, losses) through the shared
handlers over a recording ``Operations``: a window each, the undo exactly once, also on failure."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from harness.faults.nemesis import Injected, Nemesis
from harness.faults.spec import (
    Fault,
    Kill,
    Pause,
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
from harness.history import Recorder
from harness.platforms.actions import OperatorActions, previous_config, previous_version
from harness.platforms.base import PlatformError, Unsupported
from harness.platforms.operations import Backup, RollResult, RollStep, RotationResult, ScaleStep


class RecordingInjector:
    """Records every inject and heal; ``fail_heal`` makes those targets' heals raise."""

    def __init__(self, fail_heal: set[str] | None = None, verify_s: float | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail_heal = fail_heal or set()
        self.verify_s = verify_s

    def inject(self, fault: Fault) -> Injected:
        target = getattr(fault, "target", "?")
        if target == "node-9":
            raise Unsupported("not here")
        self.calls.append(("inject", target))

        def heal() -> dict[str, Any]:
            self.calls.append(("heal", target))
            if target in self.fail_heal:
                raise RuntimeError(f"heal of {target} failed")
            return {"healed": target}

        verify = None
        if self.verify_s is not None:
            def verify() -> dict[str, Any]:
                threading.Event().wait(self.verify_s)  # sleep-ok: a verification that takes time
                return {"dropped": True}
        return Injected([target], heal, {"how": "recorded"}, verify=verify)


def test_each_fault_is_healed_exactly_once() -> None:
    inj, rec = RecordingInjector(), Recorder()
    nem = Nemesis(inj, rec)
    fid, _ = nem.inject(Kill("node-0"))
    nem.heal(fid)
    nem.heal(fid)
    nem.heal_all()
    assert inj.calls == [("inject", "node-0"), ("heal", "node-0")]
    (w,) = rec.history().faults()
    assert w.result is not None and w.result["healed"] == "node-0" and w.t_stop is not None


def test_heal_all_heals_newest_first_and_never_raises() -> None:
    inj, rec = RecordingInjector(fail_heal={"node-1"}), Recorder()
    nem = Nemesis(inj, rec)
    for t in ("node-0", "node-1", "node-2"):
        nem.inject(Pause(t))
    nem.heal_all()  # node-1's heal raises: logged, the others still healed
    assert [c for c in inj.calls if c[0] == "heal"] == [("heal", "node-2"), ("heal", "node-1"), ("heal", "node-0")]
    assert nem.active == []
    assert all(w.t_stop is not None for w in rec.history().faults())  # a failed heal is still closed


def test_a_context_exit_heals_on_an_exception() -> None:
    inj, rec = RecordingInjector(), Recorder()
    nem = Nemesis(inj, rec)
    with pytest.raises(KeyError), nem.fault(Kill("node-0")):
        raise KeyError("scenario failed")
    assert inj.calls == [("inject", "node-0"), ("heal", "node-0")]


def test_unsupported_records_nothing() -> None:
    rec = Recorder()
    with pytest.raises(Unsupported):
        Nemesis(RecordingInjector(), rec).inject(Kill("node-9"))
    assert rec.history().faults() == []


def test_apply_records_requested_and_actual_hold_and_the_verification_outside_it() -> None:
    inj, rec = RecordingInjector(verify_s=0.05), Recorder()
    Nemesis(inj, rec).apply(Kill("node-0"), hold=0.3)
    (w,) = rec.history().faults()
    assert w.requested_hold_s == 0.3 and w.result is not None
    assert w.result["actual_hold_s"] == pytest.approx(w.t_stop - w.t_start, abs=1e-6)
    assert abs(w.actual_hold_s - 0.3) <= 0.05
    v = w.result["verification"]
    assert v["dropped"] is True and v["conclusive"] is True
    assert w.t_start <= v["started_at"] <= v["ended_at"] <= w.t_stop


class SlowInjector(RecordingInjector):
    """Applying and healing each take ``took_s`` (an nft transaction in every namespace, say)."""

    def __init__(self, took_s: float) -> None:
        super().__init__()
        self.took_s = took_s

    def inject(self, fault: Fault) -> Injected:
        threading.Event().wait(self.took_s)  # sleep-ok: the apply's own duration is the subject
        injected = super().inject(fault)
        inner = injected.heal

        def heal() -> Any:
            threading.Event().wait(self.took_s)  # sleep-ok: the heal's own duration is the subject
            return inner()
        injected.heal = heal
        return injected


def test_the_heal_starts_early_by_its_expected_duration_so_the_window_is_the_hold_asked() -> None:
    """A kind's first window has no lead (nothing known about its heal: the apply time overestimated it,
    60-84 ms against heals of 20-40 ms for partitions); later ones start the heal early by the last
    heal's run (>= 40 ms here). The heal never starts before t_inject + hold - lead."""
    inj, rec = SlowInjector(0.04), Recorder()
    nem = Nemesis(inj, rec)
    nem.apply(Pause("node-0"), hold=0.3)
    nem.apply(Pause("node-0"), hold=0.3)
    first, second = rec.history().faults()
    assert first.result is not None and second.result is not None
    assert first.result["heal_lead_s"] == 0
    assert 0.04 <= second.result["heal_lead_s"] <= 0.1
    for w in (first, second):
        assert w.result is not None
        assert w.result["heal_began_at"] >= w.t_start + 0.3 - w.result["heal_lead_s"] - 1e-6


def test_a_slow_heal_never_shortens_the_fault_by_more_than_the_cap() -> None:
    inj, rec = SlowInjector(0.25), Recorder()
    nem = Nemesis(inj, rec)
    nem.apply(Pause("node-0"), hold=0.3)
    nem.apply(Pause("node-0"), hold=0.3)
    _, w = rec.history().faults()
    assert w.result is not None and w.result["heal_lead_s"] == 0.1
    assert w.result["heal_began_at"] >= w.t_start + 0.2 - 1e-6


def test_a_verification_still_running_at_the_heal_is_not_conclusive_and_does_not_stretch_the_window() -> None:
    inj, rec = RecordingInjector(verify_s=0.4), Recorder()
    Nemesis(inj, rec).apply(Kill("node-0"), hold=0.1)
    (w,) = rec.history().faults()
    assert w.result is not None and w.result["verification"]["conclusive"] is False
    assert w.actual_hold_s is not None and w.actual_hold_s < 0.3  # the heal did not wait for it


def test_a_negative_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="hold"):
        Nemesis(RecordingInjector(), Recorder()).apply(Kill("node-0"), hold=-1)


# ---- operator actions through the nemesis ------------------------------------------------------------
# The handlers (harness/platforms/actions.py) over an Operations that records what it is asked and
# keeps the state an undo depends on (scale, config per instance, versions); ``fail`` makes that call
# raise, to show a failing undo still closes its window.

class RecordingOperations:
    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail = fail
        self.fail_once = False  # True: only the first matching call fails (the undo then succeeds)
        self.count = {"node": 2, "gate": 2}
        names = ("node-0", "node-1", "gate-0", "gate-1")
        self.env: dict[str, dict[str, str]] = {n: {"LOG_LEVEL": "info"} for n in names}
        self.version = {n: "A" for n in self.env}
        self.previous: dict[str, str] = {}

    def _call(self, *what: Any) -> None:
        self.calls.append(what)
        if self.fail == what[0]:
            if self.fail_once:
                self.fail = None
            raise PlatformError(f"{what[0]} failed")

    def running(self, component: str | None = None) -> list[str]:
        if component in self.count:
            return [f"{component}-{i}" for i in range(self.count[component])]
        return [n for n in self.version if component is None or n.startswith(component)]

    def scale(self, component: str, n: int, timeout: float | None = None, drain_endpoints: bool = True) -> ScaleStep:
        before = self.count[component]
        self._call("scale", component, n)
        self.count[component] = n
        return ScaleStep(component, before, n, [f"{component}-{i}" for i in range(min(before, n), max(before, n))], 1.5)

    def _roll(self, kind: str, apply: Any) -> RollResult:
        steps = []
        for name in self.version:
            apply(name)
            steps.append(RollStep(name, 1.0, 2.0, 0))
        return RollResult(kind, steps, {})

    def config_value(self, key: str, components: Any = ()) -> dict[str, str | None]:
        return {n: e.get(key) for n, e in self.env.items()}

    def update_config(self, key: str, value: str, components: Any = (), timeout: float | None = None) -> RollResult:
        self._call("update_config", key, value)
        return self._roll("config-update", lambda n: self.env[n].__setitem__(key, value))

    def rolling_restart(self, components: Any = ("node",), timeout: float | None = None) -> RollResult:
        self._call("rolling_restart")
        return self._roll("restart-rollout", lambda n: None)

    def version_of(self, name: str) -> str:
        return self.version[name]

    def rolling_upgrade(self, version: str, components: Any = (), timeout: float | None = None) -> RollResult:
        self._call("rolling_upgrade", version)
        self.previous = dict(self.version)
        return self._roll("rolling-upgrade", lambda n: self.version.__setitem__(n, version))

    def rollback(self, components: Any = (), timeout: float | None = None) -> RollResult:
        self._call("rollback")
        prev, self.previous = self.previous, {}
        return self._roll("rollback", lambda n: self.version.__setitem__(n, prev[n]))

    def rotate_postgres_password(self, reload_timeout: float | None = None,
                                 reconnect_timeout: float | None = None) -> RotationResult:
        self._call("rotate")
        return RotationResult(0.4, 2, True, True, {"node-0": True})

    def backup(self, dest: Path) -> Backup:
        self._call("backup", dest.name)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "goverse.pgdump").write_bytes(b"dump")
        return Backup(dest, None, dest / "goverse.pgdump", 1.0, 1.5, 2.0, {"pg_dump": 4})

    def wipe(self) -> dict[str, Any]:
        self._call("wipe")
        return {"killed": ["node-0"]}

    def lose_data_dir(self, component: str = "postgres") -> dict[str, Any]:
        self._call("lose_data_dir", component)
        return {"lost": component}

    def restore(self, backup: Backup, keys: Any, etcd: bool = True, postgres: bool = True,
                t_fault: float | None = None, timeout: float | None = None) -> dict[str, Any]:
        self._call("restore", etcd, postgres, list(keys), t_fault is not None)
        return {"restore_s": 3.2, "phases": {}}


class ActionsInjector:
    def __init__(self, ops: RecordingOperations) -> None:
        self.actions = OperatorActions(lambda: ops)  # type: ignore[arg-type, return-value]

    def inject(self, fault: Fault) -> Injected:
        return self.actions.handlers()[type(fault)](fault)


def run_action(fault: Fault, ops: RecordingOperations, hold: float = 0.0) -> tuple[Injected, Any]:
    rec = Recorder()
    inj = Nemesis(ActionsInjector(ops), rec).apply(fault, hold=hold)
    (w,) = rec.history().faults()
    return inj, w


def test_scale_is_a_window_whose_heal_scales_back_once() -> None:
    ops = RecordingOperations()
    inj, w = run_action(ScaleTo("node", 5), ops)
    assert ops.calls == [("scale", "node", 5), ("scale", "node", 2)]
    assert w.kind == "scale" and w.t_stop is not None and w.t_start <= w.t_stop
    assert w.params["from"] == 2 and w.result["undo"] == "scaled back to 2"
    assert inj.outcome.after == 5 and inj.undone.after == 2 and inj.healed == w.result
    assert inj.began_at is not None and inj.t_inject == w.t_start and inj.t_heal == w.t_stop


def test_config_update_heal_rolls_the_previous_value_back() -> None:
    ops = RecordingOperations()
    inj, w = run_action(UpdateConfig("LOG_LEVEL", "warn"), ops)
    assert ops.calls == [("update_config", "LOG_LEVEL", "warn"), ("update_config", "LOG_LEVEL", "info")]
    assert all(e["LOG_LEVEL"] == "info" for e in ops.env.values())
    assert w.kind == "update-config" and w.params["previous"] == "info" and inj.undone.kind == "config-update"


def test_config_update_without_a_single_previous_value_is_refused_before_anything_changes() -> None:
    ops = RecordingOperations()
    ops.env["node-1"] = {}
    rec = Recorder()
    with pytest.raises(Unsupported, match="unset on"):
        Nemesis(ActionsInjector(ops), rec).inject(UpdateConfig("LOG_LEVEL", "warn"))
    assert ops.calls == [] and rec.history().faults() == []


def test_upgrade_heal_is_the_rollback_and_rollback_heal_rolls_forward() -> None:
    ops = RecordingOperations()
    up, _ = run_action(Upgrade("B"), ops)
    assert ops.calls == [("rolling_upgrade", "B"), ("rollback",)] and set(ops.version.values()) == {"A"}
    assert up.undone.kind == "rollback"
    ops.calls.clear()
    ops.rolling_upgrade("B")
    ops.calls.clear()
    back, w = run_action(Rollback(), ops)
    assert ops.calls == [("rollback",), ("rolling_upgrade", "B")] and w.params["left"] == "B"
    assert set(ops.version.values()) == {"B"}


def test_actions_without_undo_heal_as_a_verified_no_op(tmp_path: Path) -> None:
    ops = RecordingOperations()
    _, w = run_action(RotateSecret(), ops)
    assert ops.calls == [("rotate",)] and w.result["undo"].startswith("none")
    _, w = run_action(RollingRestart(("node",)), ops)
    assert w.result["verified_running"] == ["node-0", "node-1", "gate-0", "gate-1"]
    inj, w = run_action(TakeBackup(str(tmp_path / "b")), ops)
    assert w.result["files_present"] is True and Backup.load(tmp_path / "b") == inj.outcome
    ops.calls.clear()
    _, w = run_action(Restore(str(tmp_path / "b"), ("k1",), etcd=False), ops)
    assert ops.calls == [("restore", False, True, ["k1"], False)] and w.result["undo"].startswith("none")


def test_a_verified_no_op_fails_when_the_action_did_not_leave_what_it_should(tmp_path: Path) -> None:
    ops = RecordingOperations()
    rec = Recorder()
    nem = Nemesis(ActionsInjector(ops), rec)
    fid, _ = nem.inject(TakeBackup(str(tmp_path / "b")))
    (tmp_path / "b" / "goverse.pgdump").unlink()
    with pytest.raises(PlatformError, match="vanished"):
        nem.heal(fid)
    (w,) = rec.history().faults()
    assert w.t_stop is not None and "vanished" in w.result["heal_error"]


def test_loss_heals_by_restoring_from_the_backup_with_the_fault_time(tmp_path: Path) -> None:
    ops = RecordingOperations()
    run_action(TakeBackup(str(tmp_path / "b")), ops)
    ops.calls.clear()
    inj, w = run_action(VolumeLoss("postgres", str(tmp_path / "b"), ("k1",)), ops)
    assert ops.calls == [("lose_data_dir", "postgres"), ("restore", False, True, ["k1"], True)]
    assert w.kind == "lose-volume" and w.result["restore_s"] == 3.2 and inj.undone["restore_s"] == 3.2
    ops.calls.clear()
    run_action(Wipe(str(tmp_path / "b"), ("k1",)), ops)
    assert ops.calls == [("wipe",), ("restore", True, True, ["k1"], True)]


def test_a_loss_with_no_backup_is_refused_before_anything_is_lost(tmp_path: Path) -> None:
    ops = RecordingOperations()
    with pytest.raises(FileNotFoundError, match="backup.json"):
        Nemesis(ActionsInjector(ops), Recorder()).inject(Wipe(str(tmp_path / "none")))
    assert ops.calls == []


def test_a_failing_undo_still_closes_the_window_once_and_the_final_heal_does_not_retry() -> None:
    ops = RecordingOperations(fail="rollback")
    rec = Recorder()
    nem = Nemesis(ActionsInjector(ops), rec)
    fid, _ = nem.inject(Upgrade("B"))
    with pytest.raises(PlatformError, match="rollback failed"):
        nem.heal(fid)
    nem.heal_all()
    assert ops.calls == [("rolling_upgrade", "B"), ("rollback",)]
    (w,) = rec.history().faults()
    assert w.t_stop is not None and "rollback failed" in w.result["heal_error"]


def test_an_action_left_active_is_undone_by_the_final_heal_when_the_scenario_fails() -> None:
    ops = RecordingOperations()
    rec = Recorder()
    nem = Nemesis(ActionsInjector(ops), rec)
    with pytest.raises(RuntimeError):
        nem.inject(ScaleTo("gate", 1, drain_endpoints=False))
        raise RuntimeError("the scenario failed mid-way")
    nem.heal_all()
    nem.heal_all()
    assert ops.calls == [("scale", "gate", 1), ("scale", "gate", 2)]
    assert [w.kind for w in rec.history().faults()] == ["scale"]


def test_previous_config_and_version_are_pure_and_name_what_blocks_the_undo() -> None:
    assert previous_config({"a": "info", "b": "info"}, "LOG_LEVEL") == "info"
    with pytest.raises(Unsupported, match="instances differ"):
        previous_config({"a": "info", "b": "warn"}, "LOG_LEVEL")
    with pytest.raises(Unsupported, match="no running instance"):
        previous_config({}, "LOG_LEVEL")
    assert previous_version({"node-0": "B", "gate-0": "B"}) == "B"
    with pytest.raises(Unsupported, match="no single version"):
        previous_version({"node-0": "A", "gate-0": "B"})


@pytest.mark.parametrize("fault, fail, undo", [
    (ScaleTo("node", 5), "scale", ("scale", "node", 2)),
    (UpdateConfig("LOG_LEVEL", "warn"), "update_config", ("update_config", "LOG_LEVEL", "info")),
    (Upgrade("B"), "rolling_upgrade", ("rolling_upgrade", "A")),
], ids=str)
def test_an_action_that_fails_part_way_is_undone_before_the_error_surfaces(fault, fail, undo) -> None:
    """No window was recorded (the nemesis never saw the action in effect), so no heal would run: the
    handler undoes it itself, then re-raises the action's error."""
    ops = RecordingOperations(fail=fail)
    ops.fail_once = True
    rec = Recorder()
    with pytest.raises(PlatformError, match=f"{fail} failed"):
        Nemesis(ActionsInjector(ops), rec).inject(fault)
    assert ops.calls[-1] == undo and len(ops.calls) == 2
    assert rec.history().faults() == []
