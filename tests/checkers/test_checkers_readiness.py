"""ready_means_serving on crafted histories: a node that said /ready 200 and then failed calls to the
shards it owns fails the check; the same failures while it was not ready, just before its readiness
dropped, or while its shard had only just settled on it, do not."""

from __future__ import annotations

import itertools

from harness.checkers.readiness import PLACEMENT_F, READY_F, ready_means_serving
from harness.checkers.verdict import Verdict
from harness.history import Event, History
from harness.sharding import shard_of
from tests.support.paths import ROOT

SHARDS = 4
BUDGET = 0.75
_ids = itertools.count(1)
# one key per shard: node-0 settles shards 0 and 1, node-1 shards 2 and 3
KEYS = {shard_of(k, SHARDS): k for k in (f"k{i}" for i in range(40))}


def ready(t: float, inst: str, ok: bool) -> Event:
    return Event(t, "sample", "readiness", READY_F,
                 value={"instance": inst, "component": inst.split("-")[0], "ready": ok, "reason": ""})


def placement(t: float, serving: dict[str, list[int]]) -> Event:
    return Event(t, "sample", "oracle", PLACEMENT_F, value={"shards": SHARDS, "serving": serving})


def call(t: float, shard: int, outcome: str = "ok", gate: str = "gate-0", f: str = "probe") -> list[Event]:
    """A call on ``shard``'s key; one that succeeds names the node that served it (``base``'s placement)."""
    i = next(_ids)
    key = KEYS[shard]
    served = {"node": "node-0" if shard in (0, 1) else "node-1"} if outcome == "ok" else {}
    return [Event(t, "invoke", "probe-0", f, key=key, op_id=i, node=gate),
            Event(t + 0.01, outcome, "probe-0", f, key=key, op_id=i, value=0 if outcome == "ok" else None,
                  error=None if outcome == "ok" else "CALL_FAILED: shard 1 is being claimed by this node",
                  extra={"gate": gate, **served})]


def base(extra: list[Event], refused: tuple[int, float, float] | None = None) -> History:
    """5 s of calls on every shard (each shard every 0.4 s), all good but for ``refused``: (shard, from,
    to) — that shard's calls in [from, to) fail (a shard its node refuses for a while)."""
    evs = [ready(0.0, "node-0", True), ready(0.0, "node-1", True), ready(0.0, "gate-0", True),
           placement(0.0, {"node-0": [0, 1], "node-1": [2, 3]})]
    for n in range(50):
        t, shard = round(n * 0.1, 3), n % SHARDS
        bad = refused is not None and shard == refused[0] and refused[1] <= t < refused[2]
        evs += call(t, shard, "fail" if bad else "ok")
    evs += extra
    evs.sort(key=lambda e: e.t)
    return History(evs)


def run(h: History):
    return ready_means_serving(BUDGET)(h)


def test_calls_that_all_succeed_pass():
    c = run(base([]))
    assert c.verdict is Verdict.PASS, c.detail
    assert c.data["judged"] == 42  # the 8 calls of the first budget (0.0 … 0.7 s) have no ready stretch behind them


def test_a_ready_node_failing_its_shards_fails():
    """node-0 says ready throughout (the seeded bug ready-before-serving: claimed, warming up) and
    fails calls to shard 1, settled on it since t=0, for half a second."""
    c = run(base(call(2.15, 1, "info"), refused=(1, 2.0, 2.6)))
    assert c.verdict is Verdict.FAIL, c.detail
    assert [(v["node"], v["t"]) for v in c.data["violations"]] == [("node-0", 2.1), ("node-0", 2.15), ("node-0", 2.5)]
    assert "node-0" in c.detail and "3 of" in c.detail


