"""What every platform's fault interpreter shares: dispatch through the typed handler table, operator
actions through the ``Operations`` contract, and the heal that starts killed instances again.

Why a base class: the local and Kubernetes interpreters differ in *how* they apply a fault (processes
and namespaces here, pods and Chaos Mesh there), not in how a fault reaches its handler, how a kind
the platform lacks becomes ``Unsupported`` before anything is applied, or how a scenario hands over
its ``Operations``; those were two copies that could drift (one platform's dispatch message, one's
binding of operations).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from harness.faults.handlers import Handler, Handlers, handler_table
from harness.faults.nemesis import Injected
from harness.faults.outcomes import KillHealed, PauseHealed
from harness.platforms.actions import OperationsSource, OperatorActions
from harness.platforms.base import Unsupported

if TYPE_CHECKING:
    from harness.faults.spec import Fault
    from harness.platforms.operations import Operations


class Interpreter:
    """A platform's fault interpreter: subclasses set ``platform`` and ``actions`` and return their own
    handlers from :meth:`fault_handlers`; operator actions are merged in from ``actions``."""

    platform: ClassVar[str]
    actions: OperatorActions

    def use_operations(self, ops: Operations | OperationsSource) -> None:
        """Carry out operator actions with ``ops`` (or a factory of them): the scenario's, recording
        into its history and publishing gates to its workload."""
        if callable(ops):
            self.actions.use_source(ops)
        else:
            self.actions.use(ops)

    def fault_handlers(self) -> Handlers:
        """The kinds this platform applies itself, spelled out (a renamed method cannot silently drop a
        kind); the typed table holds each to its kind's outcome records (``faults/handlers.py``)."""
        raise NotImplementedError

    def handlers(self) -> dict[type[Fault], Handler]:
        """Fault type -> handler: this platform's own, then the operator actions (the same everywhere)."""
        return {**handler_table(self.fault_handlers()), **self.actions.handlers()}

    def inject(self, fault: Fault) -> Injected[Any, Any]:
        handler = self.handlers().get(type(fault))
        if handler is None:
            raise Unsupported(f"the {self.platform} platform cannot apply {fault.kind!r} faults")
        return handler(fault)


def start_again(targets: list[str], start: Callable[[str], object]) -> Callable[[], KillHealed]:
    """The heal of a kill or a stop: start each target again (a process, a pod brought back)."""
    def heal() -> KillHealed:
        for t in targets:
            start(t)
        return {"restarted": targets}
    return heal


def pause_all(targets: list[str], pause: Callable[[str], object],
              resume: Callable[[str], object]) -> Callable[[], PauseHealed]:
    """Pause each target (a process stopped, a pod's cgroup frozen); if one cannot be paused, resume
    those already paused before the error surfaces (the nemesis never saw the fault, so no heal would).
    Returns the heal: resume them all, ``{"resumed": targets}``."""
    paused: list[str] = []
    try:
        for t in targets:
            pause(t)
            paused.append(t)
    except BaseException:
        for t in paused:
            resume(t)
        raise

    def heal() -> PauseHealed:
        for t in paused:
            resume(t)
        return {"resumed": paused}
    return heal
