"""Random fault schedules for ``goverse-harness explore``: a pure function of (seed, index, topology,
kinds, timers).

Why pure: an explorer that finds a failure is only useful if the failure can be run again. Jepsen's
generators compose faults at random; here the whole schedule of one segment — which faults, on which
instances, when, for how long — is drawn up front from an RNG derived from the seed and the segment's
index (never from the shared harness RNG, whose draws depend on what else ran), with every target
already resolved to an instance name. The schedule is then plain JSON: saved with a failure and
replayed verbatim (``explore --replay``), independent of the generator's later changes.

Composition rules (what keeps a schedule meaningful rather than merely destructive):

- faults overlap in time, but two overlapping faults never hold the same *resource*: the same
  instance (one process cannot be paused and killed at once), two partitions (one grudge at a time),
  the same link, PostgreSQL's disk;
- at most one node is *out* at a time (killed, paused, restarted, OOM-killed, cut off) and at most one
  etcd member is touched at a time, so the cluster keeps a quorum and the correct stack can always
  recover — a failure of the correct build is then a real finding, not a schedule that made service
  impossible;
- an operator action (scale, rolling restart) runs alone: it waits for the cluster to settle between
  its steps, which a concurrent fault would turn into a timeout rather than a finding.

A *composite* kind draws several steps that only mean something together: ``drain`` is a graceful
restart of a node while its writes are held in PostgreSQL (latency on its link, the drain scenario's
mechanism, scenarios/test_restarts.py ``test_sigterm_drain_near_grace``), so calls are in flight inside
the node at the SIGTERM and the drain lasts seconds — long enough to judge that the node drains them,
that its /ready drops meanwhile and that it exits on its own within the grace period (``_drain``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness import budgets
from harness.faults.shapes import SHAPES, TARGETED_SHAPES, VICTIM_ROLE
from harness.faults.spec import (
    CpuStress,
    DiskFault,
    DiskKind,
    Fault,
    Kill,
    Latency,
    MemoryPressure,
    Partition,
    Pause,
    Reset,
    Restart,
    RollingRestart,
    RotateSecret,
    ScaleTo,
    Timeout,
)

SCHEMA = "goverse-harness/explore-schedule/v1"

# Fault kinds the explorer draws from, with their weight (how often they are drawn relative to the
# others; process faults and partitions are where most distributed-systems bugs live, Jepsen's default
# mix). Operator actions that need set-up or would leave the stack changed for the next segment
# (upgrade, backup, restore, config update) are left to their own scenarios; a secret rotation has no
# undo and needs none (the stack runs on with the new password). ``drain`` is drawn as often as a
# plain restart so that a 5-10 minute budget draws one (its held calls are what the SIGTERM checks need).
WEIGHTS: dict[str, int] = {
    "kill": 4, "pause": 3, "restart": 2, "partition": 3, "latency": 1, "timeout": 1, "reset": 1,
    "cpu-stress": 1, "memory-pressure": 1, "disk": 1, "scale": 1, "rolling-restart": 1, "drain": 2,
    "rotate-secret": 1,
}
EXPLORABLE: tuple[str, ...] = tuple(WEIGHTS)
OPERATOR_KINDS = frozenset({"scale", "rolling-restart", "rotate-secret"})
# a composite kind -> the fault kinds of the steps it draws
COMPOSITE_KINDS: dict[str, tuple[str, ...]] = {"drain": ("latency", "restart")}

MAX_START_S = 6.0  # faults start within this many seconds of the segment's start
OVERLAP_SLACK_S = 2.0  # an inject or heal takes time (a restart, a roll): windows are padded by this
# the reference node keeps 5 s of its grace for flush, handover and closing after the drain (the same
# margin as scenarios/test_restarts.py DRAIN_MARGIN_S, which harness code cannot import)
DRAIN_MARGIN_S = 5.5
DRAIN_LEAD_S = 1.0  # the writes are held this long before the SIGTERM, so some are in flight in the node
DRAIN_HEAL_BEFORE_S = 0.1  # the latency is healed this long before the SIGTERM (what it delayed stays delayed)
# A node killed (SIGKILL) or paused is sometimes *held down* past the failover budget, as a machine that
# died stays dead: only then must the cluster move its shards (a shorter outage ends with the node
# serving them again, so a failover that never comes cannot show). Drawn from the segment's second RNG
# (``aux_rng_for``) so that adding it redrew no other fault of a schedule.
HELD_DOWN_P = 0.5
HELD_DOWN_PAST_S = 2.0  # held this long past the failover budget
# The stale-view shape where a node is cut from etcd while the gates still reach it and route to it by
# their old map (``node-gate-etcd``): what a node must do when its lease ends while it still gets calls.
# Drawn for this share of node-targeted partitions (second RNG) on top of its uniform share of shapes.
STALE_NODE_SHAPE = "node-gate-etcd"
STALE_NODE_P = 0.5


@dataclass(frozen=True)
class Timing:
    """The stack's timers the holds are scaled from (defaults: the reference stack's fast timers)."""

    lease_ttl: float = 3.0
    call_timeout: float = 5.0
    shutdown_grace: float = 10.0
    failover_s: float = 10.0  # harness.budgets.failover: a dead node's shards are served again within this

    @classmethod
    def of(cls, timers: Any) -> Timing:
        return cls(float(timers.lease_ttl), float(timers.call_timeout), float(timers.shutdown_grace),
                   budgets.failover(timers))

    def stale_hold_s(self) -> float:
        """Past a lease and the call timeout (scenarios/test_stale_view.py ``lease_hold``): a node cut from
        etcd has lost its lease, and the calls queued behind it have timed out, before the cut heals."""
        return self.lease_ttl + self.call_timeout + 1.0

    def held_down_s(self) -> float:
        """How long a held-down node outage lasts: past the failover budget, so the shards must move."""
        return _r(self.failover_s + HELD_DOWN_PAST_S)

    def drain_hold_s(self) -> float:
        """How long a drain's writes are held in PostgreSQL: min(grace − margin, call timeout − 1 s), the
        drain scenario's ``near_grace_hold`` (4 s with the fast timers)."""
        return round(max(1.0, min(self.shutdown_grace - DRAIN_MARGIN_S, self.call_timeout - 1.0)), 2)


