"""The explorer's schedule generator as a pure function: same seed, same schedule; the composition rules
hold for every schedule drawn; a schedule survives JSON unchanged (what --replay relies on)."""

from __future__ import annotations

import json
from itertools import combinations

import pytest

from harness.explore.schedule import (
    COMPOSITE_KINDS,
    DRAIN_LEAD_S,
    EXPLORABLE,
    OPERATOR_KINDS,
    OVERLAP_SLACK_S,
    Schedule,
    Step,
    Timing,
    check_kinds,
    generate,
)
from harness.faults.plan import plan_link, plan_partition, plan_targets
from harness.faults.shapes import SHAPES
from harness.faults.spec import Fault, Kill, Latency, Partition, Restart
from harness.platforms.base import Timers

# the topology scenarios/explore_segments.py deploys (3 nodes, 2 gates, 3 etcd members)
TOPOLOGY = {"node-0": "node", "node-1": "node", "node-2": "node", "gate-0": "gate", "gate-1": "gate",
            "etcd-0": "etcd", "etcd-1": "etcd", "etcd-2": "etcd", "postgres": "postgres", "inspector": "inspector"}
PROXIED = ("node-etcd", "gate-etcd")


def draw(seed: int, n: int = 60, **kw: object) -> list[Schedule]:
    return [generate(seed, i, TOPOLOGY, proxied=PROXIED, **kw) for i in range(n)]  # type: ignore[arg-type]


def test_same_seed_same_schedules_other_seed_others() -> None:
    a, b = draw(7), draw(7)
    assert [s.to_dict() for s in a] == [s.to_dict() for s in b]
    c = draw(8)
    assert [s.to_dict() for s in a] != [s.to_dict() for s in c]
    # the segment's index matters too, and the shared harness RNG does not
    from harness import random as hrand

    hrand.seed(1)
    x = generate(7, 3, TOPOLOGY, proxied=PROXIED)
    hrand.seed(2)
    assert generate(7, 3, TOPOLOGY, proxied=PROXIED) == x != generate(7, 4, TOPOLOGY, proxied=PROXIED)


def test_schedules_round_trip_through_json() -> None:
    for s in draw(11):
        back = Schedule.from_dict(json.loads(json.dumps(s.to_dict())))
        assert back == s and back.id == s.id == f"seed11-{s.index:03d}"
    with pytest.raises(ValueError, match="not an explore schedule"):
        Schedule.from_dict({"schema": "other", "seed": 1, "index": 0, "steps": []})


def _resources(step: Step) -> set[str]:
    """What a step holds, recomputed independently of the generator from its resolved targets."""
    f = step.fault
    out: set[str] = set()
    if isinstance(f, Partition):
        out.add("partition")
    for attr in ("target",):
        t = getattr(f, attr, None)
        if isinstance(t, str) and t in TOPOLOGY:
            out.add(t)
    link = getattr(f, "link", None)
    if link is not None:
        out.add(f"link:{link[0]}>{link[1]}")
    if f.kind == "disk":
        out.add("disk")
    return out


def _out(step: Step) -> str | None:
    """The node a step takes out of service, if any (kill/pause/restart/OOM/partition of a node)."""
    f = step.fault
    t = getattr(f, "target", None)
    if f.kind in ("kill", "pause", "restart", "memory-pressure") and t in TOPOLOGY and TOPOLOGY[t] == "node":
        return t
    if isinstance(f, Partition) and (t is None or t == "random" or TOPOLOGY.get(t) == "node"):
        return "partition"
    return None


def _overlap(a: Step, b: Step) -> bool:
    return a.at_s < b.at_s + b.hold_s + OVERLAP_SLACK_S and b.at_s < a.at_s + a.hold_s + OVERLAP_SLACK_S


def test_composition_rules_hold_for_every_schedule() -> None:
    schedules = draw(3, 300)
    kinds_seen = {st.fault.kind for s in schedules for st in s.steps}
    kinds_seen |= {"drain"} if any(_drains(s) for s in schedules) else set()
    kinds_seen = {"rotate-secret" if k == "rotate-password" else k for k in kinds_seen}  # its Fault.kind
    assert kinds_seen == set(EXPLORABLE), f"300 schedules never drew {set(EXPLORABLE) - kinds_seen}"
    assert any(len(s.steps) >= 2 and any(_overlap(a, b) for a, b in combinations(s.steps, 2)) for s in schedules), \
        "no schedule overlaps two faults"
    for s in schedules:
        assert 1 <= len(s.steps) - len(_drains(s)) <= 3  # a drain's two steps are one fault
        if any(st.fault.kind in OPERATOR_KINDS for st in s.steps):
            assert len(s.steps) == 1, f"an operator action runs alone: {s.describe()}"
        for a, b in combinations(s.steps, 2):
            if not _overlap(a, b):
                continue
            assert not (_resources(a) & _resources(b)), f"overlapping faults share a resource: {s.describe()}"
            assert not (_out(a) and _out(b)), f"two nodes out at once: {s.describe()}"
            etcd = [st for st in (a, b) if TOPOLOGY.get(getattr(st.fault, "target", "") or "") == "etcd"]
            assert len(etcd) < 2, f"two etcd members hit at once: {s.describe()}"
        assert [st.at_s for st in s.steps] == sorted(st.at_s for st in s.steps)


def _drains(s: Schedule) -> list[tuple[Step, Step]]:
    """The drain composites of ``s``: (latency on a node's PostgreSQL link, graceful restart of that node)."""
    out = []
    for a in s.steps:
        held = isinstance(a.fault, Latency) and a.fault.link[1] == "postgres"
        if held and a.fault.ms >= 1000 * Timing().drain_hold_s():  # type: ignore[attr-defined]
            out += [(a, b) for b in s.steps if isinstance(b.fault, Restart) and b.fault.target == a.fault.link[0]
                    and b.fault.graceful and b.at_s == round(a.at_s + DRAIN_LEAD_S, 1)]
    return out