def test_a_refusal_too_short_for_the_poller_to_see_is_not_judged():
    """One call refused by node-0 between two good ones on the same shard (its lease lapsed locally for
    30 ms after a slow keepalive, explore schedule seed1-018 on the correct build): /ready said 503
    only between two polls. Unobservable, kept in the data; the same refusals stretched over 0.3 s
    are a violation."""
    c = run(base(call(2.3, 1, "fail")))
    assert c.verdict is Verdict.PASS, c.detail
    assert [v["t"] for v in c.data["unobservable"]] == [2.3] and c.data["violations"] == []
    c = run(base(call(2.3, 1, "fail") + call(2.35, 0, "fail")))  # two shards, one moment: one lapse
    assert c.verdict is Verdict.PASS, c.detail
    c = run(base(call(2.2, 1, "fail") + call(2.45, 1, "fail")))  # no success between, 0.26 s apart
    assert c.verdict is Verdict.FAIL and len(c.data["violations"]) == 2, c.detail
    # node-0 refuses shard 1 four times within 0.1 s while serving shard 0 among them: it was up and
    # serving, refusing one shard (ready-before-serving's shape: a freshly claimed shard still warming
    # up) — counted; the same refusals with nothing served among them look like a lapse: not judged
    burst = [e for t in (2.31, 2.33, 2.35, 2.37) for e in call(t, 1, "fail")]
    c = run(base(burst + call(2.34, 0)))
    assert c.verdict is Verdict.FAIL and len(c.data["violations"]) == 4, c.detail
    assert run(base(burst)).verdict is Verdict.PASS


def test_failures_while_not_ready_or_about_to_drop_or_just_settled_do_not_count():
    evs = [
        # node-1 goes not ready at 2.0 (SIGTERM) and its calls fail from 1.9: the +budget side covers it
        ready(2.0, "node-1", False), *call(1.9, 2, "fail"), *call(2.5, 3, "fail"),
        ready(3.5, "node-1", True), *call(3.6, 2, "fail"),  # ready again, not yet for a whole budget
        # shard 0 moves to node-1 at 4.0: failures within the budget after it settled are the gates' lag
        placement(4.0, {"node-0": [1], "node-1": [0, 2, 3]}), *call(4.3, 0, "fail"),
        # shard 1 goes into migration at 4.9; a gate saw it before the recorder's sample at 5.1 (seen on
        # the correct build: "shard 40 is in migration from node-1 to node-0" at t = 7.797)
        *call(4.95, 1, "fail"), placement(5.1, {"node-1": [0, 2, 3]}),
    ]
    c = run(base(evs))
    assert c.verdict is Verdict.PASS, c.detail


def test_calls_cut_by_a_fault_aimed_at_their_node_do_not_count_but_the_survivors_do():
    """A kill of node-0 that first held PostgreSQL's replies: node-0's calls of the hold end unknown at
    the kill while it still said ready (the poller saw the kill late, at 2.9) — the kill's doing.
    node-1, not targeted, failing its shards while ready is still a violation."""
    kill = [Event(2.5, "nemesis", "nemesis", "start",
                  value={"id": "f1", "kind": "kill", "target": ["node-0"], "params": {"apply_began_at": 2.2}}),
            Event(4.0, "nemesis", "nemesis", "stop", value={"id": "f1", "kind": "kill", "target": ["node-0"]})]
    held = []
    for n in range(3):  # invoked during the hold (before apply_began_at), unanswered until the kill
        i = next(_ids)
        held += [Event(2.0 + n * 0.05, "invoke", "burst-0", "increment", key=KEYS[0], op_id=i, value=1),
                 Event(2.51, "info", "burst-0", "increment", key=KEYS[0], op_id=i, error="CALL_TIMEOUT")]
    c = run(base(kill + held + [ready(2.9, "node-0", False)]))
    assert c.verdict is Verdict.PASS, c.detail
    c = run(base(kill + held + [ready(2.9, "node-0", False)], refused=(2, 3.0, 3.5)))
    assert c.verdict is Verdict.FAIL and [v["node"] for v in c.data["violations"]] == ["node-1"] * 2, c.detail


def test_a_call_through_a_gate_that_is_not_ready_is_not_the_nodes_fault():
    c = run(base([ready(2.0, "gate-1", False), *call(2.5, 1, "fail", gate="gate-1")]))
    assert c.verdict is Verdict.PASS, c.detail