@dataclass(frozen=True)
class Step:
    """One fault of a schedule: injected ``at_s`` after the segment's start, healed ``hold_s`` later."""

    at_s: float
    hold_s: float
    fault: Fault

    def to_dict(self) -> dict[str, Any]:
        return {"at_s": self.at_s, "hold_s": self.hold_s, "id": str(self.fault), "fault": self.fault.to_dict()}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Step:
        return Step(float(d["at_s"]), float(d["hold_s"]), Fault.from_dict(d["fault"]))


@dataclass(frozen=True)
class Schedule:
    """The faults of one explore segment, in start order."""

    seed: int
    index: int
    steps: tuple[Step, ...]

    @property
    def id(self) -> str:
        return f"seed{self.seed}-{self.index:03d}"

    @property
    def span_s(self) -> float:
        """When the last fault is due to heal (its inject and heal times not counted)."""
        return max((s.at_s + s.hold_s for s in self.steps), default=0.0)

    def describe(self) -> str:
        return "; ".join(f"{s.fault} @{s.at_s:g}s for {s.hold_s:g}s" for s in self.steps) or "(no fault)"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "id": self.id, "seed": self.seed, "index": self.index,
                "steps": [s.to_dict() for s in self.steps]}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Schedule:
        if d.get("schema") != SCHEMA:
            raise ValueError(f"not an explore schedule (schema {d.get('schema')!r}, expected {SCHEMA!r})")
        return Schedule(int(d["seed"]), int(d["index"]), tuple(Step.from_dict(s) for s in d["steps"]))


