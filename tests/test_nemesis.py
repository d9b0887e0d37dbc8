"""The nemesis's bookkeeping with a recording injector (pure: no platform): each fault healed exactly
once, ``heal_all`` newest first and never raising, windows stamped at the moments of effect, the
requested and actual hold recorded, and a verification recorded with its own times outside the hold."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from harness.faults.nemesis import Injected, Nemesis
from harness.faults.spec import Fault, Kill, Pause
from harness.history import Recorder
from harness.platforms.base import Unsupported


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


def test_a_verification_still_running_at_the_heal_is_not_conclusive_and_does_not_stretch_the_window() -> None:
    inj, rec = RecordingInjector(verify_s=0.4), Recorder()
    Nemesis(inj, rec).apply(Kill("node-0"), hold=0.1)
    (w,) = rec.history().faults()
    assert w.result is not None and w.result["verification"]["conclusive"] is False
    assert w.actual_hold_s is not None and w.actual_hold_s < 0.3  # the heal did not wait for it


def test_a_negative_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="hold"):
        Nemesis(RecordingInjector(), Recorder()).apply(Kill("node-0"), hold=-1)