def test_unknown_without_readiness_or_placement_or_anything_judged():
    only_calls = History(sorted(call(1.0, 0, "fail"), key=lambda e: e.t))
    assert run(only_calls).verdict is Verdict.UNKNOWN
    # recorded, but every node turned not ready before any call: nothing was judged
    h = History(sorted([ready(0.0, "node-0", False), ready(0.0, "node-1", False),
                        placement(0.0, {"node-0": [0, 1], "node-1": [2, 3]}), *call(2.0, 0, "fail")],
                       key=lambda e: e.t))
    c = run(h)
    assert c.verdict is Verdict.UNKNOWN and "nothing to judge" in c.detail


def test_a_history_where_every_call_failed_on_ready_nodes_fails():
    evs = [ready(0.0, "node-0", True), ready(0.0, "node-1", True),
           placement(0.0, {"node-0": [0, 1], "node-1": [2, 3]})]
    for n in range(40):
        evs += call(1.0 + n * 0.1, n % SHARDS, "fail")
    c = run(History(sorted(evs, key=lambda e: e.t)))
    assert c.verdict is Verdict.FAIL
    assert len(c.data["violations"]) == 40


def _disk_full(t0: float, t1: float) -> list[Event]:
    """A fault on what every node shares (PostgreSQL's disk): its target names no node."""
    return [Event(t0, "nemesis", "nemesis", "start",
                  value={"id": "d1", "kind": "disk", "target": ["postgres"], "params": {}}),
            Event(t1, "nemesis", "nemesis", "stop", value={"id": "d1", "kind": "disk", "target": ["postgres"]})]


def test_any_fault_excuses_calls_cut_by_a_shared_fault_but_not_after_its_heal():
    """The explorer's form: node-0 fails writes while PostgreSQL's disk is full and rightly says ready —
    excused with any_fault (not without: the fault names no node). After the heal node-0 still says
    ready and fails its shard (ready-before-serving after a rebalance): a violation either way."""
    during = _disk_full(2.0, 3.0)
    assert run(base(during, refused=(1, 2.0, 3.0))).verdict is Verdict.FAIL  # aimed-only: not excused
    c = ready_means_serving(BUDGET, any_fault=True)(base(during, refused=(1, 2.0, 3.0)))
    assert c.verdict is Verdict.PASS and c.data["any_fault"] is True, c.detail
    c = ready_means_serving(BUDGET, any_fault=True)(base(during, refused=(1, 2.0, 4.0)))
    assert c.verdict is Verdict.FAIL, c.detail
    assert [(v["node"], v["t"]) for v in c.data["violations"]] == [("node-0", 3.3), ("node-0", 3.7)]


def test_recorded_lease_lapse_on_the_correct_build_is_unobservable():
    """A real segment (explore schedule seed1-018 replayed on the correct build, trimmed to node-1's
    shards): node-1 refused one deposit "no live etcd lease" 0.4 s after its one-way isolation healed
    — its lease lapsed locally for ~30 ms while a keepalive failed over between etcd members — and no
    poll of its /ready fell in that moment. Judged with blind_s=0 it is the false alarm it used to be."""
    h = History.load(ROOT / "tests" / "data" / "histories" / "explore_lease_lapse_unobservable.jsonl")
    c = ready_means_serving(BUDGET, any_fault=True)(h)
    assert c.verdict is Verdict.PASS and [v["op_id"] for v in c.data["unobservable"]] == [449], c.detail
    assert "1 refused in moments shorter than the readiness poller can see" in c.detail
    assert ready_means_serving(BUDGET, any_fault=True, blind_s=0.0)(h).verdict is Verdict.FAIL


def test_recorded_calls_queued_into_a_lease_lapse_are_one_moment():
    """The same schedule on the correct build another time (trimmed likewise): two deposits on one
    wallet, invoked 0.4 s apart — the first queued behind others — were both refused at 5.53 s, in one
    lapse ("confirmed alive again 0.04s after the local deadline"). A refusal is placed at its call's
    completion; placed at the invocations the two spanned 0.5 s and were judged a violation."""
    h = History.load(ROOT / "tests" / "data" / "histories" / "explore_lease_lapse_queued_calls.jsonl")
    c = ready_means_serving(BUDGET, any_fault=True)(h)
    assert c.verdict is Verdict.PASS, c.detail
    assert {v["op_id"] for v in c.data["unobservable"]} >= {606, 667}
