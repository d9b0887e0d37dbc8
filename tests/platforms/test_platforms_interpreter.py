"""What both fault interpreters share (harness/platforms/interpreter.py): dispatch with an explained
Unsupported for a kind the platform lacks, and the kill and pause heals — on a recording stand-in
deployment (the real ones are exercised by tests/platforms/local/test_local_injector.py)."""

from __future__ import annotations

import pytest

from harness.faults.handlers import Handlers
from harness.faults.nemesis import Injected
from harness.faults.outcomes import KillDetail, KillHealed
from harness.faults.spec import Kill, Pause
from harness.platforms.actions import OperatorActions
from harness.platforms.base import Unsupported
from harness.platforms.interpreter import Interpreter, pause_all, start_again


class Recorded:
    def __init__(self, fail_pause: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail_pause = fail_pause

    def start(self, name: str) -> None:
        self.calls.append(f"start {name}")

    def pause(self, name: str) -> None:
        if name == self.fail_pause:
            raise OSError(f"cannot pause {name}")
        self.calls.append(f"pause {name}")

    def resume(self, name: str) -> None:
        self.calls.append(f"resume {name}")


class OnlyKills(Interpreter):
    platform = "test"

    def __init__(self, dep: Recorded) -> None:
        self.dep = dep
        self.actions = OperatorActions()

    def fault_handlers(self) -> Handlers:
        return Handlers(kill=self._kill)

    def _kill(self, fault: Kill) -> Injected[KillDetail, KillHealed]:
        targets = [fault.target]
        return Injected(targets, start_again(targets, self.dep.start), {"signal": fault.signal, "how": "test"})


def test_dispatch_reaches_the_kind_and_names_the_platform_for_a_kind_it_lacks() -> None:
    dep = Recorded()
    inj = OnlyKills(dep).inject(Kill("node-1"))
    assert inj.heal() == {"restarted": ["node-1"]} and dep.calls == ["start node-1"]
    with pytest.raises(Unsupported, match="the test platform cannot apply 'pause' faults"):
        OnlyKills(dep).inject(Pause("node-1"))


def test_pause_all_resumes_what_it_paused_when_one_cannot_be_paused() -> None:
    dep = Recorded(fail_pause="node-2")
    with pytest.raises(OSError, match="cannot pause node-2"):
        pause_all(["node-0", "node-1", "node-2"], dep.pause, dep.resume)
    assert dep.calls == ["pause node-0", "pause node-1", "resume node-0", "resume node-1"]
    ok = Recorded()
    heal = pause_all(["node-0", "node-1"], ok.pause, ok.resume)
    assert heal() == {"resumed": ["node-0", "node-1"]}
    assert ok.calls == ["pause node-0", "pause node-1", "resume node-0", "resume node-1"]