def rng_for(seed: int, index: int, stream: str = "") -> random.Random:
    """The segment's own RNG: a function of seed and index only (sha256, not the salted ``hash``)."""
    digest = hashlib.sha256(f"goverse-harness explore:{seed}:{index}{stream}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def aux_rng_for(seed: int, index: int) -> random.Random:
    """The segment's second RNG, for choices added to the generator later (held-down outages, the
    stale-node shape): drawing them from the first would have redrawn every schedule after them."""
    return rng_for(seed, index, ":aux")


def check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """``kinds`` validated against :data:`EXPLORABLE` (ValueError naming the unknown ones)."""
    bad = [k for k in kinds if k not in WEIGHTS]
    if bad:
        raise ValueError(f"unknown fault kind(s) {', '.join(bad)}; allowed: {', '.join(EXPLORABLE)}")
    if not kinds:
        raise ValueError(f"no fault kind given; allowed: {', '.join(EXPLORABLE)}")
    return tuple(dict.fromkeys(kinds))


# ---- the generator ---------------------------------------------------------------------------------
Draw = tuple[Fault, float, frozenset[str]]  # a fault, its hold, the resources it holds


class _Topo:
    def __init__(self, topology: Mapping[str, str], proxied: frozenset[str],
                 aux: random.Random | None = None) -> None:
        self.aux = aux or random.Random(0)
        by: dict[str, list[str]] = {}
        for name in sorted(topology, key=_natural):
            by.setdefault(topology[name], []).append(name)
        self.nodes, self.gates, self.etcd = by.get("node", []), by.get("gate", []), by.get("etcd", [])
        self.postgres = bool(by.get("postgres"))
        self.proxied = proxied

    def process_target(self, rng: random.Random) -> str:
        """A node most of the time; a gate; an etcd member only where a quorum survives losing one."""
        pools = [(self.nodes, 6), (self.gates, 2), (self.etcd if len(self.etcd) >= 3 else [], 2)]
        pools = [(p, w) for p, w in pools if p]
        pool = rng.choices([p for p, _ in pools], weights=[w for _, w in pools])[0]
        return rng.choice(pool)

    def links(self) -> list[tuple[str, str]]:
        """Links a fault can be put on: node → PostgreSQL always (proxied), gate → node (direct nft for
        timeouts and resets), node/gate → etcd when those links go through the proxy."""
        out = [(n, "postgres") for n in self.nodes] if self.postgres else []
        out += [("gates", n) for n in self.nodes]
        # the first member: an etcd client talks to one endpoint at a time, its first while it answers,
        # so a link to a member it does not use would do nothing (the injector refuses it: Unsupported)
        if "node-etcd" in self.proxied and self.etcd:
            out += [(n, self.etcd[0]) for n in self.nodes]
        if "gate-etcd" in self.proxied and self.etcd:
            out += [(g, self.etcd[0]) for g in self.gates]
        return out


def _natural(name: str) -> tuple[str, int]:
    head, _, tail = name.rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (name, -1)


def _outage(target: str, topo: _Topo) -> frozenset[str]:
    res = {target}
    if target in topo.nodes:
        res.add("node-outage")
    if target in topo.etcd:
        res.add("etcd-quorum")
    return frozenset(res)


def _r(x: float) -> float:
    return round(x, 1)


def _held_down(hold: float, target: str, topo: _Topo, t: Timing) -> float:
    """``hold``, or for a node a share ``HELD_DOWN_P`` of the time the held-down hold (second RNG)."""
    if target in topo.nodes and topo.aux.random() < HELD_DOWN_P:
        return t.held_down_s()
    return hold


def _kill(rng: random.Random, topo: _Topo, t: Timing) -> Draw:
    target = topo.process_target(rng)
    sig = rng.choices(["SIGKILL", "SIGTERM"], weights=[7, 3])[0]
    hold = _r(rng.uniform(0.5, 2.0) * t.lease_ttl)
    if sig == "SIGKILL":
        hold = _held_down(hold, target, topo, t)
    return Kill(target, sig), hold, _outage(target, topo)


def _pause(rng: random.Random, topo: _Topo, t: Timing) -> Draw:
    target = topo.process_target(rng)
    hold = _held_down(_r(rng.uniform(1.0, t.lease_ttl + t.call_timeout + 1.0)), target, topo, t)
    return Pause(target), hold, _outage(target, topo)


def _restart(rng: random.Random, topo: _Topo, t: Timing) -> Draw:
    target = topo.process_target(rng)
    return Restart(target, graceful=rng.random() < 0.5), 0.0, _outage(target, topo)


def _partition(rng: random.Random, topo: _Topo, t: Timing) -> Draw:
    shapes = [s for s in SHAPES if s != "majorities-ring" or len(topo.nodes) + len(topo.etcd) >= 5]
    shape = rng.choice(shapes)
    if shape in TARGETED_SHAPES and VICTIM_ROLE.get(shape, "node") == "node" and topo.aux.random() < STALE_NODE_P:
        shape = STALE_NODE_SHAPE
    res = {"partition", "node-outage", "etcd-quorum"}
    if shape in TARGETED_SHAPES:
        role = VICTIM_ROLE.get(shape, "node")
        victim = rng.choice(topo.gates if role == "gate" else topo.nodes)
        fault = Partition(shape, target=victim, one_way=rng.random() < 0.3)
        res.add(victim)
        if role == "gate":
            res -= {"node-outage", "etcd-quorum"}
    else:
        fault = Partition(shape, target="random")
    hold = _r(rng.uniform(1.0, t.stale_hold_s()))
    if shape == STALE_NODE_SHAPE:  # its lease must run out while a gate still routes to it
        hold = t.stale_hold_s()
    return fault, hold, frozenset(res)


def _link(rng: random.Random, topo: _Topo, proxied_only: bool) -> tuple[str, str]:
    links = topo.links()
    if proxied_only:  # latency needs the proxy: gate → node is not wired through it here
        links = [lk for lk in links if lk[0] != "gates"]
    return rng.choice(links)


def _latency(rng: random.Random, topo: _Topo, t: Timing) -> Draw:
    link = _link(rng, topo, proxied_only=True)
    ms = rng.choice([50, 100, 200, 500, 1000])
    fault = Latency(link, ms=ms, jitter_ms=rng.choice([0, ms // 4]),
                    direction=rng.choice(["upstream", "downstream", "both"]))
    return fault, _r(rng.uniform(2.0, 2 * t.lease_ttl + 2.0)), frozenset({f"link:{link[0]}>{link[1]}"})


def _timeout(rng: random.Random, topo: _Topo, t: Timing) -> Draw:
    link = _link(rng, topo, proxied_only=False)
    return Timeout(link), _r(rng.uniform(1.0, t.lease_ttl + t.call_timeout)), frozenset({f"link:{link[0]}>{link[1]}"})


def _reset(rng: random.Random, topo: _Topo, t: Timing) -> Draw:
    link = _link(rng, topo, proxied_only=False)
    return Reset(link), _r(rng.uniform(1.0, 2 * t.lease_ttl)), frozenset({f"link:{link[0]}>{link[1]}"})


def _cpu(rng: random.Random, topo: _Topo, t: Timing) -> Draw:
    target = rng.choice(topo.nodes + topo.gates)
    return (CpuStress(target, quota=rng.choice([0.02, 0.05, 0.1])), _r(rng.uniform(2.0, 2 * t.lease_ttl)),
            frozenset({target}))


def _memory(rng: random.Random, topo: _Topo, t: Timing) -> Draw:
    target = rng.choice(topo.nodes)
    return MemoryPressure(target, limit_mb=64), _r(rng.uniform(2.0, 2 * t.lease_ttl)), _outage(target, topo)


def _disk(rng: random.Random, topo: _Topo, t: Timing) -> Draw:
    # eio can corrupt PostgreSQL for good: no recovery to judge
    kind: DiskKind = "full" if rng.random() < 0.5 else "latency"
    return DiskFault("postgres", kind, latency_ms=50), _r(rng.uniform(2.0, 2 * t.lease_ttl)), frozenset({"disk"})


def _scale(rng: random.Random, topo: _Topo, t: Timing) -> Draw:
    component = rng.choice(["node", "gate"] if len(topo.gates) >= 1 else ["node"])
    now = len(topo.nodes if component == "node" else topo.gates)
    low = 2 if component == "node" else 1
    n = rng.choice([c for c in (now - 1, now + 1) if c >= low] or [now + 1])
    return ScaleTo(component, n), _r(rng.uniform(2.0, 6.0)), frozenset({"operator"})


def _rolling(rng: random.Random, topo: _Topo, t: Timing) -> Draw:
    components = rng.choice([("node",), ("gate",)])
    return RollingRestart(components), 0.0, frozenset({"operator"})


def _rotate(rng: random.Random, topo: _Topo, t: Timing) -> Draw:
    # no undo, and none needed: the stack runs on with the new password (the heal verifies the rotation)
    return RotateSecret(), 0.0, frozenset({"operator"})


def _drain(rng: random.Random, topo: _Topo, t: Timing) -> list[tuple[float, Draw]]:
    """A graceful restart of a node whose writes PostgreSQL holds: latency of ``drain_hold_s`` on its
    link for the ``DRAIN_LEAD_S`` before the SIGTERM, healed just before it. What the node sent in that
    second stays held for the whole latency (the proxy keeps each chunk's due time, and never reorders
    a connection's bytes), so those calls are in flight inside the node from the SIGTERM until up to
    ``drain_hold_s`` later, and nothing sent after the heal is slowed beyond them: a correct drain
    ends within the hold (a latency still active during the drain would hold every call queued behind
    those, one hold each, and push the drain past the grace period). (offset from the composite's
    start, draw) per step."""
    node = rng.choice(topo.nodes)
    hold_ms = int(t.drain_hold_s() * 1000)
    slow = Latency((node, "postgres"), ms=hold_ms)
    return [(0.0, (slow, DRAIN_LEAD_S - DRAIN_HEAL_BEFORE_S, frozenset({f"link:{node}>postgres"}))),
            (DRAIN_LEAD_S, (Restart(node, graceful=True), 0.0, _outage(node, topo)))]


DRAWERS: dict[str, Callable[[random.Random, _Topo, Timing], Draw]] = {
    "kill": _kill, "pause": _pause, "restart": _restart, "partition": _partition, "latency": _latency,
    "timeout": _timeout, "reset": _reset, "cpu-stress": _cpu, "memory-pressure": _memory, "disk": _disk,
    "scale": _scale, "rolling-restart": _rolling, "rotate-secret": _rotate,
}
COMPOSITES: dict[str, Callable[[random.Random, _Topo, Timing], list[tuple[float, Draw]]]] = {"drain": _drain}


def usable_kinds(kinds: Sequence[str], topology: Mapping[str, str]) -> list[str]:
    """The kinds that can be formed over ``topology`` (a disk fault needs PostgreSQL, processes need nodes)."""
    topo = _Topo(topology, frozenset())
    out = []
    for k in kinds:
        if not topo.nodes:
            continue
        if k in ("disk", "drain", "rotate-secret") and not topo.postgres:
            continue
        out.append(k)
    return out


def generate(seed: int, index: int, topology: Mapping[str, str], kinds: Sequence[str] = EXPLORABLE,
             timing: Timing | None = None, proxied: Sequence[str] = (), max_faults: int = 3) -> Schedule:
    """Segment ``index``'s schedule for ``seed``: 1..``max_faults`` faults of ``kinds`` over
    ``topology`` (``{instance name: role}``), overlapping where they share no resource (module
    docstring). Same arguments, same schedule."""
    t = timing or Timing()
    rng = rng_for(seed, index)
    topo = _Topo(topology, frozenset(proxied), aux_rng_for(seed, index))
    usable = usable_kinds(check_kinds(kinds), topology)
    if not usable:
        return Schedule(seed, index, ())
    weights = [WEIGHTS[k] for k in usable]
    first = rng.choices(usable, weights=weights)[0]
    if first in OPERATOR_KINDS:  # an operator action runs alone
        fault, hold, _ = DRAWERS[first](rng, topo, t)
        return Schedule(seed, index, (Step(_r(rng.uniform(0.0, MAX_START_S / 2)), hold, fault),))
    plain = [k for k in usable if k not in OPERATOR_KINDS]
    plain_w = [WEIGHTS[k] for k in plain]
    want = rng.randint(1, max(1, max_faults))
    chosen: list[tuple[Step, frozenset[str]]] = []
    drawn = 0  # faults chosen (a composite's steps count as one)
    kind = first
    for _ in range(4 * want):  # a few draws may collide with what is already chosen; skip those
        parts = COMPOSITES[kind](rng, topo, t) if kind in COMPOSITES else [(0.0, DRAWERS[kind](rng, topo, t))]
        at = _r(rng.uniform(0.0, MAX_START_S))
        drawn_steps = [(Step(_r(at + off), hold, fault), res) for off, (fault, hold, res) in parts]
        if all(not (res & other) or not _overlap(st.at_s, st.hold_s, s)
               for st, res in drawn_steps for s, other in chosen):
            chosen.extend(drawn_steps)
            drawn += 1
        if drawn >= want:
            break
        kind = rng.choices(plain, weights=plain_w)[0]
    steps = sorted((s for s, _ in chosen), key=lambda s: (s.at_s, str(s.fault)))
    return Schedule(seed, index, tuple(steps))


def _overlap(at: float, hold: float, other: Step) -> bool:
    a0, a1 = at, at + hold + OVERLAP_SLACK_S
    b0, b1 = other.at_s, other.at_s + other.hold_s + OVERLAP_SLACK_S
    return a0 < b1 and b0 < a1
