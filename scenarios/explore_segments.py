"""The segments of ``goverse-harness explore``: random fault schedules (harness/explore/schedule.py)
against one deployed stack, each judged by the chaos scenarios' checkers.

Not collected by default (its name does not start with ``test_``): ``goverse-harness explore`` runs it
with a plan in ``GVH_EXPLORE_PLAN`` (a JSON file: seed, fault kinds, deadline, or the schedules to
replay). Each parametrized item is one segment — a scenario of its own, with its history, checks.json
and the schedule it ran (``schedule.json``) — and all of them share the module's stack, as the
segments of a Jepsen run share one cluster. The explorer stops starting segments once its budget is
spent (pytest's ``shouldstop``; a segment is never cut short).

A segment: the standard workload (hot counter keys with reads, wallet deposits so D decides, a burst
of writes in flight at every fault) and the probe; a baseline; the schedule's faults injected and
healed at their times through the Nemesis (overlapping ones included; the history holds every
window); the after phase; reads through each gate; final reads and the stored state; then every
invariant the chaos scenarios judge: L (client view and stored state), M, linearizable counters, O, D,
C, every gate routing, recovery after every heal within the failover budget, failover within that
budget for a node held down past it (``failover_while_down``), and readiness means
serving (every node's and gate's /ready answers and the settled shard map are recorded; a call cut by
any fault window is excused, so what is judged is the baseline and the stretches after each heal).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chaos_checks import after_the_heal, final_reads_and_stored

from harness import budgets
from harness.checkers import (
    converged,
    linearizable_counters,
    monotonic_reads,
    no_lost_writes,
    reads_see_acknowledged,
    recovery_after_heal,
    reliable_calls_once,
    single_ownership,
)
from harness.checkers.chaos import persisted_not_behind
from harness.checkers.drain import drained_at_every_sigterm
from harness.checkers.failover import failover_while_down
from harness.checkers.operations import secret_rotated
from harness.checkers.readiness import ready_means_serving
from harness.checkers.routing import every_gate_routes
from harness.checkers.sigterm import ready_drops_on_sigterm, sigterm_exit_within_grace
from harness.checkers.wiring import TRAFFIC_F, endpoints_honoured
from harness.explore.schedule import Schedule, Step, Timing, generate
from harness.faults.spec import Kill, Latency, MemoryPressure, Partition, Pause, Restart, RotateSecret, TargetError
from harness.platforms.base import Timers, Unsupported

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

PLAN_ENV = "GVH_EXPLORE_PLAN"
# three etcd members (a member can be killed with a quorum left) and node/gate → etcd through the fault
# proxy, so latency can be put on what they hear from etcd (stale views)
STACK = {"etcd_members": 3, "proxy_links": ("node-etcd", "gate-etcd")}
# fault kind -> the capability that says whether this platform can apply it (absent: the kind itself;
# a kind the platform does not report is tried, and an Unsupported is logged and left out)
CAPABILITY = {"disk": "disk-full", "rolling-restart": "scale", "drain": "latency"}
BASELINE_S = 2.0
AFTER_S = 2.5  # ≥ the 2 s window in which recovered availability must hold (H)
WORKLOAD = {"counter_keys": 12, "counter_rate": 40.0, "read_ratio": 0.5, "wallet_keys": 4, "wallet_rate": 8.0,
            "burst_at_inject": 8}
# Keys written until a node that was taken out comes back, then left alone (the pause scenario's
# "quiesced" workload): a node that rejoins and flushes what it still holds over the new owner's
# writes (``stale-overwrite-on-rejoin``) leaves them behind in PostgreSQL, where nobody writes them
# again before the stored state is read; on the hot keys the next write repairs the damage unseen.
QUIET = {"counter_keys": 24, "counter_rate": 20.0, "read_ratio": 0.2}


def _plan() -> dict[str, Any]:
    path = os.environ.get(PLAN_ENV)
    if not path:
        return {"segments": 0}
    return dict(json.loads(Path(path).read_text(encoding="utf-8")))


PLAN = _plan()
REPLAY = [Schedule.from_dict(d) for d in PLAN.get("replay") or []]
SEGMENTS = [s.id for s in REPLAY] if REPLAY else [f"segment-{i:03d}" for i in range(int(PLAN.get("segments", 0)))]


READY_DROP_S = 1.0  # /ready must stop saying 200 within this of a SIGTERM (conformance 2.1's budget)
DRAIN_HELD_MARGIN_S = 1.5  # a drained call counts as held near the grace from hold − this (the drain scenario's)


def invariants(t: Timers, faulted: bool = True, schedule: Schedule | None = None, wired: bool = False) -> list[Any]:
    """Every check the chaos, stale-view and restart scenarios judge that holds under any fault mix
    (recovery after heal only when some fault was applied: a schedule whose faults this platform could
    not apply has no heal to recover from; readiness ⇒ serving outside the fault windows), and the
    SIGTERM requirements of the schedule's graceful stops (``sigterm_invariants``) and, after a
    PostgreSQL password rotation, that every node holds a session on the new password; ``wired`` (the
    segment recorded its fault proxy's traffic): every instance used the endpoints it was given."""
    checks = [no_lost_writes(), persisted_not_behind, reads_see_acknowledged(), monotonic_reads(),
              linearizable_counters(), single_ownership(), reliable_calls_once(),
              converged(within_s=budgets.convergence(t)), every_gate_routes(),
              ready_means_serving(budgets.ready_serving(t), any_fault=True)]
    checks += sigterm_invariants(t, schedule) if schedule is not None and faulted else []
    if schedule is not None and faulted and any(isinstance(st.fault, RotateSecret) for st in schedule.steps):
        checks.append(secret_rotated())  # the secret rotation scenario's check: every node on the new password
    if wired:
        checks.append(endpoints_honoured())
    if schedule is not None and faulted and held_down(t, schedule):
        checks.append(failover_while_down(budgets.failover(t)))  # the scenarios' RTO, for the node held down
    return [*checks, recovery_after_heal(budget_s=budgets.failover(t), composed=True)] if faulted else checks


def held_down(t: Timers, schedule: Schedule) -> bool:
    """The schedule kills or pauses a node for at least the failover budget (its shards must move)."""
    return any(isinstance(st.fault, Kill | Pause) and st.fault.target.startswith("node")
               and st.hold_s >= budgets.failover(t) for st in schedule.steps)


def takes_a_node_out(step: Step) -> bool:
    """The step stops a node or cuts it off (it comes back, possibly holding stale state, at the heal)."""
    f = step.fault
    if isinstance(f, Pause | Kill | MemoryPressure):
        return f.target.startswith("node")
    return isinstance(f, Partition)


def sigterm_invariants(t: Timers, schedule: Schedule) -> list[Any]:
    """What every graceful stop of a node or gate in ``schedule`` must do (seed §2.1, §2.2), as checks on
    the history: it exits 0 on its own within the grace period; and where the stop is a ``drain`` (the
    node's writes held in PostgreSQL across its SIGTERM, so it has calls to drain for seconds) its
    /ready drops within ``READY_DROP_S`` and the calls in flight at the SIGTERM complete. Added only
    when the schedule has such a stop: a check with nothing to judge is unknown, and would make every
    segment without one unknown too."""
    stops = [st.fault for st in schedule.steps if isinstance(st.fault, Restart) and st.fault.graceful
             and st.fault.target.split("-")[0] in ("node", "gate")]
    if not stops:
        return []
    checks: list[Any] = [sigterm_exit_within_grace(t.shutdown_grace)]
    hold_s = Timing.of(t).drain_hold_s()
    held = {st.fault.link[0] for st in schedule.steps
            if isinstance(st.fault, Latency) and st.fault.link[1] == "postgres" and st.fault.ms >= 1000 * hold_s}
    if any(f.target in held for f in stops):
        checks += [ready_drops_on_sigterm(READY_DROP_S),
                   drained_at_every_sigterm(t.call_timeout, held_s=hold_s - DRAIN_HELD_MARGIN_S)]
    return checks


def proxy_traffic(stack: Any) -> tuple[dict[str, int], set[str]] | None:
    """Bytes so far on each fault proxy link (``<instance>-><destination>``) and the running instances;
    None where the platform has no fault proxy in the harness (``endpoints_honoured``)."""
    proxy = getattr(stack, "proxy", None)
    if proxy is None:
        return None
    counts = {}
    for name in proxy.links():
        st = proxy.stats(name)
        counts[name] = st.bytes_up + st.bytes_down
    return counts, {i.name for i in stack.instances() if i.running}


def record_traffic(scenario: Any, before: tuple[dict[str, int], set[str]] | None,
                   after: tuple[dict[str, int], set[str]] | None) -> bool:
    """The segment's traffic per link into the history (sample ``proxy-traffic``); False: none to record."""
    if before is None or after is None:
        return False
    delta = {k: n - before[0].get(k, 0) for k, n in after[0].items()}
    scenario.recorder.sample(TRAFFIC_F, {"bytes": delta, "running": sorted(before[1] & after[1])})
    return True


def run_schedule(scenario: Any, schedule: Schedule, stop: threading.Event,
                 before_heal: Callable[[Step], None] | None = None) -> list[dict[str, Any]]:
    """Inject and heal the schedule's faults at their times (relative to now), from this one thread,
    so Ctrl-C interrupts a wait and the scenario's heal_all heals whatever is active. A fault the
    platform cannot apply, or whose instance is not running when it is due, is logged and left out
    (the segment goes on with the others). ``before_heal(step)`` runs right before each heal."""
    t0 = scenario.recorder.now()
    pending = sorted(enumerate(schedule.steps), key=lambda p: p[1].at_s)
    active: list[tuple[float, str]] = []  # (heal due, fault id)
    step_of: dict[str, Step] = {}
    outcome: list[dict[str, Any]] = []
    while pending or active:
        next_inject = t0 + pending[0][1].at_s if pending else float("inf")
        next_heal = min((due for due, _ in active), default=float("inf"))
        delay = min(next_inject, next_heal) - scenario.recorder.now()
        if delay > 0 and stop.wait(delay):  # sleep-ok: the schedule's times are the subject
            break
        if next_heal <= next_inject:
            due, fid = min(active)
            active.remove((due, fid))
            if before_heal is not None:
                before_heal(step_of[fid])
            scenario.nemesis.heal(fid)
            continue
        i, step = pending.pop(0)
        try:
            fid, injected = scenario.nemesis.inject(step.fault, hold_s=step.hold_s)
        except (Unsupported, TargetError) as exc:
            # TargetError: its instance is not running at this moment (a graceful stop of the same node
            # whose drain outlasted the gap before this step: the two share no resource, but the
            # injector resolves targets among running instances)
            scenario.recorder.log(f"explore: {step.fault} left out", reason=str(exc)[:300])
            outcome.append({"step": i, "fault": str(step.fault), "unsupported": str(exc)[:300]})
            continue
        active.append((scenario.recorder.now() + step.hold_s, fid))
        step_of[fid] = step
        outcome.append({"step": i, "fault": str(step.fault), "targets": injected.targets})
    return outcome


@pytest.mark.parametrize("segment", SEGMENTS)
def test_explore_segment(request, stack, scenario, segment):
    """One random schedule (or the replayed one) under load; every invariant judged."""
    t = stack.spec.timers
    if REPLAY:
        schedule = REPLAY[SEGMENTS.index(segment)]
    else:
        caps = stack.capabilities()
        kinds = [k for k in PLAN["kinds"] if not caps.get(CAPABILITY.get(k, k))]
        if not kinds:
            pytest.skip(f"unsupported on this platform: none of {PLAN['kinds']} ("
                        + "; ".join(f"{k}: {caps.get(CAPABILITY.get(k, k))}" for k in PLAN["kinds"]) + ")")
        topology = {i.name: i.component for i in stack.instances() if i.running}
        schedule = generate(int(PLAN["seed"]), SEGMENTS.index(segment), topology, kinds, Timing.of(t),
                            proxied=stack.spec.proxy_links)
    (scenario.dir / "schedule.json").write_text(json.dumps(schedule.to_dict(), indent=2) + "\n", encoding="utf-8")
    started = time.time() - float(PLAN.get("started", time.time()))
    scenario.recorder.log(f"explore schedule {schedule.id}: {schedule.describe()}")
    wl = scenario.workload(**WORKLOAD)
    running = stack.gate_urls(only_running=True)
    if running and running != stack.gate_urls():
        # a gate an earlier segment's scale-down stopped is no endpoint any more (the scale scenarios'
        # clients follow with ``on_endpoints``); calls sent to it would fail every_gate_routes for good
        wl.set_gates(running)
    quiet = scenario.workload(**QUIET)
    if running and running != stack.gate_urls():
        quiet.set_gates(running)
    stopping: list[threading.Thread] = []

    def quiesce(step: Step) -> None:
        """Before a node taken out comes back: stop the quiet keys' writes (not waiting for their
        calls in flight, which the schedule's times cannot wait for)."""
        if not stopping and takes_a_node_out(step):
            stopping.append(threading.Thread(target=quiet.stop, name="quiesce", daemon=True))
            stopping[0].start()
            scenario.recorder.log("quiet keys: writes stopped before the node comes back", fault=str(step.fault))

    traffic = proxy_traffic(stack)
    try:
        with scenario.observing(readiness=True), wl.running():
            try:
                quiet.start(probe=False)
                scenario.settle(BASELINE_S, "baseline")
                steps = run_schedule(scenario, schedule, threading.Event(), before_heal=quiesce)
            finally:
                for th in stopping:
                    th.join()
                quiet.stop()
            after_the_heal(stack, scenario, budgets.convergence(t), AFTER_S)
        wl.reads_through_each_gate()
        final_reads_and_stored(stack, scenario, budgets.convergence(t), wl, quiet)
        wired = record_traffic(scenario, traffic, proxy_traffic(stack))
    finally:
        deadline = PLAN.get("deadline")
        if deadline is not None and time.time() >= float(deadline):
            request.session.shouldstop = "explore budget spent"  # no further segment starts
    ended = time.time() - float(PLAN.get("started", time.time()))
    faulted = any("unsupported" not in s for s in steps)
    result = scenario.conclude(*invariants(t, faulted, schedule, wired), extra={"explore": {
        "schedule": schedule.id, "faults": schedule.describe(), "steps": steps,
        "started_s": round(started, 1), "ended_s": round(ended, 1)}})
    assert result.passed, result.explain()
