"""The SIGTERM requirements judged at every graceful stop of a history (harness/checkers/sigterm.py and
drain.drained_at_every_sigterm), on crafted histories shaped like the seeded bugs: a process killed at
the end of the grace (ignore-sigterm), one that kept saying ready while it drained (ready-latched), one
that exited under its calls (drain-gives-up-early) — and the correct build's shape passing."""

from __future__ import annotations

from typing import Any

from harness.checkers import Verdict
from harness.checkers.drain import drained_at_every_sigterm
from harness.checkers.sigterm import graceful_stops, ready_drops_on_sigterm, sigterm_exit_within_grace
from harness.history import Event, History
from harness.sharding import shard_of

SHARDS = 4
KEYS = {shard_of(k, SHARDS): k for k in (f"k{i}" for i in range(40))}
TERM = 10.0  # the SIGTERM (apply_began_at)


def restart(t_exit: float, codes: dict[str, int | None], fid: str = "f1", term: float = TERM,
            graceful: bool = True) -> list[Event]:
    target = list(codes)
    return [Event(t_exit, "nemesis", "nemesis", "start", value={
                "id": fid, "kind": "restart", "target": target,
                "params": {"graceful": graceful, "exit_codes": codes, "apply_began_at": term}}),
            Event(t_exit + 1.0, "nemesis", "nemesis", "stop", value={"id": fid, "kind": "restart", "target": target,
                                                                      "result": {"restarted": target}})]


def ready(t: float, inst: str, ok: bool) -> Event:
    return Event(t, "sample", "readiness", "ready", value={"instance": inst, "component": inst.split("-")[0],
                                                         "ready": ok, "reason": "" if ok else "HTTP 503"})


def history(*evs: Event | list[Event]) -> History:
    flat: list[Event] = []
    for e in evs:
        flat += e if isinstance(e, list) else [e]
    return History(sorted(flat, key=lambda e: e.t))


# ---- exit within the grace period ------------------------------------------------------------------
EXIT = sigterm_exit_within_grace(10.0)


def test_exit_0_within_the_grace_passes() -> None:
    c = EXIT(history(restart(14.2, {"node-0": 0})))
    assert c.verdict is Verdict.PASS, c.detail
    assert c.data["stops"] == [{"target": "node-0", "exit_code": 0, "took_s": 4.2}]


def test_killed_at_the_end_of_the_grace_fails() -> None:
    """ignore-sigterm: the platform SIGKILLed it 12 s after the SIGTERM (grace + its 2 s slack)."""
    c = EXIT(history(restart(22.0, {"node-0": -9})))
    assert c.verdict is Verdict.FAIL and "node-0" in c.detail and "killed by signal 9" in c.detail


def test_a_crash_during_the_drain_or_a_late_exit_fails() -> None:
    assert EXIT(history(restart(13.0, {"node-1": 1}))).verdict is Verdict.FAIL  # drain-gives-up-early
    late = EXIT(history(restart(21.0, {"gate-0": 0})))
    assert late.verdict is Verdict.FAIL and "past the 10s grace" in late.detail


def test_nothing_to_judge_is_unknown() -> None:
    assert EXIT(history()).verdict is Verdict.UNKNOWN
    assert EXIT(history(restart(11.0, {"etcd-1": None}))).verdict is Verdict.UNKNOWN  # not a Goverse process
    assert EXIT(history(restart(22.0, {"node-0": -9}, graceful=False))).verdict is Verdict.UNKNOWN  # SIGKILL
    assert graceful_stops(history(restart(11.0, {"etcd-1": None}), restart(12.0, {"gate-1": 0}, "f2"))) \
        [0].target == "gate-1"


# ---- /ready drops while draining -------------------------------------------------------------------
READY = ready_drops_on_sigterm(1.0)


def test_ready_dropping_at_the_sigterm_passes() -> None:
    h = history(ready(0.0, "node-0", True), ready(10.1, "node-0", False), restart(14.2, {"node-0": 0}))
    c = READY(h)
    assert c.verdict is Verdict.PASS, c.detail
    assert c.data["stops"][0]["drop_after_s"] == 0.1


def test_ready_latched_through_the_drain_fails() -> None:
    """ready-latched: 200 until the process is gone (the poller then finds nothing listening)."""
    h = history(ready(0.0, "node-0", True), ready(14.1, "node-0", False), restart(14.2, {"node-0": 0}))
    c = READY(h)
    assert c.verdict is Verdict.FAIL and "node-0 still said /ready 200 1.00s after its SIGTERM" in c.detail
    # flapping back to 200 mid-drain fails too
    flap = history(ready(0.0, "node-0", True), ready(10.1, "node-0", False), ready(12.0, "node-0", True),
                   ready(14.1, "node-0", False), restart(14.2, {"node-0": 0}))
    assert READY(flap).verdict is Verdict.FAIL


