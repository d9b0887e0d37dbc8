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
from harness.explore.schedule import Schedule
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


# ---- the SIGTERM requirements of a drain (issue 15: ignore-sigterm, ready-latched, drain-gives-up-early)
def drain_schedule() -> Schedule:
    from harness.explore.schedule import generate

    topology = {"node-0": "node", "node-1": "node", "gate-0": "gate", "postgres": "postgres"}
    return generate(1, 0, topology, kinds=("drain",))


def drain_history(exit_code: int, t_exit: float, ready_drop: float, cut_at: float | None) -> History:
    """node-0 owns shards 0 and 1; its writes are held by PostgreSQL from 9.0, SIGTERM at 10.0; it exits
    ``exit_code`` at ``t_exit``; /ready turns not-200 at ``ready_drop``; the calls held in it complete at
    13.1 and 13.4, or are cut at ``cut_at``."""
    evs = [ready(0.0, "node-0", True), ready(0.0, "node-1", True), ready(ready_drop, "node-0", False),
           Event(0.0, "sample", "oracle", "placement", value={"shards": SHARDS, "serving": {"node-0": [0, 1],
                                                                                           "node-1": [2, 3]}}),
           Event(9.0, "nemesis", "nemesis", "start", value={"id": "l", "kind": "latency", "target": ["node-0"],
                                                            "params": {"ms": 4000, "apply_began_at": 8.99}}),
           Event(t_exit, "nemesis", "nemesis", "start", value={
               "id": "r", "kind": "restart", "target": ["node-0"],
               "params": {"graceful": True, "exit_codes": {"node-0": exit_code}, "apply_began_at": 10.0}}),
           Event(t_exit + 0.01, "nemesis", "nemesis", "stop",
                 value={"id": "l", "kind": "latency", "target": ["node-0"]}),
           Event(t_exit + 1.0, "nemesis", "nemesis", "stop",
                 value={"id": "r", "kind": "restart", "target": ["node-0"]})]
    for i, (shard, t0, t1) in enumerate([(0, 9.1, 13.1), (1, 9.5, 13.4)]):
        cut = cut_at is not None and t1 > cut_at
        evs += [Event(t0, "invoke", f"c{i}", "increment", key=KEYS[shard], value=1, op_id=500 + i),
                Event(cut_at if cut and cut_at is not None else t1, "info" if cut else "ok", f"c{i}", "increment",
                      key=KEYS[shard], value=None if cut else 1, op_id=500 + i,
                      error="connection reset by peer" if cut else None)]
    return History(sorted(evs, key=lambda e: e.t))


def sigterm_verdicts(h: History) -> dict[str, Verdict]:
    names = ("sigterm_exit_within_grace", "ready_drops_on_sigterm", "drained_in_flight")
    checks = [c for c in segments().invariants(Timers(), faulted=True, schedule=drain_schedule())
              if checker_name(c) in names]
    assert sorted(checker_name(c) for c in checks) == sorted(names)
    return {run_safely(c, h).name: run_safely(c, h).verdict for c in checks}


def test_explore_judges_the_sigterm_requirements_of_a_drain() -> None:
    s = drain_schedule()
    assert [st.fault.kind for st in s.steps] == ["latency", "restart"], s.describe()
    # the correct build: /ready 503 at once, the held calls complete, exit 0 4.3 s after the SIGTERM
    assert set(sigterm_verdicts(drain_history(0, 14.3, 10.1, None)).values()) == {Verdict.PASS}
    # ignore-sigterm: served on, SIGKILLed at the grace's end (it never drained, so /ready stayed 200)
    v = sigterm_verdicts(drain_history(-9, 22.0, 21.9, None))
    assert v["sigterm_exit_within_grace"] is Verdict.FAIL and v["ready_drops_on_sigterm"] is Verdict.FAIL
    # ready-latched: drains and exits 0, but /ready said 200 until it was gone
    v = sigterm_verdicts(drain_history(0, 14.3, 14.25, None))
    assert v == {"sigterm_exit_within_grace": Verdict.PASS, "ready_drops_on_sigterm": Verdict.FAIL,
                 "drained_in_flight": Verdict.PASS}
    # drain-gives-up-early: exit 1 3 s after the SIGTERM, under a call still held
    v = sigterm_verdicts(drain_history(1, 13.0, 10.1, 13.0))
    assert v == {"sigterm_exit_within_grace": Verdict.FAIL, "ready_drops_on_sigterm": Verdict.PASS,
                 "drained_in_flight": Verdict.FAIL}


def test_a_schedule_without_a_graceful_stop_adds_no_sigterm_check() -> None:
    from harness.explore.schedule import Step
    from harness.faults.spec import Kill, Restart

    def names(*steps: Step) -> set[str]:
        return {checker_name(c) for c in segments().invariants(Timers(), True, Schedule(1, 0, steps))}

    assert not names(Step(1.0, 3.0, Kill("node-0", "SIGTERM"))) & {"sigterm_exit_within_grace", "drained_in_flight"}
    plain = names(Step(1.0, 0.0, Restart("gate-0", graceful=True)))
    assert "sigterm_exit_within_grace" in plain and "ready_drops_on_sigterm" not in plain
    assert "sigterm_exit_within_grace" not in names(Step(1.0, 0.0, Restart("etcd-1", graceful=True)))


