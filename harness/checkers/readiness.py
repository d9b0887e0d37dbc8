"""Readiness means serving: once an instance says ``/ready`` 200, calls to the shards it owns succeed.

Why: readiness is what a load balancer and a rolling operation trust. A node that answers 200 while
the shards the cluster gives it are not yet served (claimed in etcd but not activated, loaded, fenced)
takes traffic it fails; a roll that waits for that 200 stops the next instance too early. Judging
readiness only at its edges (it drops at SIGTERM, it rises at start) cannot see this — the calls have
to be compared with what the instances said about themselves at the time.

Data (recorded by ``Scenario.observing(readiness=True)``):

- ``sample`` ``f = "ready"``, value ``{"instance", "component", "ready", "reason"}``: one per change
  of an instance's ``/ready`` answer (and its first answer); an instance that cannot be reached is
  not ready.
- ``sample`` ``f = "placement"``, value ``{"shards": N, "serving": {instance: [shard, ...]}}``: one per
  change of the shard map's *settled* shards (``target == current``), by instance name.

The judgement, for every client call with a key that did not succeed (``fail`` or ``info``; a call
still in flight when the history was cut is left out), invoked at ``t`` through gate ``g``:
the key's shard had one settled owner ``X`` continuously over ``[t − budget, t + budget]``, ``X`` said ready
at every answer over ``[t − budget, t + budget]`` (its last answer before ``t − budget`` was 200 and
none in the interval was not 200), and so did ``g`` when the gate's readiness was recorded. Such a
call is a violation: its node had said for a whole budget that it serves, and it did not — unless a
fault aimed at ``X`` itself (a nemesis window whose target names it: a kill, a restart, a pause) cut
the call: one that completed at or after the window's ``apply_began_at`` and was invoked before its
heal is the fault's doing, not readiness's (a kill that first holds PostgreSQL's replies leaves the
calls of that hold unanswered while the node still says ready). Faults on other instances do not
excuse ``X``: the survivors of a kill must serve the shards they claim once they say ready.

``any_fault=True`` (the explorer, ``scenarios/explore_segments.py``) excuses a call cut by *any*
fault window the same way, not only one aimed at its node: random schedules put faults on what every
node shares — PostgreSQL's disk, the links to PostgreSQL and etcd, an etcd member — under which a
correct node fails calls while rightly saying ready (readiness is not a health check of PostgreSQL).
What is left to judge there is the baseline and every stretch after a heal, which is where a node
that claims shards back (after a failover, a partition, a rebalance) says ready too early.

The budget (``budgets.ready_serving``: two ticks and a margin) absorbs what a correct stack may lag:
the gates' view of the shard map (refreshed once a tick), the poll periods of the recorder, and an
instance whose readiness is about to drop (a SIGKILLed node is only seen not ready at the next poll)
or a shard about to move (a gate may see the new target before the recorder's next sample): the
``+ budget`` sides. Calls that succeed in the same state count as judged, so a history in which
nothing was in this state is ``unknown``, not a pass.

What the poller cannot see is not judged: it asks every ``/ready`` about ten times a second, so a node
that stops serving for a few tens of milliseconds — rightly: its lease lapsed locally because a
keepalive spent 2 s failing over between etcd members, and etcd confirmed the lease a moment later
(the reference node logs "confirmed alive again 0.03s after the local deadline") —
answers 503 only between two polls, and the calls refused in that moment look like calls refused
while ready. A node's refusals form an *episode* while each comes less than 0.5 s (2 × ``blind_s``)
after the one before, each placed at its call's completion (when the node answered). An episode
counts when it spans at least ``blind_s`` (the poller asked the node at least twice meanwhile and was
told 200 each time), or when the node served another call inside it: then it was up and serving while
it refused these — a node refusing the shards it claimed and still warms up (ready-before-serving:
bursts of refusals among successes) — not in a lapse, in which it refuses everything. The others are
kept in the data as ``unobservable``. Recorded lapses on the correct build (explore schedules
seed1-018 and seed1-026): one, two and five refusals within 0.1 s, nothing served among them.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.checkers.verdict import Check, Checker, Verdict, checker_factory, examples, named
from harness.history import NO_COMPLETION, History, Op
from harness.sharding import shard_of

NAME = "ready_means_serving"
READY_F = "ready"
PLACEMENT_F = "placement"
CALL_FS = ("probe", "increment", "read", "deposit")
# two and a half periods of the readiness poller (harness/readiness_poll.py, 0.1 s): a refusal episode
# shorter than this may have fallen between two polls of a node that said 503 meanwhile
BLIND_S = 0.25


@dataclass
class _Series:
    """One instance's readiness answers as a step function of time (only the changes are recorded)."""

    times: list[float]
    ready: list[bool]

    def ready_over(self, a: float, b: float) -> bool:
        """Ready at ``a`` (its last answer at or before ``a`` said so) and no not-ready answer in (a, b]."""
        i = bisect.bisect_right(self.times, a) - 1
        if i < 0 or not self.ready[i]:
            return False
        j = bisect.bisect_right(self.times, b)
        return all(self.ready[i:j])


