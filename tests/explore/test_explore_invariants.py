"""The explorer judges readiness ⇒ serving (issue 15): ``scenarios/explore_segments.py``'s invariants
include ``ready_means_serving``, and on a crafted segment history — a kill of node-0, then after the
heal node-0 back and saying /ready 200 while it refuses the shards it claimed (the seeded bug
``ready-before-serving``) — the segment's checks fail on it and on nothing else that the history
does not show; the same history with the refusals inside the kill window passes it."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from harness.checkers.verdict import Verdict, checker_name, run_safely
from harness.history import Event, History
from harness.platforms.base import Timers
from harness.sharding import shard_of
from tests.support.paths import ROOT

SHARDS = 4
KEYS = {shard_of(k, SHARDS): k for k in (f"k{i}" for i in range(40))}


def segments() -> ModuleType:
    sys.path.insert(0, str(ROOT / "scenarios"))  # explore_segments imports chaos_checks beside it
    try:
        path = ROOT / "scenarios" / "explore_segments.py"
        spec = importlib.util.spec_from_file_location("gvh_explore_segments", path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(ROOT / "scenarios"))


def ready(t: float, inst: str, ok: bool) -> Event:
    return Event(t, "sample", "readiness", "ready", value={"instance": inst, "component": inst.split("-")[0],
                                                         "ready": ok, "reason": ""})


def history(refused_at: float) -> History:
    """node-0 owns shards 0 and 1, node-1 shards 2 and 3; node-0 is killed at 2.0 (shards move to
    node-1), healed at 4.0 (back, ready at 4.2, shards 0 and 1 rebalanced back at 4.5); calls to
    shard 0 at ``refused_at`` and just after are refused."""
    evs = [ready(0.0, "node-0", True), ready(0.0, "node-1", True), ready(0.0, "gate-0", True),
           Event(0.0, "sample", "oracle", "placement", value={"shards": SHARDS, "serving": {"node-0": [0, 1],
                                                                                           "node-1": [2, 3]}}),
           Event(2.0, "nemesis", "nemesis", "start", value={"id": "f1", "kind": "kill", "target": ["node-0"],
                                                            "params": {}}),
           ready(2.1, "node-0", False),
           Event(2.2, "sample", "oracle", "placement", value={"shards": SHARDS, "serving": {"node-1": [0, 1, 2, 3]}}),
           Event(4.0, "nemesis", "nemesis", "stop", value={"id": "f1", "kind": "kill", "target": ["node-0"]}),
           ready(4.2, "node-0", True),
           Event(4.5, "sample", "oracle", "placement", value={"shards": SHARDS, "serving": {"node-0": [0, 1],
                                                                                           "node-1": [2, 3]}})]
    for n in range(100):  # 10 s of probes on every shard
        t, op = n * 0.1, n + 1
        refused = n % SHARDS == 0 and refused_at <= t < refused_at + 1.2  # the warm-up: 1.25 s
        evs += [Event(t, "invoke", "probe-0", "probe", key=KEYS[n % SHARDS], op_id=op, node="gate-0"),
                Event(t + 0.01, "fail" if refused else "ok", "probe-0", "probe", key=KEYS[n % SHARDS], op_id=op,
                      value=None if refused else 0, extra={"gate": "gate-0"},
                      error="CALL_FAILED: shard 0 is being claimed by this node" if refused else None)]
    return History(sorted(evs, key=lambda e: e.t))


def test_explore_judges_readiness_means_serving() -> None:
    checks = segments().invariants(Timers(), faulted=True)
    names = [checker_name(c) for c in checks]
    assert "ready_means_serving" in names
    rms = checks[names.index("ready_means_serving")]
    # refused after the heal and the rebalance, node-0 said ready from 4.2: caught
    bad = run_safely(rms, history(refused_at=5.4))
    assert bad.verdict is Verdict.FAIL, bad.detail
    assert {v["node"] for v in bad.data["violations"]} == {"node-0"}
    # the same refusals inside the kill window are the fault's doing (any fault excuses in explore)
    assert run_safely(rms, history(refused_at=2.3)).verdict is Verdict.PASS
