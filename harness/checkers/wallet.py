"""D: reliable calls are applied once per call_id.

The wallet workload deposits ``{"amount", "call_id"}`` and deliberately retries the same call_id (after
timeouts, through another gate). A correct stack applies each call_id once and answers every retry with
the same recorded response. Per wallet (the op key):

- a call_id is *acknowledged* when any of its attempts was ok with status ``SUCCESS`` (or no status);
  *indeterminate* when none was acknowledged and some attempt was ``info`` or answered ``PENDING``;
  otherwise (all ``fail``, or a definite non-success status) it was not applied;
- sum(acknowledged amounts) ≤ final balance ≤ sum(acknowledged + indeterminate amounts), each call_id
  counted once (a balance above the upper bound means a retry was applied twice);
- every ok response of one call_id is identical.

``Check.data``: ``{"wallets": n, "calls": n, "retried_calls": n, "out_of_bounds": [{key, final,
acked, info}], "disagreeing": [{key, call_id, responses}], "no_final_balance": [keys]}``
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from harness.checkers.ops import DEPOSIT_F, FINAL_BALANCE_F, as_int
from harness.checkers.verdict import Check, Checker, Verdict, checker_factory, examples, named
from harness.history import History, Op

NAME = "reliable_calls_once"
SUCCESS = "SUCCESS"
PENDING = "PENDING"


def _status(op: Op) -> str | None:
    return op.result.get("status") if isinstance(op.result, dict) else None


def _call_outcome(attempts: list[Op]) -> str:
    """``acked`` | ``info`` | ``not-applied`` for all attempts of one call_id."""
    if any(a.type == "ok" and _status(a) in (None, SUCCESS) for a in attempts):
        return "acked"
    if any(a.type == "info" or (a.type == "ok" and _status(a) == PENDING) for a in attempts):
        return "info"
    return "not-applied"


@checker_factory
def reliable_calls_once() -> Checker:
    """D: final balance within the acknowledged/indeterminate bounds; retries answered identically."""

    def run(history: History) -> Check:
        calls: dict[str, dict[str, list[Op]]] = defaultdict(lambda: defaultdict(list))
        for op in history.ops(DEPOSIT_F):
            if op.key is not None and isinstance(op.value, dict) and op.value.get("call_id") is not None:
                calls[op.key][str(op.value["call_id"])].append(op)
        if not calls:
            return Check(NAME, Verdict.UNKNOWN, "no deposits recorded: nothing to check")
        finals = {op.key: as_int(op.result) for op in history.ops(FINAL_BALANCE_F)
                  if op.type == "ok" and as_int(op.result) is not None}
        bad_bounds: list[dict[str, Any]] = []
        disagree: list[dict[str, Any]] = []
        missing: list[str] = []
        n_calls = n_retried = n_not_applied = n_info = 0
        for key, by_id in sorted(calls.items()):
            acked = info = 0
            for call_id, attempts in by_id.items():
                n_calls += 1
                n_retried += len(attempts) > 1
                amount = as_int(attempts[0].value.get("amount")) or 0
                outcome = _call_outcome(attempts)
                n_not_applied += outcome == "not-applied"
                n_info += outcome == "info"
                acked += amount if outcome == "acked" else 0
                info += amount if outcome == "info" else 0
                answers = {json.dumps(a.result, sort_keys=True) for a in attempts if a.type == "ok"}
                if len(answers) > 1:
                    disagree.append({"key": key, "call_id": call_id, "responses": sorted(answers)})
            final = finals.get(key)
            if final is None:
                missing.append(key)
            elif not acked <= final <= acked + info:
                bad_bounds.append({"key": key, "final": final, "acked": acked, "info": info})
        in_flight = _in_flight_at_faults(history, calls)
        data = {"wallets": len(calls), "calls": n_calls, "retried_calls": n_retried, "failed_calls": n_not_applied,
                "indeterminate_calls": n_info, "in_flight_at_faults": in_flight,
                "out_of_bounds": bad_bounds, "disagreeing": disagree, "no_final_balance": missing}
        if bad_bounds or disagree:
            msgs = [_bounds_msg(b) for b in bad_bounds]
            msgs += [f"wallet {d['key']}: call {d['call_id']} answered {' vs '.join(d['responses'])}"
                     for d in disagree]
            head = f"{len(bad_bounds)} wallets out of bounds, {len(disagree)} call_ids answered inconsistently"
            return Check(NAME, Verdict.FAIL, f"{head}: {examples(msgs)}", data)
        if n_not_applied == n_calls:  # bounds of 0..0 hold trivially: nothing shows a call applied once
            return Check(NAME, Verdict.UNKNOWN, f"all {n_calls} deposits failed: no evidence that a reliable "
                         f"call is applied once; the stack answered: {examples(_errors(calls))}", data)
        if missing:
            return Check(NAME, Verdict.UNKNOWN, f"{len(missing)} of {len(calls)} wallets have no final "
                         f"balance: {examples(missing)}", data)
        at_faults = (f"; deposits in flight at each fault: {', '.join(str(n) for n in in_flight.values())}"
                     if in_flight else "")
        return Check(NAME, Verdict.PASS, f"{n_calls} calls ({n_retried} retried, {n_info} of unknown outcome) on "
                     f"{len(calls)} wallets applied once, retries answered identically{at_faults}", data)

    return named(NAME, run)


def _in_flight_at_faults(history: History, calls: dict[str, dict[str, list[Op]]]) -> dict[str, int]:
    """Per nemesis window, the deposit attempts in flight when it began (``apply_began_at``, else
    t_inject): how much the fault could catch between commit and answer — D decides something about a
    fault only if deposits were in flight at it."""
    attempts = [a for by_id in calls.values() for ops in by_id.values() for a in ops]
    out: dict[str, int] = {}
    for w in history.faults():
        began = w.params.get("apply_began_at")
        t = float(began) if began is not None else w.t_start
        out[w.id] = sum(1 for a in attempts if a.t_invoke <= t < a.t_complete)
    return out


def _errors(calls: dict[str, dict[str, list[Op]]]) -> list[str]:
    """The distinct errors of the recorded deposit attempts (what the stack answered instead)."""
    return sorted({str(a.error)[:120] for by_id in calls.values() for attempts in by_id.values()
                   for a in attempts if a.error})


def _bounds_msg(b: dict[str, Any]) -> str:
    if b["final"] > b["acked"] + b["info"]:
        return (f"wallet {b['key']}: balance {b['final']} > acknowledged {b['acked']} + indeterminate "
                f"{b['info']} (a call applied twice?)")
    return f"wallet {b['key']}: balance {b['final']} < acknowledged {b['acked']} (a deposit lost)"
