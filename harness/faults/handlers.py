"""The typed handler table every platform's fault interpreter fills: fault kind -> its handler.

Why a TypedDict and not ``dict[type[Fault], Callable]``: the value type ties each kind to its outcome
records (``harness/faults/outcomes.py``), so mypy rejects a handler that returns another shape on one
platform (a ``Kill`` handler must return ``Injected[KillDetail, KillHealed]`` on every platform). A
kind a platform lacks is simply left out (``total=False``): ``handler_table`` then has no entry and the
interpreter raises ``Unsupported`` before anything is applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict, cast

from harness.faults.nemesis import Injected
from harness.faults.outcomes import (
    CpuDetail,
    CpuHealed,
    DiskDetail,
    DiskHealed,
    KillDetail,
    KillHealed,
    LinkDetail,
    LinkHealed,
    MemoryDetail,
    MemoryHealed,
    PartitionDetail,
    PartitionHealed,
    PauseDetail,
    PauseHealed,
    RestartDetail,
    RestartHealed,
)
from harness.faults.spec import (
    CpuStress,
    DiskFault,
    Fault,
    Kill,
    Latency,
    MemoryPressure,
    Partition,
    Pause,
    Reset,
    Restart,
    Timeout,
)


class Handlers(TypedDict, total=False):
    """One entry per fault kind a platform applies itself (operator actions come from
    ``harness/platforms/actions.py``, the same on every platform)."""

    kill: Callable[[Kill], Injected[KillDetail, KillHealed]]
    restart: Callable[[Restart], Injected[RestartDetail, RestartHealed]]
    pause: Callable[[Pause], Injected[PauseDetail, PauseHealed]]
    partition: Callable[[Partition], Injected[PartitionDetail, PartitionHealed]]
    latency: Callable[[Latency], Injected[LinkDetail, LinkHealed]]
    timeout: Callable[[Timeout], Injected[LinkDetail, LinkHealed]]
    reset: Callable[[Reset], Injected[LinkDetail, LinkHealed]]
    cpu_stress: Callable[[CpuStress], Injected[CpuDetail, CpuHealed]]
    memory_pressure: Callable[[MemoryPressure], Injected[MemoryDetail, MemoryHealed]]
    disk: Callable[[DiskFault], Injected[DiskDetail, DiskHealed]]


FAULT_TYPES: dict[str, type[Fault]] = {
    "kill": Kill, "restart": Restart, "pause": Pause, "partition": Partition, "latency": Latency,
    "timeout": Timeout, "reset": Reset, "cpu_stress": CpuStress, "memory_pressure": MemoryPressure,
    "disk": DiskFault,
}
"""``Handlers`` key -> the fault type it handles (checked against ``Handlers`` by a test)."""

Handler = Callable[[Any], Injected[Any, Any]]


def handler_table(handlers: Handlers) -> dict[type[Fault], Handler]:
    """The dispatch table: fault type -> handler, from the typed entries."""
    return {FAULT_TYPES[kind]: cast(Handler, h) for kind, h in handlers.items()}
