"""Failover while a node is down: a node held down longer than the failover budget must not take its
keys down with it for longer than the budget.

Why a checker of its own (and not ``rto``): the scenarios' ``rto`` measures the probe's availability
from t_inject to the first stretch in which every probe is served, which is the right number when
one fault runs alone. The explorer composes faults: a gate paused or a link cut a few seconds after a
node is killed dips the probe too, and a whole-cluster RTO would charge that to the failover. This
check looks only at the keys the downed node served and asks what distinguishes a failover from
waiting for the node to come back: **was each of those keys served by another node within the
budget?** A stack whose shards stay with a dead owner (``slow-failover``) serves them again only
when the node returns, after the budget; a correct one moves them after lease expiry + stability.

Judged per node outage that lasted at least the budget (a kill or a pause of a node, from its nemesis
window): shorter outages end before a failover is due, and the node's return serves its keys. A key
counts when some call on it was invoked after the budget and before the node came back, when it must
be served elsewhere (calls invoked before the failover fail rightly; a key the workload left alone
in that stretch is not judged). A key first served elsewhere late, while another fault window overlapped the budget,
is excused (the other fault can slow where the keys moved); a key served by no other node until the
downed one came back fails regardless. Timing-based: a starved harness makes the segment unknown
(the verdict layer), as for every budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.checkers.verdict import Check, Checker, Verdict, checker_factory, decide, examples, named
from harness.history import FaultWindow, History, Op

NAME = "failover_while_down"
CALL_FS = ("increment", "read", "probe", "deposit")
OUTAGE_KINDS = ("kill", "pause")


@dataclass(frozen=True)
class KeyFailover:
    """One key of a downed node: when another node first served it (None: not before the end)."""

    key: str
    asked: bool  # a call on it was invoked after the budget, while the node was still down
    first_elsewhere_s: float | None  # seconds after ``down`` when another node first answered ok
    first_back_s: float | None  # seconds after ``down`` when the downed node itself answered ok again


def held_down(history: History, budget_s: float) -> list[tuple[FaultWindow, str]]:
    """(window, node) for each node a kill or pause took down for at least ``budget_s`` (healed or
    not); a window's target is the instance or the list of instances it resolved to."""
    out = []
    for w in history.faults():
        end = w.t_stop if w.t_stop is not None else history.end
        if w.kind not in OUTAGE_KINDS or end - w.t_start < budget_s:
            continue
        targets = w.target if isinstance(w.target, list | tuple) else [w.target]
        out += [(w, str(n)) for n in targets if str(n).startswith("node")]
    return out


def keys_served_by(ops: list[Op], node: str, before: float) -> set[str]:
    """The keys whose last call completed ok before ``before`` was served by ``node`` (its keys then)."""
    last: dict[str, tuple[float, str | None]] = {}
    for op in ops:
        if op.type != "ok" or op.key is None or op.t_complete > before:
            continue
        served = (op.extra or {}).get("node")
        if op.key not in last or op.t_complete >= last[op.key][0]:
            last[op.key] = (op.t_complete, served)
    return {k for k, (_, served) in last.items() if served == node}


def key_failovers(ops: list[Op], keys: set[str], node: str, down: float, budget_s: float,
                  back: float) -> list[KeyFailover]:
    """Per key of ``node``: whether it was asked after the budget while the node was still down (``back``:
    seconds after ``down``), and when it was first served again (elsewhere / by ``node`` itself), counted
    from ``down``."""
    out = []
    for key in sorted(keys):
        calls = [o for o in ops if o.key == key and o.t_invoke >= down]
        asked = any(down + budget_s <= o.t_invoke < down + back for o in calls)
        elsewhere = [o.t_complete - down for o in calls if o.type == "ok" and (o.extra or {}).get("node") != node]
        again = [o.t_complete - down for o in calls if o.type == "ok" and (o.extra or {}).get("node") == node]
        out.append(KeyFailover(key, asked, min(elsewhere, default=None), min(again, default=None)))
    return out


def _overlapped(history: History, w: FaultWindow, until: float) -> list[str]:
    """Other fault windows active at some moment in [w.t_start, until]."""
    return [o.id for o in history.faults()
            if o.id != w.id and o.t_start <= until and (o.t_stop is None or o.t_stop >= w.t_start)]


@checker_factory
def failover_while_down(budget_s: float) -> Checker:
    """Every key a node served when it went down (killed or paused for at least ``budget_s``) was served
    by another node within ``budget_s``. No such outage, or none of its keys asked between the budget
    and the node's return, is unknown."""

    def run(history: History) -> Check:
        windows = held_down(history, budget_s)
        data: dict[str, Any] = {"budget_s": budget_s, "outages": []}
        if not windows:
            return Check(NAME, Verdict.UNKNOWN,
                         f"no node was down for the failover budget ({budget_s:g}s): nothing to judge", data)
        ops = [o for o in history.ops(CALL_FS) if o.key is not None]
        fails: list[str] = []
        excused: list[str] = []
        oks: list[str] = []
        for w, node in windows:
            down = w.t_start
            back = (w.t_stop if w.t_stop is not None else history.end) - down
            keys = keys_served_by(ops, node, down)
            per_key = [k for k in key_failovers(ops, keys, node, down, budget_s, back) if k.asked]
            others = _overlapped(history, w, down + budget_s)
            late = [k for k in per_key if k.first_elsewhere_s is None or k.first_elsewhere_s > budget_s]
            stayed = [k for k in late if k.first_elsewhere_s is None or k.first_elsewhere_s >= back]
            slow = [k for k in late if k not in stayed]
            data["outages"].append({
                "fault": w.id, "kind": w.kind, "node": node, "down_at": round(down, 3), "down_for_s": round(back, 3),
                "keys": len(keys), "judged": len(per_key), "overlapped_by": others,
                "late": [{"key": k.key, "first_elsewhere_s": k.first_elsewhere_s, "first_back_s": k.first_back_s}
                         for k in late]})
            label = f"{w.kind} of {node} at {down:.2f}s (down {back:.1f}s)"
            if not per_key:
                excused.append(f"{label}: none of its {len(keys)} keys was asked between the budget and its return")
                continue
            if stayed:
                k = stayed[0]
                fails.append(f"{label}: {len(stayed)} of {len(per_key)} keys served by no other node while it was "
                             f"down, e.g. {k.key} (first served again {_fmt(k.first_back_s)} after, by {node}; "
                             f"budget {budget_s:g}s)")
            elif slow and not others:
                k = max(slow, key=lambda x: x.first_elsewhere_s or 0.0)
                fails.append(f"{label}: {len(slow)} of {len(per_key)} keys served elsewhere only after the budget, "
                             f"e.g. {k.key} after {_fmt(k.first_elsewhere_s)} > {budget_s:g}s")
            elif slow:
                excused.append(f"{label}: {len(slow)} keys served elsewhere late while {', '.join(others)} overlapped")
            else:
                worst = max(k.first_elsewhere_s or 0.0 for k in per_key)
                oks.append(f"{label}: its {len(per_key)} keys served by another node within {worst:.2f}s "
                           f"≤ {budget_s:g}s")
        unknown = None if oks else examples(excused) or "nothing judged"
        return decide(NAME, data, failed=examples(fails) if fails else None, unknown=unknown,
                      passed=examples(oks + excused))

    return named(NAME, run)


def _fmt(s: float | None) -> str:
    return "never" if s is None else f"{s:.2f}s"