def _readiness(history: History) -> dict[str, _Series]:
    out: dict[str, _Series] = {}
    for ev in history.samples(READY_F):
        v = ev.value if isinstance(ev.value, dict) else {}
        name = v.get("instance")
        if not name:
            continue
        s = out.setdefault(str(name), _Series([], []))
        s.times.append(ev.t)
        s.ready.append(bool(v.get("ready")))
    return out


@dataclass
class _Placement:
    """Settled owner of each shard over time: per shard, (since, owner) stretches."""

    shards: int
    stretches: dict[int, list[tuple[float, str | None]]]

    def owner_over(self, shard: int, a: float, b: float) -> str | None:
        """The one settled owner of ``shard`` at every moment of [a, b], else None."""
        st = self.stretches.get(shard, [])
        starts = [t for t, _ in st]
        i = bisect.bisect_right(starts, a) - 1
        if i < 0:
            return None
        owner = st[i][1]
        j = bisect.bisect_right(starts, b)
        if owner is None or any(o != owner for _, o in st[i:j]):
            return None
        return owner


def _placement(history: History) -> _Placement | None:
    samples = history.samples(PLACEMENT_F)
    shards = 0
    stretches: dict[int, list[tuple[float, str | None]]] = defaultdict(list)
    for ev in samples:
        v = ev.value if isinstance(ev.value, dict) else {}
        shards = int(v.get("shards") or shards)
        owner_of: dict[int, str] = {}
        for inst, owned in (v.get("serving") or {}).items():
            for s in owned:
                owner_of[int(s)] = str(inst)
        for s in range(shards):
            owner = owner_of.get(s)
            st = stretches[s]
            if not st or st[-1][1] != owner:
                st.append((ev.t, owner))
    return _Placement(shards, dict(stretches)) if shards else None


ANY = "*"  # key of _aimed_windows for the windows of every fault (any_fault=True)


def _aimed_windows(history: History) -> dict[str, list[tuple[float, float]]]:
    """Per instance name, the [apply_began_at, heal] of the nemesis windows whose target names it;
    under :data:`ANY`, every window."""
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for w in history.faults():
        targets = w.target if isinstance(w.target, list) else [w.target]
        began = w.params.get("apply_began_at")
        start = float(began) if began is not None else w.t_start
        window = (start, w.t_stop if w.t_stop is not None else history.end)
        out[ANY].append(window)
        for name in targets:
            if isinstance(name, str):
                out[name].append(window)
    return out


