"""Raw locust samples join the scenario's history: clocks mapped once, op ids of their own, nothing
dropped silently (torn lines and missing end-of-run markers are reported)."""

from __future__ import annotations

import json
from pathlib import Path

from harness.history import Recorder
from harness.load.samples import (
    LOAD_OP_ID_BASE,
    SampleMerger,
    SampleStats,
    completeness,
    read_samples,
    read_shape_start,
    read_usage,
)


def write_rows(path: Path, rows: list[list], tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail, encoding="utf-8")


def row(start: float, dur: float, kind: str = "ok", f: str = "increment", result: object = 3) -> list:
    return [start, dur, f, "lt-ctr-1", kind, 2, result, None if kind == "ok" else "CALL_TIMEOUT: x", "gate-1",
            "node-2", 7, "load-99-1"]


def test_samples_become_invoke_and_completion_on_the_recorder_clock(tmp_path: Path) -> None:
    rec = Recorder()
    rec.invoke("probe-0", "probe")  # the recorder's own ids count from 1
    t0 = rec.t0_wall
    write_rows(tmp_path / "samples-worker-1.jsonl", [row(t0 + 1.0, 0.25), row(t0 + 2.0, 1.5, "info", result=None)])
    stats = SampleStats()
    n = SampleMerger(rec).merge(read_samples(tmp_path, stats))
    assert n == 2 and stats.files == 1 and stats.bad_lines == 0
    ops = [o for o in rec.history().ops() if o.process.startswith("load-")]
    assert [o.op_id for o in ops] == [LOAD_OP_ID_BASE + 1, LOAD_OP_ID_BASE + 2]
    a, b = ops
    assert abs(a.t_invoke - 1.0) < 1e-6 and abs(a.latency_s - 0.25) < 1e-6
    assert (a.type, a.f, a.key, a.value, a.result, a.node) == ("ok", "increment", "lt-ctr-1", 2, 3, "gate-1")
    assert a.extra == {"gate": "gate-1", "node": "node-2", "epoch": 7} and a.error is None
    assert b.type == "info" and b.error == "CALL_TIMEOUT: x"


def test_torn_and_malformed_lines_are_counted_not_hidden(tmp_path: Path) -> None:
    write_rows(tmp_path / "samples-worker-1.jsonl", [row(1, 0.1), ["short"], row(2, 0.1, "weird")],
               tail='[3, 0.1, "incr')
    stats = SampleStats()
    got = list(read_samples(tmp_path, stats))
    assert len(got) == 1 and stats.bad_lines == 3 and "samples-worker-1.jsonl" in (stats.first_error or "")


def test_completeness_compares_with_the_quit_marker(tmp_path: Path) -> None:
    write_rows(tmp_path / "samples-worker-1.jsonl", [row(1, 0.1), row(2, 0.1)])
    write_rows(tmp_path / "samples-worker-2.jsonl", [row(1, 0.1)])
    write_rows(tmp_path / "samples-worker-3.jsonl", [row(1, 0.1)])
    (tmp_path / "usage-worker-1.jsonl").write_text(json.dumps({"t": 5, "event": "quit", "samples": 2}) + "\n")
    (tmp_path / "usage-worker-2.jsonl").write_text(json.dumps({"t": 5, "event": "quit", "samples": 4}) + "\n")
    (tmp_path / "usage-worker-3.jsonl").write_text(json.dumps({"t": 1, "cpu": 20.0, "role": "worker"}) + "\n")
    rec = {r["process"]: r for r in completeness(tmp_path)}
    assert rec["worker-1"]["problem"] is None
    assert "announced 4 samples, 1 read back" in rec["worker-2"]["problem"]
    assert "never announced" in rec["worker-3"]["problem"]


def test_usage_and_shape_marker(tmp_path: Path) -> None:
    (tmp_path / "usage-master-1.jsonl").write_text(
        json.dumps({"t": 2, "cpu": 1.0, "role": "master"}) + "\n" + "not json\n"
        + json.dumps({"t": 1, "cpu": 50.0, "role": "worker:abc"}) + "\n")
    rows = read_usage(tmp_path)
    assert [r["t"] for r in rows] == [1, 2] and rows[0]["process"] == "master-1"
    assert read_shape_start(tmp_path) is None
    (tmp_path / "shape-1.json").write_text(json.dumps({"t0_wall": 123.5, "shape": "steady:rate=1"}))
    assert read_shape_start(tmp_path)["t0_wall"] == 123.5


def test_a_long_lived_worker_announces_at_test_stop(tmp_path: Path) -> None:
    """In-cluster workers outlive a run: their last ``test_stop`` count stands in for ``quit``."""
    write_rows(tmp_path / "samples-worker-1.jsonl", [row(1, 0.1), row(2, 0.1)])
    (tmp_path / "usage-worker-1.jsonl").write_text(
        json.dumps({"t": 3, "event": "test_stop", "samples": 1}) + "\n"
        + json.dumps({"t": 5, "event": "test_stop", "samples": 2}) + "\n")
    assert completeness(tmp_path)[0]["problem"] is None