def test_a_drain_holds_the_nodes_writes_across_its_sigterm() -> None:
    """``drain``: a graceful restart of a node DRAIN_LEAD_S after its link to PostgreSQL got the drain
    scenario's hold (4 s with the fast timers), healed just before the SIGTERM; drawn in a fair share
    of schedules, and scaled with the stack's timers."""
    assert COMPOSITE_KINDS["drain"] == ("latency", "restart")
    schedules = draw(1, 200)
    with_drain = [s for s in schedules if _drains(s)]
    assert len(with_drain) >= 200 // 20, f"only {len(with_drain)} of 200 schedules drain a node"
    for s in with_drain:
        for slow, stop in _drains(s):
            assert isinstance(slow.fault, Latency) and slow.fault.ms == 4000
            # healed just before the SIGTERM: what the node sent in the second before stays held across it
            assert stop.at_s - 0.2 < slow.at_s + slow.hold_s < stop.at_s and slow.hold_s >= 0.5
            assert TOPOLOGY[stop.fault.target] == "node"  # type: ignore[attr-defined]
    only = draw(2, 20, kinds=("drain",))
    assert all(len(_drains(s)) >= 1 and all(st.fault.kind in ("latency", "restart") for st in s.steps) for s in only)
    slow_timers = Timing(lease_ttl=15.0, call_timeout=30.0, shutdown_grace=30.0)
    assert slow_timers.drain_hold_s() == 24.5  # min(grace − 5.5 s, call timeout − 1 s)
    assert {st.fault.ms for s in draw(2, 10, kinds=("drain",), timing=slow_timers) for st in s.steps  # type: ignore[attr-defined]
            if isinstance(st.fault, Latency)} == {24500}


def test_every_drawn_fault_resolves_over_the_topology() -> None:
    """Targets are concrete instances (replays hit the same ones) and every fault plans cleanly."""
    import random

    for s in draw(5, 200):
        for st in s.steps:
            f = Fault.from_dict(st.fault.to_dict())
            assert f == st.fault
            if isinstance(f, Partition):
                plan = plan_partition(f, TOPOLOGY, random.Random(0))
                assert plan.grudge
            elif hasattr(f, "link"):
                assert plan_link(f.link, TOPOLOGY)  # type: ignore[attr-defined]
            elif isinstance(getattr(f, "target", None), str):
                assert plan_targets(f.target, TOPOLOGY) == [f.target]  # type: ignore[attr-defined]


def test_kinds_restrict_what_is_drawn_and_are_validated() -> None:
    only = draw(9, 50, kinds=("kill",))
    assert {st.fault.kind for s in only for st in s.steps} == {"kill"}
    assert all(isinstance(st.fault, Kill) for s in only for st in s.steps)
    with pytest.raises(ValueError, match="unknown fault kind.*bogus.*allowed: kill"):
        check_kinds(["kill", "bogus"])
    with pytest.raises(ValueError, match="no fault kind"):
        check_kinds([])


def test_holds_scale_with_the_stack_timers() -> None:
    fast = draw(4, 80, kinds=("pause",))
    slow_t = Timing(lease_ttl=15.0, call_timeout=30.0, failover_s=34.0)
    slow = draw(4, 80, kinds=("pause",), timing=slow_t)
    held = Timing().held_down_s()
    assert max(st.hold_s for s in fast for st in s.steps if st.hold_s != held) <= 3.0 + 5.0 + 1.0
    assert max(st.hold_s for s in slow for st in s.steps if st.hold_s != slow_t.held_down_s()) > 9.0


def test_nodes_are_sometimes_held_down_past_the_failover_budget() -> None:
    """Only a node's SIGKILL or pause is held down (a dead machine stays dead), for the failover budget
    plus ``HELD_DOWN_PAST_S``: the outage the failover check needs (scenarios/explore_segments.py)."""
    t = Timing()
    steps = [st for s in draw(1, 200, kinds=("kill", "pause")) for st in s.steps]
    held = [st for st in steps if st.hold_s == t.held_down_s()]
    assert t.held_down_s() == 12.0
    assert held and all(st.fault.target.startswith("node") for st in held)  # type: ignore[attr-defined]
    assert all(getattr(st.fault, "signal", "SIGKILL") == "SIGKILL" for st in held)
    node_outages = [st for st in steps if st.fault.target.startswith("node")  # type: ignore[attr-defined]
                    and getattr(st.fault, "signal", "SIGKILL") == "SIGKILL"]
    assert 0.3 < len(held) / len(node_outages) < 0.7
    assert Timing.of(Timers()).failover_s == t.failover_s  # the default is the fast timers' budget


def test_the_stale_node_shape_is_drawn_more_than_its_uniform_share() -> None:
    parts = [st.fault for s in draw(1, 300, kinds=("partition",)) for st in s.steps]
    share = sum(getattr(p, "shape", "") == "node-gate-etcd" for p in parts) / len(parts)
    assert share > 1.5 / len(SHAPES)


def test_a_topology_without_etcd_quorum_never_kills_etcd() -> None:
    one_etcd = {k: v for k, v in TOPOLOGY.items() if k not in ("etcd-1", "etcd-2")}
    for i in range(100):
        s = generate(2, i, one_etcd, kinds=("kill", "pause", "restart"))
        assert all(getattr(st.fault, "target", "") != "etcd-0" for st in s.steps), s.describe()
