"""The pure planning step every fault interpreter runs first: which instances a fault hits and, for a
partition, who drops whom — resolved once, here, against the live topology the interpreter passes.

Why one step for every platform: resolving ``one-node`` or a shape's victim is where two interpreters
drift apart (the local one once resolved the victim with a forked RNG and turned an impossible shape
into ``Unsupported``; the Kubernetes one did neither), so the same fault meant different hosts, or a
crash instead of an explained skip, depending on where it ran. Interpreters now only *execute* a plan
(nft rules, Chaos Mesh CRs, NetworkPolicies), and the plan is what the history records.

Everything here is a function of (fault, topology, RNG): no I/O, unit-tested with real topologies
(tests/faults/test_faults_plan.py). A shape that cannot be formed over the topology is ``Unsupported`` (the
scenario becomes an explained skip); a target spec that names nothing is a ``TargetError`` (the
scenario is wrong).
"""

from __future__ import annotations

import random as _stdrandom
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from harness import random as hrand
from harness.faults import shapes
from harness.faults.outcomes import PartitionShape
from harness.faults.spec import Link, Partition, TargetError, resolve_link, resolve_target
from harness.platforms.base import Unsupported

Topology = Mapping[str, str]


@dataclass(frozen=True)
class PartitionPlan:
    """A partition resolved over one topology: the victim of a targeted shape and the grudge."""

    shape: str
    one_way: bool
    victim: str | None  # the node a targeted shape cuts; None for halves / bridge / majorities-ring
    grudge: dict[str, frozenset[str]]

    roles: Mapping[str, str] | None = None  # the topology the plan was made over (for ``targets``)

    @property
    def targets(self) -> list[str]:
        """What the history names as hit: the victim, or every host that drops something — for
        ``node-gate-etcd`` the node and gate cut together (not the etcd members that drop them)."""
        if self.victim is not None:
            return [self.victim]
        if self.shape == "node-gate-etcd" and self.roles is not None:
            return sorted(h for h in self.grudge if self.roles.get(h) != "etcd")
        return sorted(self.grudge)

    @property
    def hosts(self) -> set[str]:
        """Every host the grudge mentions (holders and the hosts they drop)."""
        return set(self.grudge) | {h for held in self.grudge.values() for h in held}

    def as_sets(self) -> dict[str, set[str]]:
        """The grudge in ``harness.faults.shapes``' mutable shape, for the executors."""
        return {h: set(d) for h, d in self.grudge.items()}

    def listed(self) -> dict[str, list[str]]:
        """The grudge as the history records it on every platform: host → sorted drops."""
        return {h: sorted(d) for h, d in sorted(self.grudge.items())}

    def detail(self) -> PartitionShape:
        """The part of ``Injected.detail`` every interpreter records for a partition (it adds ``how``)."""
        return {"shape": self.shape, "one_way": self.one_way, "victim": self.victim, "grudge": self.listed()}


def plan_targets(spec: str, topology: Topology, rng: _stdrandom.Random | None = None,
                 etcd_leader: Callable[[], str] | str | None = None) -> list[str]:
    """The instances a target spec hits (``one-node`` drawn with the seeded harness RNG)."""
    return resolve_target(spec, topology, rng, etcd_leader)


def plan_link(link: Link, topology: Topology, rng: _stdrandom.Random | None = None) -> list[tuple[str, str]]:
    """The ``(source, destination)`` instance pairs a link fault covers."""
    return resolve_link(link, topology, rng)


def plan_partition(fault: Partition, topology: Topology, rng: _stdrandom.Random | None = None) -> PartitionPlan:
    """Resolve ``fault`` over ``topology``: the victim of a targeted shape (``None``/``random`` → a node
    drawn with ``rng``, default the seeded harness RNG), then the shape's grudge (shuffles drawn from
    ``rng``, default an RNG forked per shape so adding a fault elsewhere does not change this one)."""
    victim: str | None = None
    target = fault.target
    if fault.shape in shapes.TARGETED_SHAPES:
        role = shapes.VICTIM_ROLE.get(fault.shape, "node")  # gate-etcd cuts a gate, the others a node
        hit = resolve_target(f"one-{role}" if target in (None, "random") else target, topology, rng)
        if len(hit) != 1 or topology[hit[0]] != role:
            raise TargetError(f"partition {fault.shape} cuts one {role}; {target!r} resolved to {hit}")
        victim = target = hit[0]
    try:
        grudge = shapes.grudge_for(fault.shape, topology, target=target, one_way_=fault.one_way,
                                   rng=rng or hrand.fork(f"partition-{fault.shape}"))
    except shapes.ShapeError as exc:
        raise Unsupported(f"partition {fault.shape} cannot be formed over {sorted(topology)}: {exc}") from None
    return PartitionPlan(fault.shape, fault.one_way, victim, {h: frozenset(d) for h, d in grudge.items()},
                         dict(topology))