def test_a_stop_too_quick_to_tell_or_without_readiness_is_unknown() -> None:
    quick = history(ready(0.0, "node-0", True), ready(10.6, "node-0", False), restart(10.7, {"node-0": 0}))
    assert READY(quick).verdict is Verdict.UNKNOWN
    assert READY(history(restart(14.2, {"node-0": 0}))).verdict is Verdict.UNKNOWN


# ---- calls in flight at every SIGTERM complete -----------------------------------------------------
DRAINED = drained_at_every_sigterm(call_timeout_s=5.0, held_s=2.5)


def placement(t: float, serving: dict[str, list[int]]) -> Event:
    return Event(t, "sample", "oracle", "placement", value={"shards": SHARDS, "serving": serving})


def calls(rows: list[tuple[int, float, float, str]]) -> list[Event]:
    """(shard, t_invoke, t_complete, type) increments on the shard's key."""
    out = []
    for i, (shard, t0, t1, typ) in enumerate(rows):
        extra: dict[str, Any] = {"error": None if typ == "ok" else "connection reset by peer"}
        out += [Event(t0, "invoke", f"c{i}", "increment", key=KEYS[shard], value=1, op_id=i + 1),
                Event(t1, typ, f"c{i}", "increment", key=KEYS[shard], value=1 if typ == "ok" else None,
                      op_id=i + 1, **extra)]
    return out


MAP = placement(0.0, {"node-0": [0, 1], "node-1": [2, 3]})


def test_calls_held_across_the_sigterm_and_completed_pass() -> None:
    h = history(MAP, restart(14.2, {"node-0": 0}), calls([(0, 9.1, 13.1, "ok"), (1, 9.5, 13.4, "ok")]))
    c = DRAINED(h)
    assert c.verdict is Verdict.PASS, c.detail
    assert c.data["held"] == 2


def test_a_drain_that_gives_up_early_fails_on_the_victims_keys_only() -> None:
    # node-0 exited 3 s after the SIGTERM with a call on shard 1 still held: cut; node-1's cut call is not its
    h = history(MAP, restart(13.0, {"node-0": 1}),
                calls([(0, 9.1, 12.9, "ok"), (1, 9.6, 13.0, "info"), (2, 9.6, 11.0, "info")]))
    c = DRAINED(h)
    assert c.verdict is Verdict.FAIL and "13.00s" not in c.detail and "SIGTERM of node-0" in c.detail
    assert c.data["cut"] == 1


def test_a_call_cut_under_another_fault_is_not_the_drains_doing() -> None:
    gate_kill = [Event(11.0, "nemesis", "nemesis", "start", value={"id": "g", "kind": "kill", "target": ["gate-0"],
                                                                   "params": {"signal": "SIGKILL"}}),
                 Event(13.0, "nemesis", "nemesis", "stop", value={"id": "g", "kind": "kill", "target": ["gate-0"]})]
    slow = [Event(9.0, "nemesis", "nemesis", "start", value={"id": "l", "kind": "latency", "target": ["node-0"],
                                                            "params": {"ms": 4000}}),
            Event(14.3, "nemesis", "nemesis", "stop", value={"id": "l", "kind": "latency", "target": ["node-0"]})]
    h = history(MAP, restart(14.2, {"node-0": 0}), gate_kill, slow,
                calls([(0, 9.1, 13.1, "ok"), (1, 9.6, 11.0, "info")]))
    c = DRAINED(h)
    assert c.verdict is Verdict.PASS, c.detail
    assert c.data["excused"] == 1
    # the same cut call with only the latency around it (which cuts nothing) fails
    h2 = history(MAP, restart(14.2, {"node-0": 0}), slow, calls([(0, 9.1, 13.1, "ok"), (1, 9.6, 11.0, "info")]))
    assert DRAINED(h2).verdict is Verdict.FAIL


def test_no_placement_or_nothing_held_is_unknown() -> None:
    assert DRAINED(history(restart(14.2, {"node-0": 0}), calls([(0, 9.1, 13.1, "ok")]))).verdict \
        is Verdict.UNKNOWN
    quick = DRAINED(history(MAP, restart(10.4, {"node-0": 0}), calls([(0, 9.9, 10.2, "ok")])))
    assert quick.verdict is Verdict.UNKNOWN and "not exercised" in quick.detail
