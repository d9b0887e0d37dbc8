"""The nemesis: applies faults (data, see ``spec.py``) through a platform injector and records them.

Why a separate runner: scenarios say *what* fault and for how long; the injector says *how* on this
platform; the runner owns the bookkeeping that must never be skipped — a ``nemesis start`` event when the
fault is applied (t_inject), a ``stop`` event when healed (t_heal), and a final heal of everything still
active even when the scenario fails or is interrupted (Jepsen's final generator).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.faults.spec import Fault
from harness.history import Recorder
from harness.platforms.base import Unsupported

log = logging.getLogger(__name__)


@dataclass
class Injected:
    """What an injector did: the instances actually hit and how to undo it."""

    targets: list[str]
    heal: Callable[[], dict[str, Any] | None]
    detail: dict[str, Any] = field(default_factory=dict)


class Injector(Protocol):
    """Per-platform fault application. ``inject`` raises ``Unsupported`` for what it cannot do."""

    def inject(self, fault: Fault) -> Injected: ...


class Nemesis:
    """Applies faults and guarantees each is healed exactly once."""

    def __init__(self, injector: Injector, recorder: Recorder) -> None:
        self.injector = injector
        self.recorder = recorder
        self._active: dict[str, tuple[Fault, Injected]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def fault(self, fault: Fault) -> Iterator[Injected]:
        """Inject on enter, heal on exit (also on exceptions and Ctrl-C)."""
        fid, injected = self.inject(fault)
        try:
            yield injected
        finally:
            self.heal(fid)

    def inject(self, fault: Fault) -> tuple[str, Injected]:
        try:
            injected = self.injector.inject(fault)
        except Unsupported:
            raise
        rec = fault.record()
        fid = self.recorder.nemesis_start(fault.kind, target=injected.targets or rec["target"],
                                          params={**rec["params"], "fault": str(fault), **injected.detail})
        with self._lock:
            self._active[fid] = (fault, injected)
        log.info("nemesis: injected %s on %s", fault, injected.targets)
        return fid, injected

    def heal(self, fid: str) -> None:
        with self._lock:
            entry = self._active.pop(fid, None)
        if entry is None:
            return
        fault, injected = entry
        result: dict[str, Any] | None = None
        try:
            result = injected.heal()
        finally:
            self.recorder.nemesis_stop(fid, fault.kind, target=injected.targets, result=result)
            log.info("nemesis: healed %s", fault)

    def apply(self, fault: Fault, hold: float) -> Injected:
        """Inject, keep the fault for ``hold`` seconds, heal. The hold is time as the subject."""
        with self.fault(fault) as injected:
            threading.Event().wait(hold)  # sleep-ok: the fault's duration is what is being tested
        return injected

    def heal_all(self) -> None:
        """Final phase: heal every fault still active, newest first; never raises."""
        with self._lock:
            fids = list(self._active)[::-1]
        for fid in fids:
            try:
                self.heal(fid)
            except Exception:  # noqa: BLE001 - keep healing the others
                log.exception("nemesis: healing %s failed", fid)

    @property
    def active(self) -> list[str]:
        with self._lock:
            return list(self._active)
