"""Partition maths: pure functions from a topology to a *grudge*.

A grudge is ``dict[host, set[host]]``: each host drops every packet that comes *from* the hosts in its
set (Jepsen's representation, ``jepsen/src/jepsen/nemesis.clj``). Why pure and separate: the shapes are
the part of a partition test that is easy to get subtly wrong (who can still talk to whom), so they are
computed here without any network and unit-tested with plain asserts; only a platform's partitioner
turns a grudge into packet drops (nft/iptables locally, NetworkPolicy/Chaos Mesh on Kubernetes).

A topology is ``dict[host, role]`` with roles ``node``, ``gate``, ``etcd``, ``postgres``, ``inspector``
(the instance names of a deployment: ``node-0``, ``etcd-1``, ``postgres`` …).

Shapes (``SHAPES``) and who takes part:

- ``isolate-node``: one node cut from every other host.
- ``node-etcd`` / ``node-postgres``: one node cut from every etcd member / from PostgreSQL only.
- ``gates-node``: every gate cut from one node (the node still sees etcd and PostgreSQL).
- ``gate-etcd``: one gate cut from every etcd member (stale-view faults): it keeps routing with the
  shard map it last read, while nodes and the other gates move on.
- ``node-gate-etcd``: one node *and* the first gate cut from every etcd member, still talking to each
  other, the other nodes and PostgreSQL — the one cut in which a stale gate keeps sending calls to a
  node whose lease has expired, so a node that serves past its lease is reached at all.
- ``halves``: the *cluster hosts* (nodes and etcd members, interleaved so both sides get some of each)
  bisected; gates, PostgreSQL and the inspector still see everyone.
- ``majorities-ring``: every cluster host sees a majority of the cluster hosts, no two the same one.
- ``bridge``: two halves plus one host that still talks to both sides.

``one_way=True`` keeps only the grudges *held by the target side*: the target hears nothing from the
others while the others still hear the target (an asymmetric link, e.g. a half-dead NIC).
"""

from __future__ import annotations

import random as _stdrandom
from collections.abc import Iterable, Mapping, Sequence

from harness import random as hrand

Grudge = dict[str, set[str]]
Topology = Mapping[str, str]

SHAPES: tuple[str, ...] = (
    "isolate-node",
    "node-etcd",
    "node-postgres",
    "gates-node",
    "gate-etcd",
    "node-gate-etcd",
    "halves",
    "majorities-ring",
    "bridge",
)
#: shapes that cut one chosen host from something; their ``target`` picks that host
TARGETED_SHAPES = frozenset({"isolate-node", "node-etcd", "node-postgres", "gates-node", "gate-etcd",
                             "node-gate-etcd"})
#: the role of a targeted shape's victim (default ``node``)
VICTIM_ROLE: dict[str, str] = {"gate-etcd": "gate"}
CLUSTER_ROLES = ("node", "etcd")


class ShapeError(ValueError):
    """The shape cannot be formed over this topology (e.g. ``bridge`` with fewer than 3 hosts)."""


# --- generic grudge algebra -------------------------------------------------------------------------


def complete_grudge(components: Iterable[Iterable[str]]) -> Grudge:
    """Each host drops every host that is not in its own component (Jepsen ``complete-grudge``)."""
    comps = [set(c) for c in components]
    universe = set().union(*comps) if comps else set()
    grudge: Grudge = {}
    for comp in comps:
        for host in comp:
            grudge[host] = universe - comp
    return grudge


def invert(connections: Mapping[str, Iterable[str]], universe: Iterable[str]) -> Grudge:
    """From "host → hosts it may talk to" to "host → hosts it drops" (Jepsen ``invert-grudge``).
    A host never drops itself."""
    hosts = set(universe)
    return {h: hosts - set(connections.get(h, ())) - {h} for h in hosts}


