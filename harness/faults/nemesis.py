"""The nemesis: applies faults (data, see ``spec.py``) through a platform injector and records them.

Why a separate runner: scenarios say *what* fault and for how long; the injector says *how* on this
platform; the runner owns the bookkeeping that must never be skipped — a ``nemesis start`` event when the
fault has taken effect (t_inject: the injector returned), a ``stop`` event when it is gone (t_heal: the
heal returned), and a final heal of everything still active even when the scenario fails or is
interrupted (Jepsen's final generator).

Timing (docs/faults.md "Fault windows"): ``apply(fault, hold)`` starts the heal at t_inject + hold − lead,
where the lead is the heal's expected duration (the last heal of the same kind by this nemesis, none
for a kind's first window; at most ``HEAL_LEAD_CAP_S``), so that t_heal — the moment the fault is gone — lands on the
hold asked for instead of one heal later. The start event's params carry
``requested_hold_s`` and ``apply_began_at`` (the effect began somewhere in [apply_began_at, t_inject]);
the stop event's result carries ``actual_hold_s`` = t_heal − t_inject and ``heal_began_at``. Evidence
that a fault bites (``Injected.verify``: a connect that must time out) runs on its own thread while the
fault holds and is recorded with its own timestamps (``result["verification"]``), never inside the hold.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from harness.faults.spec import Fault
from harness.history import Recorder

log = logging.getLogger(__name__)

# The most a heal is started ahead of t_inject + hold: enough for an nft transaction in every namespace
# (~20-70 ms), never so much that a slow heal (a restart, a rollback: seconds) shortens the fault.
HEAL_LEAD_CAP_S = 0.1

D = TypeVar("D", bound=Mapping[str, Any])
H = TypeVar("H", bound=Mapping[str, Any])


@dataclass
class Injected(Generic[D, H]):
    """What an injector did: the instances actually hit, how to undo it, and optionally how to show
    that it bites (``verify``, run by the nemesis while the fault holds; it must not change the fault).

    ``outcome`` is the typed result of the action where it has one (an operator action's
    ``ScaleStep``, ``RollResult``, ``Backup``…; the scenario reads it), ``undone`` the typed result of
    its heal (e.g. the rollback that undid an upgrade; set by the heal). The nemesis fills the rest
    on the history clock: ``began_at`` (the application began), ``t_inject``, ``t_heal`` and
    ``healed`` (the heal result as recorded in the stop event, also when the heal raised).

    ``D`` and ``H`` are the fault kind's outcome records (``harness/faults/outcomes.py``: what the start
    event's params gain, what the heal returns), the same on every platform."""

    targets: list[str]
    heal: Callable[[], H | None]
    detail: D = field(default_factory=dict)  # type: ignore[assignment]
    verify: Callable[[], Mapping[str, Any]] | None = None
    outcome: Any = None
    undone: Any = None
    began_at: float | None = None
    t_inject: float | None = None
    t_heal: float | None = None
    healed: dict[str, Any] | None = None


class _Verification:
    """``Injected.verify`` on its own thread, with its own start and end times on the history clock."""

    def __init__(self, verify: Callable[[], Mapping[str, Any]], now: Callable[[], float]) -> None:
        self._verify = verify
        self._now = now
        self.started_at = 0.0
        self.ended_at: float | None = None
        self.result: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, name="nemesis-verify", daemon=True)

    def start(self) -> _Verification:
        self.started_at = self._now()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.result = dict(self._verify())
        except Exception as exc:  # noqa: BLE001 - evidence failing is reported, never raised
            self.result = {"error": repr(exc)[:300]}
        self.ended_at = self._now()

    def finish(self, t_heal: float, timeout: float = 10.0) -> dict[str, Any]:
        """Join (after the heal: waiting costs the window nothing). ``conclusive`` is False when it did
        not end before the heal, since its outcome may then describe the healed state."""
        self._thread.join(timeout)
        ended = self.ended_at
        return {**self.result, "started_at": round(self.started_at, 6),
                "ended_at": None if ended is None else round(ended, 6),
                "conclusive": ended is not None and ended <= t_heal}


@dataclass
class _Active:
    fault: Fault
    injected: Injected[Any, Any]
    t_inject: float
    requested_hold_s: float | None
    verification: _Verification | None
    heal_lead_s: float | None = None


class Injector(Protocol):
    """Per-platform fault application. ``inject`` raises ``Unsupported`` for what it cannot do."""

    def inject(self, fault: Fault) -> Injected[Any, Any]: ...


@runtime_checkable
class Prepares(Protocol):
    """An injector that sets part of a fault up before the before-inject hooks run (e.g. holding
    PostgreSQL's replies before a burst of writes and the kill); ``inject`` finishes it and must undo
    the preparation whatever happens, and :meth:`unprepare` undoes it when ``inject`` is never reached."""

    def prepare(self, fault: Fault) -> None: ...

    def unprepare(self, fault: Fault) -> None: ...


