"""The recorded-style test histories: generated deterministically, well formed, and faithful to the
conventions the workload uses (so checker tests exercise the shapes real runs produce)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.history import COMPLETION_TYPES, History
from tests.support.histories import make_histories
from tests.support.paths import DATA

GEN = make_histories()


@pytest.mark.parametrize("name", sorted(GEN.HISTORIES))
def test_committed_history_equals_what_the_generator_writes(name: str, tmp_path: Path) -> None:
    out = tmp_path / f"{name}.jsonl"
    GEN.HISTORIES[name]().dump(out)
    committed = DATA / "histories" / f"{name}.jsonl"
    assert committed.read_bytes() == out.read_bytes(), "run: python tests/data/make_histories.py"


@pytest.mark.parametrize("name", sorted(GEN.HISTORIES))
def test_history_is_well_formed(name: str) -> None:
    h = History.load(DATA / "histories" / f"{name}.jsonl")
    invoked: dict[int, float] = {}
    completed: set[int] = set()
    for e in h.events:
        if e.type == "invoke":
            assert e.op_id not in invoked
            invoked[e.op_id] = e.t
        elif e.type in COMPLETION_TYPES:
            assert e.op_id in invoked and e.t > invoked[e.op_id]
            assert e.op_id not in completed
            completed.add(e.op_id)
            if e.type == "ok" and e.extra is not None:
                assert e.extra["gate"] == e.node and e.extra["node"].startswith("node-")
    assert completed == set(invoked)
    assert all(p.startswith(("probe-", "client-")) for p in {op.process for op in h.ops()})
    assert len(h.faults()) == 1 and h.faults()[0].t_stop is not None
    assert h.t0_wall > 0 and h.meta["generator"] == "tests/data/make_histories.py"


def test_probe_runs_at_20_hz_over_32_keys() -> None:
    h = History.load(DATA / "histories" / "kill_node_recovers.jsonl")
    probes = h.ops("probe")
    assert len(probes) == 600  # 30 s × 20 Hz
    assert len({p.key for p in probes}) == 32
    failed_keys = {p.key for p in probes if p.type != "ok"}
    assert len(failed_keys) == 11  # node-1 owns a third of the keys