def test_a_secret_rotation_is_judged_like_the_rotation_scenario() -> None:
    """A schedule with a password rotation adds ``secret_rotated`` (no-secret-reload: a node left without a
    session on the new password after the old ones were revoked fails it)."""
    from harness.explore.schedule import generate
    from harness.faults.spec import RotateSecret
    from harness.operation_kinds import SECRET_F

    topology = {"node-0": "node", "node-1": "node", "gate-0": "gate", "postgres": "postgres"}
    s = generate(1, 0, topology, kinds=("rotate-secret",))
    assert [st.fault for st in s.steps] == [RotateSecret()]
    checks = {checker_name(c): c for c in segments().invariants(Timers(), faulted=True, schedule=s)}
    rotated = checks["secret_rotated"]

    def sample(nodes: dict[str, bool]) -> History:
        return History([Event(5.0, "sample", "operations", SECRET_F, value={
            "old_rejected": True, "new_accepted": True, "nodes_on_new": nodes, "reload_s": None, "revoked": 4})])

    assert run_safely(rotated, sample({"node-0": True, "node-1": False})).verdict is Verdict.FAIL
    assert run_safely(rotated, sample({"node-0": True, "node-1": True})).verdict is Verdict.PASS
    assert "secret_rotated" not in {checker_name(c) for c in segments().invariants(Timers(), True, drain_schedule())}


def test_a_segment_with_proxy_traffic_judges_the_endpoints() -> None:
    """``wired`` (the segment recorded its fault proxy's traffic: the local platform) adds
    ``endpoints_honoured`` (env-ignored: a node that used its config file's endpoints, not the
    environment's, leaves its links silent)."""
    with_traffic = {checker_name(c) for c in segments().invariants(Timers(), True, drain_schedule(), wired=True)}
    assert "endpoints_honoured" in with_traffic
    without = {checker_name(c) for c in segments().invariants(Timers(), True, drain_schedule())}
    assert "endpoints_honoured" not in without


def test_a_node_held_down_past_the_failover_budget_is_judged_on_its_failover() -> None:
    """A schedule that kills or pauses a node for the failover budget or longer (``Timing.held_down_s``)
    adds ``failover_while_down`` (slow-failover: the node's keys wait for it to come back); a shorter
    outage, or a gate held down, does not (the node's return serves its keys: nothing to judge)."""
    from harness.explore.schedule import Step, Timing
    from harness.faults.spec import Kill, Pause

    def names(*steps: Step) -> set[str]:
        return {checker_name(c) for c in segments().invariants(Timers(), True, Schedule(1, 0, steps))}

    held = Timing.of(Timers()).held_down_s()
    assert "failover_while_down" in names(Step(1.0, held, Kill("node-1", "SIGKILL")))
    assert "failover_while_down" in names(Step(1.0, held, Pause("node-0")))
    assert "failover_while_down" not in names(Step(1.0, 6.0, Kill("node-1", "SIGKILL")))
    assert "failover_while_down" not in names(Step(1.0, held, Pause("gate-0")))


def test_a_step_whose_instance_is_not_running_is_left_out_not_a_crash() -> None:
    """Explore schedule seed1-027: a graceful restart of node-2 drained for 3.2 s, and the reset of its
    etcd link, due meanwhile, named an instance that was not running — the injector's TargetError
    ended the segment (and with --maxfail the exploration). It is left out like an unsupported fault."""
    import threading
    import time

    from harness.explore.schedule import Step
    from harness.faults.spec import Reset, Restart, TargetError

    class Recorder:
        def __init__(self) -> None:
            self.logs: list[str] = []

        def now(self) -> float:
            return time.monotonic()

        def log(self, text: str, **_: object) -> None:
            self.logs.append(text)

    class Nemesis:  # the control flow only: which steps reach the injector, which are healed
        def __init__(self) -> None:
            self.healed: list[str] = []

        def inject(self, fault: object, hold_s: float) -> tuple[str, object]:
            if isinstance(fault, Reset):
                raise TargetError("target 'node-2' matches nothing in ['node-0', 'node-1']")
            return "f1", type("Injected", (), {"targets": ["node-2"]})()

        def heal(self, fid: str) -> None:
            self.healed.append(fid)

    scenario = type("S", (), {"recorder": Recorder(), "nemesis": Nemesis()})()
    steps = (Step(0.0, 0.0, Restart("node-2", graceful=True)), Step(0.01, 1.0, Reset(("node-2", "etcd-0"))))
    out = segments().run_schedule(scenario, Schedule(1, 27, steps), threading.Event())
    assert [o.get("unsupported", "") != "" for o in out] == [False, True]
    assert scenario.nemesis.healed == ["f1"] and "left out" in scenario.recorder.logs[0]


def test_the_quiet_keys_stop_before_a_node_taken_out_comes_back() -> None:
    """The quiet workload (``QUIET``) stops before the heal of a step that stops or cuts off a node —
    a pause, a kill, an OOM, a partition — so that what a rejoining node flushes over the new owner's
    writes stays in PostgreSQL (stale-overwrite-on-rejoin); not before a gate's or a link's heal."""
    from harness.explore.schedule import Step
    from harness.faults.spec import Kill, Latency, MemoryPressure, Partition, Pause

    out = segments().takes_a_node_out
    assert out(Step(0.0, 9.0, Pause("node-1"))) and out(Step(0.0, 9.0, Kill("node-0", "SIGKILL")))
    assert out(Step(0.0, 3.0, MemoryPressure("node-2", limit_mb=64))) and out(Step(0.0, 3.0, Partition("halves")))
    assert not out(Step(0.0, 9.0, Pause("gate-0"))) and not out(Step(0.0, 2.0, Latency(("node-0", "postgres"), ms=50)))