class Nemesis:
    """Applies faults and guarantees each is healed exactly once."""

    def __init__(self, injector: Injector, recorder: Recorder) -> None:
        self.injector = injector
        self.recorder = recorder
        self._active: dict[str, _Active] = {}
        self._lock = threading.Lock()
        # Called with each fault right before it is applied (workload aimed at the fault: a burst of
        # writes in flight at every t_inject, see Workload.burst). A hook that raises is logged and
        # skipped: the fault is what the scenario asked for, the burst only sharpens it.
        self.before_inject: list[Callable[[Fault], Any]] = []
        self._heal_s: dict[str, float] = {}  # fault kind -> how long its last heal took

    @contextlib.contextmanager
    def fault(self, fault: Fault) -> Iterator[Injected[Any, Any]]:
        """Inject on enter, heal on exit (also on exceptions and Ctrl-C). The hold is the block's
        length; prefer :meth:`apply` when the scenario knows it (the history then records it)."""
        fid, injected = self.inject(fault)
        try:
            yield injected
        finally:
            self.heal(fid)

    def inject(self, fault: Fault, hold_s: float | None = None) -> tuple[str, Injected[Any, Any]]:
        """Apply ``fault``; t_inject is stamped when the injector returns (the fault is in effect)."""
        prepares = self.injector if isinstance(self.injector, Prepares) else None
        if prepares is not None:
            prepares.prepare(fault)
        try:
            for hook in list(self.before_inject):
                try:
                    hook(fault)
                except Exception:  # noqa: BLE001 - see before_inject
                    log.exception("nemesis: before-inject hook %r failed", hook)
            began = self.recorder.now()
        except BaseException:
            if prepares is not None:
                prepares.unprepare(fault)
            raise
        injected = self.injector.inject(fault)
        t_inject = self.recorder.now()
        injected.began_at, injected.t_inject = began, t_inject
        rec = fault.record()
        params = {**rec["params"], "fault": str(fault), **injected.detail, "apply_began_at": round(began, 6)}
        if hold_s is not None:
            params["requested_hold_s"] = hold_s
        fid = self.recorder.nemesis_start(fault.kind, target=injected.targets or rec["target"], params=params,
                                          t=t_inject)
        verification = (_Verification(injected.verify, self.recorder.now).start()
                        if injected.verify is not None else None)
        with self._lock:
            self._active[fid] = _Active(fault, injected, t_inject, hold_s, verification)
        log.info("nemesis: injected %s on %s", fault, injected.targets)
        return fid, injected

    def heal(self, fid: str) -> None:
        """Heal once; t_heal is stamped when the heal returns (the fault is gone), then any
        verification still running is joined and recorded with its own times."""
        with self._lock:
            entry = self._active.pop(fid, None)
        if entry is None:
            return
        began = self.recorder.now()
        result: Mapping[str, Any] | None = None
        try:
            result = entry.injected.heal()
        except BaseException as exc:
            result = {"heal_error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            raise
        finally:
            t_heal = self.recorder.now()
            self._heal_s[entry.fault.kind] = t_heal - began
            out: dict[str, Any] = dict(result or {})
            out["heal_began_at"] = round(began, 6)
            out["actual_hold_s"] = round(t_heal - entry.t_inject, 6)
            if entry.requested_hold_s is not None:
                out["requested_hold_s"] = entry.requested_hold_s
            if entry.heal_lead_s is not None:
                out["heal_lead_s"] = round(entry.heal_lead_s, 6)
            if entry.verification is not None:
                out["verification"] = entry.verification.finish(t_heal)
            entry.injected.t_heal, entry.injected.healed = t_heal, out
            self.recorder.nemesis_stop(fid, entry.fault.kind, target=entry.injected.targets, result=out, t=t_heal)
            log.info("nemesis: healed %s", entry.fault)

    def apply(self, fault: Fault, hold: float) -> Injected[Any, Any]:
        """Inject, keep the fault until t_inject + ``hold``, heal. The hold is time as the subject."""
        if hold < 0:
            raise ValueError(f"hold must be >= 0 seconds, got {hold}")
        fid, injected = self.inject(fault, hold_s=hold)
        try:
            with self._lock:
                entry = self._active.get(fid)
            t_inject = entry.t_inject if entry is not None else self.recorder.now()
            lead = min(HEAL_LEAD_CAP_S, self._heal_s.get(fault.kind, 0.0))
            if entry is not None:
                entry.heal_lead_s = lead
            remaining = t_inject + hold - lead - self.recorder.now()
            if remaining > 0:
                threading.Event().wait(remaining)  # sleep-ok: the fault's duration is what is being tested
        finally:
            self.heal(fid)
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