def bisect(hosts: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split in two, the first half the smaller one when the count is odd (Jepsen ``bisect``)."""
    mid = len(hosts) // 2
    return list(hosts[:mid]), list(hosts[mid:])


def bridge(hosts: Sequence[str]) -> Grudge:
    """Two halves that cannot talk, and the first host of the second half (the bridge) talking to both
    (Jepsen ``bridge``)."""
    if len(hosts) < 3:
        raise ShapeError(f"bridge needs at least 3 hosts, got {len(hosts)}")
    first, second = bisect(hosts)
    the_bridge = second[0]
    grudge = complete_grudge([first, second])
    grudge.pop(the_bridge)
    return {h: dropped - {the_bridge} for h, dropped in grudge.items()}


def majority(n: int) -> int:
    """The smallest count that is more than half of ``n``."""
    return n // 2 + 1


def majorities_ring(hosts: Sequence[str]) -> Grudge:
    """Every host sees a majority, and no two hosts see the same majority.

    Walks the hosts as a ring: each window of ``majority(n)`` consecutive hosts is the view of the host
    in its middle (Jepsen ``majorities-ring-perfect``). Windows start at different hosts, so views are
    distinct; for n ≤ 5 this is Jepsen's exact construction, and for larger n it is still a valid ring
    (Jepsen switches to a stochastic search there only to vary the shape between runs)."""
    n = len(hosts)
    if n < 3:
        raise ShapeError(f"majorities-ring needs at least 3 hosts, got {n}")
    m = majority(n)
    views: dict[str, set[str]] = {}
    for start in range(n):
        window = [hosts[(start + i) % n] for i in range(m)]
        views[window[m // 2]] = set(window)
    return invert(views, hosts)


def one_way(grudge: Mapping[str, Iterable[str]], holders: Iterable[str]) -> Grudge:
    """Keep only the grudges held by ``holders``: they stop hearing, the others still hear them."""
    keep = set(holders)
    return {h: set(d) for h, d in grudge.items() if h in keep and d}


def cut(a: Iterable[str], b: Iterable[str]) -> Grudge:
    """Hosts of ``a`` and hosts of ``b`` drop each other (both directions); nobody else is touched."""
    sa, sb = set(a), set(b)
    if sa & sb:
        raise ShapeError(f"a host cannot be cut from itself: {sorted(sa & sb)}")
    grudge: Grudge = {h: set(sb) for h in sa}
    grudge.update({h: set(sa) for h in sb})
    return grudge


def normalise(grudge: Mapping[str, Iterable[str]]) -> Grudge:
    """Drop empty entries and self-grudges, so equal partitions compare equal."""
    out = {h: set(d) - {h} for h, d in grudge.items()}
    return {h: d for h, d in out.items() if d}


def links_cut(grudge: Mapping[str, Iterable[str]]) -> set[tuple[str, str]]:
    """``(receiver, sender)`` pairs whose packets are dropped — handy for asserts and reports."""
    return {(h, s) for h, dropped in grudge.items() for s in dropped}


def can_reach(grudge: Mapping[str, Iterable[str]], src: str, dst: str) -> bool:
    """Whether ``dst`` still accepts packets from ``src`` (one direction)."""
    return src not in set(grudge.get(dst, ()))


# --- shapes over a topology --------------------------------------------------------------------------


def hosts_with_role(topology: Topology, role: str) -> list[str]:
    """Hosts of one role, in a stable (natural) order: node-2 before node-10."""
    return sorted((h for h, r in topology.items() if r == role), key=_natural_key)


def cluster_hosts(topology: Topology) -> list[str]:
    """Nodes and etcd members interleaved (node-0, etcd-0, node-1, etcd-1, …) so that any contiguous
    split gets hosts of both roles."""
    by_role = [hosts_with_role(topology, r) for r in CLUSTER_ROLES]
    out: list[str] = []
    for i in range(max((len(x) for x in by_role), default=0)):
        out.extend(x[i] for x in by_role if i < len(x))
    return out


def grudge_for(
    shape: str,
    topology: Topology,
    target: str | None = None,
    one_way_: bool = False,
    rng: _stdrandom.Random | None = None,
) -> Grudge:
    """The grudge of a named shape over ``topology``.

    ``target`` names the victim node of a targeted shape (default: a node chosen with ``rng``, the
    harness RNG by default). For ``halves``/``bridge`` it may be ``"random"`` to shuffle the cluster
    hosts first (Jepsen's random-halves); otherwise the split is deterministic. ``one_way_`` keeps only
    the grudges of the victim side (the victim node; the first half; the bridge's first side).
    """
    if shape not in SHAPES:
        raise ShapeError(f"unknown partition shape {shape!r}; known: {', '.join(SHAPES)}")
    if shape in TARGETED_SHAPES:
        victim = _pick_victim(topology, target, rng, VICTIM_ROLE.get(shape, "node"))
        if shape == "isolate-node":
            others = [h for h in topology if h != victim]
            grudge = cut([victim], others)
        elif shape == "node-etcd":
            grudge = cut([victim], _need(topology, "etcd", shape))
        elif shape == "node-postgres":
            grudge = cut([victim], _need(topology, "postgres", shape))
        elif shape == "gate-etcd":
            grudge = cut([victim], _need(topology, "etcd", shape))
        elif shape == "node-gate-etcd":
            side = [victim, _need(topology, "gate", shape)[0]]
            grudge = cut(side, _need(topology, "etcd", shape))
            return normalise(one_way(grudge, side) if one_way_ else grudge)
        else:  # gates-node
            grudge = cut(_need(topology, "gate", shape), [victim])
        return normalise(one_way(grudge, [victim]) if one_way_ else grudge)

    hosts = cluster_hosts(topology)
    if target == "random":
        hosts = (rng or hrand.rng()).sample(hosts, len(hosts))
    elif target is not None:
        raise ShapeError(f"shape {shape!r} takes no target other than 'random', got {target!r}")
    if len(hosts) < 2:
        raise ShapeError(f"{shape} needs at least 2 nodes/etcd members, got {hosts}")
    if shape == "halves":
        first, second = bisect(hosts)
        grudge = complete_grudge([first, second])
        holders = first
    elif shape == "majorities-ring":
        grudge = majorities_ring(hosts)
        holders = hosts
    else:  # bridge
        grudge = bridge(hosts)
        holders = bisect(hosts)[0]
    return normalise(one_way(grudge, holders) if one_way_ else grudge)


def _pick_victim(topology: Topology, target: str | None, rng: _stdrandom.Random | None,
                 role: str = "node") -> str:
    hosts = hosts_with_role(topology, role)
    if not hosts:
        raise ShapeError(f"topology has no {role} to cut")
    if target in (None, f"one-{role}", "random"):
        return (rng or hrand.rng()).choice(hosts)
    if target not in topology:
        raise ShapeError(f"target {target!r} is not in the topology {sorted(topology)}")
    if topology[target] != role:
        raise ShapeError(f"target {target!r} is a {topology[target]}; this shape cuts a {role}")
    return target


def _need(topology: Topology, role: str, shape: str) -> list[str]:
    hosts = hosts_with_role(topology, role)
    if not hosts:
        raise ShapeError(f"shape {shape!r} needs a {role} host; topology has none")
    return hosts


def _natural_key(name: str) -> tuple[object, ...]:
    head, _, tail = name.rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (name, -1)
