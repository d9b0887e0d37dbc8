"""One merged, timestamped history of everything a scenario did and saw.

Why one history: checkers, RTO and latency must all be computed from the same record of client
operations, nemesis actions and oracle samples (Jepsen's model), so a verdict can be re-derived offline
from `history.jsonl` alone.

Event types (field ``type``):
- ``invoke`` then exactly one of ``ok`` (it happened), ``fail`` (it definitely did not happen) or
  ``info`` (unknown: e.g. a timeout; it may or may not have happened) — paired by ``op_id``.
- ``nemesis`` with ``f`` = ``start`` | ``stop``: a fault or operation window; ``value`` holds
  ``{"id", "kind", "target", "params"}``; ``start`` is t_inject, ``stop`` is t_heal.
- ``sample``: an oracle's observation of cluster state (``f`` names the oracle, ``value`` its data).
- ``log``: a free-form note (e.g. "stack converged") that a reader of the timeline should see.

Times (``t``) are seconds on the monotonic clock since the recorder was created; the header line maps
that origin to wall-clock time once (``t0_wall``) so clock steps during a run cannot corrupt durations.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "goverse-harness/history/v1"
NO_COMPLETION = "no completion recorded"  # the error of an op still in flight when the history was read
CLIENT_TYPES = frozenset({"invoke", "ok", "fail", "info"})
COMPLETION_TYPES = frozenset({"ok", "fail", "info"})
EVENT_TYPES = CLIENT_TYPES | {"nemesis", "sample", "log"}


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the history. Unused fields stay ``None``."""

    t: float
    type: str
    process: str
    f: str
    key: str | None = None
    value: Any = None
    op_id: int | None = None
    error: str | None = None
    node: str | None = None  # instance that served / was targeted, when known (e.g. "gate-0")
    extra: dict[str, Any] | None = None  # e.g. {"gate": "gate-0", "node": "node-1", "epoch": 42}

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, separators=(",", ":"))

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Event:
        return Event(
            t=float(d["t"]),
            type=d["type"],
            process=str(d.get("process", "")),
            f=d.get("f", ""),
            key=d.get("key"),
            value=d.get("value"),
            op_id=d.get("op_id"),
            error=d.get("error"),
            node=d.get("node"),
            extra=d.get("extra"),
        )


@dataclass(frozen=True, slots=True)
class Op:
    """A client operation: its invocation paired with its completion (``type`` of the completion,
    or ``info`` if the history ended before it completed)."""

    op_id: int
    process: str
    f: str
    key: str | None
    value: Any  # the invoked value (e.g. increment amount)
    result: Any  # the completion's value (e.g. the read value)
    type: str  # ok | fail | info
    t_invoke: float
    t_complete: float
    error: str | None = None
    node: str | None = None
    extra: dict[str, Any] | None = None

    @property
    def latency_s(self) -> float:
        return self.t_complete - self.t_invoke


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """A nemesis window: when a fault (or an operation such as a scale step) was applied and healed."""

    id: str
    kind: str
    target: Any
    params: dict[str, Any]
    t_start: float
    t_stop: float | None  # None: never healed within the history
    result: dict[str, Any] | None = None  # what the heal reported (the stop event's ``result``)

    @property
    def requested_hold_s(self) -> float | None:
        """How long the scenario asked the fault to hold (``Nemesis.apply``), if it said."""
        v = self.params.get("requested_hold_s")
        return float(v) if v is not None else None

    @property
    def actual_hold_s(self) -> float | None:
        """t_heal − t_inject: from the moment the fault was in effect to the moment it was gone."""
        return None if self.t_stop is None else round(self.t_stop - self.t_start, 6)


def _op(inv: Event, **completion: Any) -> Op:
    """The op of invocation ``inv``, completed as ``completion`` says (result, type, t_complete, error,
    node and, when there is one, extra)."""
    return Op(op_id=inv.op_id or 0, process=inv.process, f=inv.f, key=inv.key, value=inv.value, t_invoke=inv.t,
              **completion)


