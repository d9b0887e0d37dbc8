"""Drain near the grace period: calls in flight inside a node when it is SIGTERMed must complete.

Why a checker over the history (and not only conformance 2.2): conformance holds one call 2.5 s, far
below a 10-30 s grace period, so a drain that gives up after a few seconds passes it. A scenario holds
the victim's calls close to the time the stack can let a call live (min(grace − margin, call timeout −
margin), see scenarios/test_restarts.py) and this checker judges every call that was in flight at the
SIGTERM: it must not end with an unknown outcome (``info``: forwarded, then the connection broke — the
call was cut). A definite refusal (``fail``: the call did not run, e.g. it reached the node after the
SIGTERM) is allowed. Only calls that ended before the gate's call timeout are judged (a call that
waited for the timeout timed out on its own, e.g. queued behind others on one object; it says nothing
about the drain).

The SIGTERM moment is the graceful restart window's ``apply_began_at`` (the nemesis stamps t_inject
when the stop returned, i.e. after the process exited).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from harness.checkers.verdict import Check, Checker, Verdict, examples, named
from harness.history import History, Op
from harness.sharding import shard_of

NAME = "drained_in_flight"
CALL_FS = ("increment", "read", "probe", "deposit")
PLACEMENT_F = "placement"  # harness.checkers.readiness's settled shard map samples


def _sigterm_times(history: History) -> list[tuple[float, Any]]:
    out = []
    for w in history.faults():
        if w.kind != "restart" or not w.params.get("graceful", False):
            continue
        began = w.params.get("apply_began_at")
        out.append((float(began) if began is not None else w.t_start, w.target))
    return out


def drained_in_flight(keys: Iterable[str], call_timeout_s: float, held_s: float,
                      reached_s: float = 0.25) -> Checker:
    """No call on ``keys`` (the victim's keys) in flight at a graceful restart's SIGTERM ended ``info``
    (cut) before 0.9 × ``call_timeout_s``; and at
    least one call in flight at the SIGTERM completed ok ≥ ``held_s`` after it (it was held in the node)
    (else the drain near the grace period was not exercised: unknown). Timing-free for a fail: a
    starved harness widens intervals and lengthens latencies, which can only exclude a cut call."""
    victim_keys = set(keys)

    def run(history: History) -> Check:
        terms = [(t, target, victim_keys) for t, target in _sigterm_times(history)]
        data: dict[str, Any] = {"held_s": held_s, "call_timeout_s": call_timeout_s, "keys": len(victim_keys)}
        if not terms:
            return Check(NAME, Verdict.UNKNOWN, "no graceful restart in the history: no SIGTERM to drain", data)
        if not victim_keys:
            return Check(NAME, Verdict.UNKNOWN, "the victim owned none of the workload's keys", data)
        return _judge(history, terms, call_timeout_s, held_s, reached_s, lambda _op, _t: False, data)
    return run


def drained_at_every_sigterm(call_timeout_s: float, held_s: float, reached_s: float = 0.25) -> Checker:
    """``drained_in_flight`` for every graceful restart of a node in the history, each judged on the keys
    that node served at its SIGTERM (the last ``placement`` sample before it, recorded by
    ``Scenario.observing(readiness=True)``), for histories where no one scenario chose the victim (the
    explorer). A call whose life overlaps another fault window (a kill, pause, partition, reset... —
    not a latency, which slows calls but cuts none, and not this restart) may have been cut by that
    fault, not by the drain: if it did not complete, it is not judged."""

    def run(history: History) -> Check:
        data: dict[str, Any] = {"held_s": held_s, "call_timeout_s": call_timeout_s}
        placements = [(ev.t, ev.value) for ev in history.samples(PLACEMENT_F) if isinstance(ev.value, dict)]
        windows = [w for w in history.faults() if w.kind != "latency"]
        keys = {op.key for op in history.ops(CALL_FS) if op.key is not None}
        terms: list[tuple[float, Any, set[str]]] = []
        for w in windows:
            if w.kind != "restart" or not w.params.get("graceful", False):
                continue
            t_term = float(w.params.get("apply_began_at", w.t_start))
            before = [v for t, v in placements if t <= t_term]
            if not before:
                continue
            serving = before[-1].get("serving") or {}
            shards = int(before[-1].get("shards") or 0)
            for node in _names(w.target):
                owned = set(serving.get(node) or [])
                if owned and shards:
                    terms.append((t_term, node, {k for k in keys if shard_of(k, shards) in owned}))
        if not terms:
            return Check(NAME, Verdict.UNKNOWN, "no graceful restart of a node that served shards (per the "
                         "recorded placement) in the history: no SIGTERM to drain", data)
        end = history.end

        def other_fault(op: Op, t_term: float) -> bool:
            for w in windows:
                t0 = float(w.params.get("apply_began_at", w.t_start))
                t1 = w.t_stop if w.t_stop is not None else end
                if w.kind == "restart" and t0 == t_term:
                    continue  # the restart being judged
                if op.t_invoke <= t1 and t0 <= op.t_complete:
                    return True
            return False

        data["keys"] = sum(len(k) for _, _, k in terms)
        return _judge(history, terms, call_timeout_s, held_s, reached_s, other_fault, data)
    return named(NAME, run)


def _names(target: Any) -> list[str]:
    return [str(t) for t in (target if isinstance(target, list) else [target]) if t]


def _judge(history: History, terms: list[tuple[float, Any, set[str]]], call_timeout_s: float, held_s: float,
           reached_s: float, excused: Callable[[Op, float], bool], data: dict[str, Any]) -> Check:
    cut: list[str] = []
    held: list[Op] = []
    judged = refused = excused_n = 0
    for t_term, target, victim_keys in terms:
        for op in history.ops(CALL_FS):
            if op.key not in victim_keys or not op.t_invoke <= t_term < op.t_complete:
                continue
            if op.type == "fail":
                refused += 1  # a definite refusal: the call did not run, the client may retry it
                continue
            if op.t_invoke > t_term - reached_s and op.type == "ok" and op.t_complete - t_term < held_s:
                continue  # sent just before the SIGTERM and answered soon: says nothing either way
            if op.type != "ok" and op.latency_s >= 0.9 * call_timeout_s:
                continue  # waited for the call timeout: not the drain's doing
            if op.type != "ok" and excused(op, t_term):
                excused_n += 1
                continue
            judged += 1
            if op.type == "ok":
                if op.t_complete - t_term >= held_s:
                    held.append(op)
                continue
            cut.append(f"{op.f} op {op.op_id} on {op.key} (in flight since {op.t_invoke:.2f}s) ended "
                       f"{op.type} {op.t_complete - t_term:.2f}s after the SIGTERM of {target} at "
                       f"{t_term:.2f}s: {op.error or 'no answer'}"[:300])
    data.update(judged=judged, cut=len(cut), held=len(held), refused=refused, excused=excused_n,
                longest_held_s=round(max((o.t_complete - t for o in held for t, _, _ in terms
                                          if o.t_complete > t), default=0.0), 3))
    if cut:
        return Check(NAME, Verdict.FAIL, f"{len(cut)} calls in flight at SIGTERM were cut before they "
                     f"completed: {examples(cut)}", data)
    if not held:
        return Check(NAME, Verdict.UNKNOWN, f"no call in flight at SIGTERM was held ≥ {held_s:g}s and then "
                     f"completed ({judged} judged): the drain near the grace period was not exercised", data)
    return Check(NAME, Verdict.PASS, f"{judged} calls in flight at SIGTERM completed, {len(held)} of them "
                 f"≥ {held_s:g}s after it", data)