def observable(bad: list[dict[str, Any]], ok_calls: dict[str, list[tuple[float, float]]],
               blind_s: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split violations into those the readiness poller could have seen and the rest (module doc).
    A node's refusals form an *episode* while each comes less than 2 × ``blind_s`` after the one before,
    each placed at its call's completion (when the node answered: a call queued for half a second is
    refused in the same moment as one sent just before). An episode counts when it spans at least
    ``blind_s`` (the poller asked the node at least twice meanwhile and was told 200), or when the node
    served another call inside it (``ok_calls``: per node, the (invocation, completion) of the calls it
    served): then it was up and serving while it refused these — a node refusing the shards it still
    warms up — not in a lapse between two polls, in which it refuses everything."""
    seen: list[dict[str, Any]] = []
    unseen: list[dict[str, Any]] = []
    by_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for b in sorted(bad, key=lambda b: b["t_complete"]):
        by_node[b["node"]].append(b)
    for node, calls in by_node.items():
        served = ok_calls.get(node, [])
        for ep in _episodes(calls, lambda x, y: y["t_complete"] - x["t_complete"] >= 2 * blind_s):
            a, z = ep[0]["t_complete"], ep[-1]["t_complete"]
            inside = any(a < t0 and t1 < z for t0, t1 in served)
            (seen if z - a >= blind_s or inside else unseen).extend(ep)
    return sorted(seen, key=lambda b: b["t"]), sorted(unseen, key=lambda b: b["t"])


def _episodes(calls: list[dict[str, Any]],
              split: Callable[[dict[str, Any], dict[str, Any]], bool]) -> list[list[dict[str, Any]]]:
    """``calls`` (in time order) cut where ``split(previous, next)``."""
    out: list[list[dict[str, Any]]] = []
    for c in calls:
        if out and not split(out[-1][-1], c):
            out[-1].append(c)
        else:
            out.append([c])
    return out


@checker_factory
def ready_means_serving(budget_s: float, any_fault: bool = False, blind_s: float = BLIND_S) -> Checker:
    """No call failed on a shard whose settled owner, and the gate it went through, had said ready
    for ``budget_s`` before it and still said so ``budget_s`` after it. ``any_fault``: a call cut by
    any fault window is excused, not only one cut by a fault aimed at its node (the explorer).
    ``blind_s``: refusal episodes shorter than this are below what the poller can see (module doc)."""

    def run(history: History) -> Check:
        ready = _readiness(history)
        placement = _placement(history)
        data: dict[str, Any] = {"budget_s": budget_s, "instances": sorted(ready), "any_fault": any_fault}
        if not ready or placement is None:
            return Check(NAME, Verdict.UNKNOWN, "readiness or shard placement not recorded "
                         "(Scenario.observing(readiness=True))", data)
        aimed = _aimed_windows(history)
        judged: list[Op] = []
        bad: list[dict[str, Any]] = []
        ok_calls: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for op in history.ops(CALL_FS):
            if op.key is None or op.error == NO_COMPLETION:
                continue
            t = op.t_invoke
            shard = shard_of(op.key, placement.shards)
            if op.type == "ok" and (op.extra or {}).get("node"):
                ok_calls[str((op.extra or {})["node"])].append((t, op.t_complete))
            owner = placement.owner_over(shard, t - budget_s, t + budget_s)
            if owner is None or owner not in ready or not ready[owner].ready_over(t - budget_s, t + budget_s):
                continue
            gate = (op.extra or {}).get("gate") or op.node
            if gate in ready and not ready[gate].ready_over(t - budget_s, t + budget_s):
                continue
            if any(a <= op.t_complete and t <= b for a, b in aimed.get(ANY if any_fault else owner, ())):
                continue  # cut by a fault aimed at the node itself (any_fault: by any fault)
            judged.append(op)
            if op.type != "ok":
                bad.append({"op_id": op.op_id, "f": op.f, "key": op.key, "t": round(t, 3), "node": owner,
                            "gate": gate, "type": op.type, "error": (op.error or "")[:160],
                            "t_complete": round(op.t_complete, 3), "shard": shard})
        bad, unseen = observable(bad, ok_calls, blind_s)
        data.update(judged=len(judged), violations=bad, unobservable=unseen, blind_s=blind_s)
        if not judged:
            return Check(NAME, Verdict.UNKNOWN, "no call went to a node that had said ready for the whole "
                         f"budget ({budget_s:g} s): nothing to judge", data)
        if bad:
            nodes = sorted({b["node"] for b in bad})
            return Check(NAME, Verdict.FAIL,
                         f"{len(bad)} of {len(judged)} calls failed on shards served by a node that had said "
                         f"/ready 200 for ≥ {budget_s:g} s (nodes {', '.join(nodes)}): "
                         + examples([f"op {b['op_id']} {b['f']} {b['key']} at t={b['t']} on {b['node']} via "
                                     f"{b['gate']}: {b['type']} {b['error']}" for b in bad]), data)
        blind = (f"; {len(unseen)} refused in moments shorter than the readiness poller can see "
                 f"(< {blind_s:g} s, not judged)") if unseen else ""
        return Check(NAME, Verdict.PASS, f"{len(judged) - len(unseen)} calls to nodes that had said ready for "
                     f"≥ {budget_s:g} s all succeeded{blind}", data)

    return named(NAME, run)
