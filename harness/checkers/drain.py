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

from collections.abc import Iterable
from typing import Any

from harness.checkers.verdict import Check, Checker, Verdict, examples
from harness.history import History, Op

NAME = "drained_in_flight"
CALL_FS = ("increment", "read", "probe", "deposit")


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
        terms = _sigterm_times(history)
        data: dict[str, Any] = {"held_s": held_s, "call_timeout_s": call_timeout_s, "keys": len(victim_keys)}
        if not terms:
            return Check(NAME, Verdict.UNKNOWN, "no graceful restart in the history: no SIGTERM to drain", data)
        if not victim_keys:
            return Check(NAME, Verdict.UNKNOWN, "the victim owned none of the workload's keys", data)
        cut: list[str] = []
        held: list[Op] = []
        judged = refused = 0
        for t_term, target in terms:
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
                judged += 1
                if op.type == "ok":
                    if op.t_complete - t_term >= held_s:
                        held.append(op)
                    continue
                cut.append(f"{op.f} op {op.op_id} on {op.key} (in flight since {op.t_invoke:.2f}s) ended "
                           f"{op.type} {op.t_complete - t_term:.2f}s after the SIGTERM of {target} at "
                           f"{t_term:.2f}s: {op.error or 'no answer'}"[:300])
        data.update(judged=judged, cut=len(cut), held=len(held), refused=refused,
                    longest_held_s=round(max((o.t_complete - t for o in held for t, _ in terms
                                              if o.t_complete > t), default=0.0), 3))
        if cut:
            return Check(NAME, Verdict.FAIL, f"{len(cut)} calls in flight at SIGTERM were cut before they "
                         f"completed: {examples(cut)}", data)
        if not held:
            return Check(NAME, Verdict.UNKNOWN, f"no call in flight at SIGTERM was held ≥ {held_s:g}s and then "
                         f"completed ({judged} judged): the drain near the grace period was not exercised", data)
        return Check(NAME, Verdict.PASS, f"{judged} calls in flight at SIGTERM completed, {len(held)} of them "
                     f"≥ {held_s:g}s after it", data)
    return run
