"""Raw load samples written by the locust processes, and how they join the scenario's history.

Why raw samples and not locust's statistics: locust rounds response times into buckets before workers
send them to the master (two significant digits above 100 ms), so its p99 can exceed its max
(anchors §9). Every request is written by ``loadtests/locustfile.py`` from locust's request event as one
JSON line with wall-clock times; here each line becomes an ``invoke`` and a completion in the same
:class:`~harness.history.Recorder` as the probe and the nemesis, so latency percentiles, error rates,
RTO and the correctness checkers all read one merged history.

Line format (a JSON array): ``[start_wall, duration_s, f, key, type, value, result, error, gate, node,
epoch, process]`` — ``type`` is ``ok | fail | info`` by the rules of
``harness/workload/gate_client.py:classify_error``.

Op ids of merged samples start at :data:`LOAD_OP_ID_BASE` so they can never collide with the ids the
recorder hands out to the in-process workload and probe (which count up from 1).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.history import COMPLETION_TYPES, Event, Recorder

log = logging.getLogger(__name__)

LOAD_OP_ID_BASE = 1_000_000_000
SAMPLES_GLOB = "samples-*.jsonl"
USAGE_GLOB = "usage-*.jsonl"
SHAPE_GLOB = "shape-*.json"


@dataclass(frozen=True, slots=True)
class Sample:
    """One request as the generator saw it (wall-clock seconds)."""

    start: float
    duration: float
    f: str
    key: str
    type: str
    value: Any
    result: Any
    error: str | None
    gate: str | None
    node: str | None
    epoch: int | None
    process: str

    @staticmethod
    def from_row(row: list[Any]) -> Sample:
        if not isinstance(row, list) or len(row) < 12:
            raise ValueError(f"not a sample row: {row!r}")
        kind = str(row[4])
        if kind not in COMPLETION_TYPES:
            raise ValueError(f"sample type must be ok|fail|info, got {kind!r}")
        return Sample(start=float(row[0]), duration=max(0.0, float(row[1])), f=str(row[2]), key=str(row[3]),
                      type=kind, value=row[5], result=row[6], error=row[7], gate=row[8], node=row[9],
                      epoch=row[10], process=str(row[11]))


@dataclass
class SampleStats:
    """What reading a directory found: counts per file and lines that could not be parsed."""

    files: int = 0
    samples: int = 0
    bad_lines: int = 0
    first_error: str | None = None


def read_samples(directory: Path, stats: SampleStats | None = None) -> Iterator[Sample]:
    """Every sample in ``directory/samples-*.jsonl``. A torn last line (a process killed mid-write) or
    any malformed line is counted in ``stats.bad_lines``, never silently dropped."""
    stats = stats if stats is not None else SampleStats()
    for path in sorted(Path(directory).glob(SAMPLES_GLOB)):
        stats.files += 1
        yield from read_samples_file(path, stats)


def read_samples_file(path: Path, stats: SampleStats) -> Iterator[Sample]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                s = Sample.from_row(json.loads(line))
            except (ValueError, TypeError) as exc:
                stats.bad_lines += 1
                stats.first_error = stats.first_error or f"{path.name}: {exc}"
                continue
            stats.samples += 1
            yield s


def completeness(directory: Path) -> list[dict[str, Any]]:
    """Per generator process: samples read back vs the count the process announced when it quit
    (its ``quit`` usage event; for a worker that outlives the run, its last ``test_stop``).
    ``problem`` is set when a process never announced (killed, crashed: up to a second of samples may
    be missing) or the counts differ or lines were malformed."""
    out = []
    directory = Path(directory)
    for path in sorted(directory.glob(SAMPLES_GLOB)):
        proc = path.stem.removeprefix("samples-")
        st = SampleStats(files=1)
        for _ in read_samples_file(path, st):
            pass
        announced = stopped = None
        usage = directory / f"usage-{proc}.jsonl"
        if usage.is_file():
            for line in usage.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    d = json.loads(line)
                    if isinstance(d, dict) and d.get("event") == "quit":
                        announced = d.get("samples")
                    elif isinstance(d, dict) and d.get("event") == "test_stop":
                        stopped = d.get("samples")
        if announced is None:
            announced = stopped  # a long-lived (in-cluster) worker announces at the end of each run
        problem = None
        if announced is None:
            problem = f"{proc} never announced its sample count (killed or crashed): recent samples may be missing"
        elif int(announced) != st.samples:
            problem = f"{proc} announced {announced} samples, {st.samples} read back"
        if st.bad_lines:
            problem = (problem + "; " if problem else "") + f"{st.bad_lines} malformed line(s): {st.first_error}"
        out.append({"process": proc, "files": 1, "samples": st.samples, "announced": announced, "problem": problem})
    return out


def read_usage(directory: Path) -> list[dict[str, Any]]:
    """locust's usage-monitor rows (``{"t", "cpu", "rss", "role"}``) and events (``cpu_warning``,
    ``init``, ``quitting``) from every process, in time order."""
    rows: list[dict[str, Any]] = []
    for path in sorted(Path(directory).glob(USAGE_GLOB)):
        proc = path.stem.removeprefix("usage-")
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(d, dict) and "t" in d:
                d.setdefault("process", proc)
                rows.append(d)
    rows.sort(key=lambda d: float(d["t"]))
    return rows


def read_shape_start(directory: Path) -> dict[str, Any] | None:
    """The master's (or local runner's) shape marker: ``{"t0_wall", "shape", "user_rate", ...}``."""
    found = sorted(Path(directory).glob(SHAPE_GLOB))
    if not found:
        return None
    try:
        return json.loads(found[0].read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


class SampleMerger:
    """Turns samples into history events on a recorder's clock, with op ids of its own range."""

    def __init__(self, recorder: Recorder, first_id: int = LOAD_OP_ID_BASE + 1) -> None:
        self.recorder = recorder
        self._ids = itertools.count(first_id)

    def events(self, s: Sample) -> tuple[Event, Event]:
        op_id = next(self._ids)
        t0 = self.recorder.from_wall(s.start)
        extra: dict[str, Any] = {}
        if s.gate:
            extra["gate"] = s.gate
        if s.node:
            extra["node"] = s.node
        if s.epoch is not None:
            extra["epoch"] = s.epoch
        invoke = Event(t=t0, type="invoke", process=s.process, f=s.f, key=s.key, value=s.value, op_id=op_id,
                       node=s.gate)
        done = Event(t=t0 + s.duration, type=s.type, process=s.process, f=s.f, key=s.key, value=s.result,
                     op_id=op_id, error=None if s.type == "ok" else (s.error or "unknown error"), node=s.gate,
                     extra=extra or None)
        return invoke, done

    def merge(self, samples: Iterator[Sample] | list[Sample]) -> int:
        n = 0
        for s in samples:
            for ev in self.events(s):
                self.recorder.add(ev)
            n += 1
        return n