@dataclass
class History:
    """An immutable-by-convention list of events plus the run-clock origin."""

    events: list[Event]
    t0_wall: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    @property
    def end(self) -> float:
        return self.events[-1].t if self.events else 0.0

    def ops(self, f: str | Iterable[str] | None = None, process_prefix: str | None = None) -> list[Op]:
        """Pair invocations with completions. An invocation with no completion becomes ``info``
        (its outcome is unknown) completing at the end of the history."""
        wanted = None if f is None else ({f} if isinstance(f, str) else set(f))
        pending: dict[int, Event] = {}
        out: list[Op] = []
        for ev in self.events:
            if ev.type not in CLIENT_TYPES or ev.op_id is None:
                continue
            if wanted is not None and ev.f not in wanted:
                continue
            if process_prefix is not None and not ev.process.startswith(process_prefix):
                continue
            if ev.type == "invoke":
                pending[ev.op_id] = ev
                continue
            inv = pending.pop(ev.op_id, None)
            if inv is None:
                continue
            out.append(_op(inv, result=ev.value, type=ev.type, t_complete=ev.t, error=ev.error,
                           node=ev.node or inv.node, extra=ev.extra))
        for inv in pending.values():
            out.append(_op(inv, result=None, type="info", t_complete=self.end, error=NO_COMPLETION, node=inv.node))
        out.sort(key=lambda o: (o.t_invoke, o.op_id))
        return out

    def faults(self) -> list[FaultWindow]:
        """Nemesis windows in start order; a start without a stop has ``t_stop=None``."""
        starts: dict[str, Event] = {}
        out: list[FaultWindow] = []
        order: list[str] = []
        stops: dict[str, float] = {}
        results: dict[str, dict[str, Any]] = {}
        for ev in self.events:
            if ev.type != "nemesis" or not isinstance(ev.value, dict):
                continue
            fid = str(ev.value.get("id"))
            if ev.f == "start":
                starts[fid] = ev
                order.append(fid)
            elif ev.f == "stop":
                stops[fid] = ev.t
                if isinstance(ev.value.get("result"), dict):
                    results[fid] = ev.value["result"]
        for fid in order:
            ev = starts[fid]
            v = ev.value
            out.append(
                FaultWindow(
                    id=fid,
                    kind=str(v.get("kind")),
                    target=v.get("target"),
                    params=dict(v.get("params") or {}),
                    t_start=ev.t,
                    t_stop=stops.get(fid),
                    result=results.get(fid),
                )
            )
        return out

    def samples(self, f: str) -> list[Event]:
        return [e for e in self.events if e.type == "sample" and e.f == f]

    # ---- persistence -------------------------------------------------------------------------
    def dump(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({"schema": SCHEMA, "t0_wall": self.t0_wall, "meta": self.meta}) + "\n")
            for ev in self.events:
                fh.write(ev.to_json() + "\n")

    @staticmethod
    def load(path: Path) -> History:
        return History.parse(Path(path).read_text(encoding="utf-8").splitlines())

    @staticmethod
    def parse(lines: Iterable[str]) -> History:
        events: list[Event] = []
        t0_wall = 0.0
        meta: dict[str, Any] = {}
        for line in lines:
            if not line.strip():
                continue
            d = json.loads(line)
            if "schema" in d:
                t0_wall = float(d.get("t0_wall", 0.0))
                meta = dict(d.get("meta") or {})
                continue
            events.append(Event.from_dict(d))
        events.sort(key=lambda e: e.t)
        return History(events=events, t0_wall=t0_wall, meta=meta)


class Recorder:
    """Thread-safe appender of events on one monotonic clock; optionally streams to a JSONL file.

    Clients call :meth:`invoke` and then :meth:`complete` with the returned op id; the nemesis calls
    :meth:`nemesis_start` / :meth:`nemesis_stop`; oracles call :meth:`sample`. External sources (a load
    generator in another process) can append already-timed events with :meth:`add` using
    :meth:`now` or :meth:`from_wall` to convert their clocks.
    """

    def __init__(self, path: Path | None = None, meta: dict[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self.t0_wall = time.time()
        self._ids = itertools.count(1)
        self._fault_ids = itertools.count(1)
        self._events: list[Event] = []
        self.meta = dict(meta or {})
        self._fh = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self._fh.write(json.dumps({"schema": SCHEMA, "t0_wall": self.t0_wall, "meta": self.meta}) + "\n")

    def now(self) -> float:
        return time.monotonic() - self._t0

    def from_wall(self, wall: float) -> float:
        """Map a wall-clock timestamp (e.g. from another process) onto the run clock."""
        return wall - self.t0_wall

    def add(self, ev: Event) -> Event:
        with self._lock:
            self._events.append(ev)
            if self._fh is not None:
                self._fh.write(ev.to_json() + "\n")
        return ev

    def invoke(self, process: str, f: str, key: str | None = None, value: Any = None,
               node: str | None = None) -> int:
        op_id = next(self._ids)
        self.add(Event(t=self.now(), type="invoke", process=process, f=f, key=key, value=value,
                       op_id=op_id, node=node))
        return op_id

    def complete(self, op_id: int, type_: str, process: str, f: str, key: str | None = None,
                 value: Any = None, error: str | None = None, node: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        if type_ not in COMPLETION_TYPES:
            raise ValueError(f"completion type must be one of {sorted(COMPLETION_TYPES)}, got {type_!r}")
        self.add(Event(t=self.now(), type=type_, process=process, f=f, key=key, value=value,
                       op_id=op_id, error=error, node=node, extra=extra))

    def nemesis_start(self, kind: str, target: Any = None, params: dict[str, Any] | None = None,
                      t: float | None = None) -> str:
        """Record t_inject (``t``: a time already taken on this clock, else now)."""
        fid = f"f{next(self._fault_ids)}"
        self.add(Event(t=self.now() if t is None else t, type="nemesis", process="nemesis", f="start",
                       value={"id": fid, "kind": kind, "target": target, "params": params or {}}))
        return fid

    def nemesis_stop(self, fault_id: str, kind: str, target: Any = None,
                     result: dict[str, Any] | None = None, t: float | None = None) -> None:
        """Record t_heal (``t``: taken when the fault was gone, e.g. before a verification was joined)."""
        self.add(Event(t=self.now() if t is None else t, type="nemesis", process="nemesis", f="stop",
                       value={"id": fault_id, "kind": kind, "target": target, "result": result or {}}))

    def sample(self, f: str, value: Any, process: str = "oracle") -> None:
        self.add(Event(t=self.now(), type="sample", process=process, f=f, value=value))

    def log(self, message: str, **value: Any) -> None:
        self.add(Event(t=self.now(), type="log", process="harness", f=message, value=value or None))

    def history(self) -> History:
        with self._lock:
            events = sorted(self._events, key=lambda e: e.t)
        return History(events=events, t0_wall=self.t0_wall, meta=dict(self.meta))

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
