"""Generate the recorded-style histories under tests/data/histories/ (deterministic: same bytes every run).

Why simulated rather than captured: the checkers must be proven on histories whose ground truth is
known — which keys lost which increments, when a superseded owner answered — and on failure modes a
healthy stack never shows. Each history is drawn from a small model of the cluster (a :class:`World`:
who owns a key when, under which epoch, which writes survive) driven by the same processes and op
shapes as the real workload: a 20 Hz availability probe over 32 keys (``probe-<i>``, ``f="probe"``,
asynchronous, 1 s call timeout) and sequential counter or wallet clients (``client-<i>``) with think
time, one final read per key after the heal, oracle shard-map samples every 0.5 s, nemesis windows.

Run ``python tests/data/make_histories.py`` to rewrite the files; tests check that the committed files
equal what this script generates, so they never drift from it.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.history import Event, History  # noqa: E402

OUT = Path(__file__).resolve().parent / "histories"
NODES = ("node-0", "node-1", "node-2")
GATES = ("gate-0", "gate-1")
T0_WALL = 1764325800.0  # 2025-11-28T10:30:00Z: fixed so files are byte-identical across runs
CALL_TIMEOUT = 1.0


class Builder:
    """Appends Recorder-compatible events with explicit times (rounded to µs, like a JSONL round trip)."""

    def __init__(self, seed: int, meta: dict[str, Any] | None = None) -> None:
        self.rng = random.Random(seed)
        self.events: list[Event] = []
        self.meta = {"generator": "tests/data/make_histories.py", "seed": seed, **(meta or {})}
        self._ids = itertools.count(1)
        self._faults = itertools.count(1)

    def op(self, process: str, f: str, key: str | None, value: Any, t_invoke: float, latency: float,
           type_: str, result: Any = None, error: str | None = None, gate: str | None = None,
           extra: dict[str, Any] | None = None) -> int:
        op_id = next(self._ids)
        t1 = round(t_invoke, 6)
        t2 = max(round(t_invoke + latency, 6), t1 + 1e-6)
        self.events.append(Event(t=t1, type="invoke", process=process, f=f, key=key, value=value,
                                 op_id=op_id, node=gate))
        self.events.append(Event(t=t2, type=type_, process=process, f=f, key=key, value=result,
                                 op_id=op_id, error=error, node=gate, extra=extra))
        return op_id

    def fault(self, kind: str, target: Any, t_start: float, t_stop: float | None,
              params: dict[str, Any] | None = None) -> str:
        fid = f"f{next(self._faults)}"
        self.events.append(Event(t=round(t_start, 6), type="nemesis", process="nemesis", f="start",
                                 value={"id": fid, "kind": kind, "target": target, "params": params or {}}))
        if t_stop is not None:
            self.events.append(Event(t=round(t_stop, 6), type="nemesis", process="nemesis", f="stop",
                                     value={"id": fid, "kind": kind, "target": target, "result": {}}))
        return fid

    def sample(self, t: float, f: str, value: Any) -> None:
        self.events.append(Event(t=round(t, 6), type="sample", process="oracle", f=f, value=value))

    def log(self, t: float, message: str) -> None:
        self.events.append(Event(t=round(t, 6), type="log", process="harness", f=message))

    def history(self) -> History:
        events = sorted(self.events, key=lambda e: e.t)  # stable: invoke stays before its completion
        return History(events=events, t0_wall=T0_WALL, meta=self.meta)


# ---- the cluster model ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """How one call to a key is served at one instant."""

    mode: str  # ok | stale (reads from a frozen cache, writes fenced) | timeout | refused
    node: str | None = None
    epoch: int | None = None
    frozen: float | None = None  # the serving node's view of persisted writes stops here
    scope: str | None = None  # writes stay local to this node (never persisted) until lost
    lost_at: float | None = None  # when such local writes vanish
    applied_p: float = 0.0  # for timeouts: chance the call had taken effect


@dataclass
class Write:
    t: float
    amount: int
    scope: str | None
    lost_at: float | None


def key_index(key: str) -> int:
    return int(key.rsplit("-", 1)[1])


def home(key: str) -> str:
    """Initial owner: shards (and so keys) are spread round-robin over the three nodes."""
    return NODES[key_index(key) % len(NODES)]


def base_epoch(key: str) -> int:
    return 40 + key_index(key) % 16


def successor(key: str, victim: str) -> str:
    others = [n for n in NODES if n != victim]
    return others[key_index(key) % len(others)]


@dataclass
class World:
    """Ground truth of one scenario. Subclasses decide routes; writes and visibility are shared."""

    epochs: bool = True
    writes: dict[str, list[Write]] = field(default_factory=dict)

    def route(self, key: str, t: float, gate: str) -> Route:
        return Route("ok", home(key), base_epoch(key))

    def latency(self, rng: random.Random, key: str, t: float, route: Route) -> float:
        return rng.lognormvariate(math.log(0.003), 0.35)

    def shardmap(self, t: float) -> dict[str, Any]:
        return {"converged": True, "unconverged": 0, "live_nodes": list(NODES),
                "owners": {n: 64 // 3 + (i == 0) for i, n in enumerate(NODES)}}

    def apply(self, key: str, amount: int, t: float, route: Route) -> None:
        self.writes.setdefault(key, []).append(Write(t, amount, route.scope, route.lost_at))

    def value(self, key: str, t: float, route: Route) -> int:
        total = 0
        for w in self.writes.get(key, []):
            if w.t > t or (w.lost_at is not None and t >= w.lost_at):
                continue
            if w.scope is not None and w.scope != route.node:
                continue
            if w.scope is None and route.frozen is not None and w.t > route.frozen:
                continue
            total += w.amount
        return total


@dataclass
class KillWorld(World):
    """``victim`` dies at ``kill``; its keys time out, then are refused, until ``failover`` moves them to
    a successor under epoch + 1. ``lose_window``: ack-before-persist — writes acked by the victim in the
    last seconds before the kill were never persisted. ``all_keys``: every key is down (a whole-cluster
    outage) and ``failover = inf`` never recovers."""

    victim: str = "node-1"
    kill: float = 10.0
    heal: float = 15.0
    failover: float = 16.0
    lose_window: float = 0.0
    all_keys: bool = False

    def affected(self, key: str) -> bool:
        return self.all_keys or home(key) == self.victim

    def route(self, key: str, t: float, gate: str) -> Route:
        if not self.affected(key) or t < self.kill - 0.15:
            lost = self.lose_window and self.affected(key) and t >= self.kill - self.lose_window
            if lost:
                return Route("ok", home(key), base_epoch(key), scope=self.victim, lost_at=self.kill)
            return Route("ok", home(key), base_epoch(key))
        if t < self.kill:  # in flight when the process died: outcome unknown
            return Route("timeout", home(key), applied_p=0.5)
        if t < self.failover:
            return Route("timeout" if t < self.kill + 2.0 else "refused")
        return Route("ok", successor(key, self.victim), base_epoch(key) + 1)

    def shardmap(self, t: float) -> dict[str, Any]:
        live = [n for n in NODES if not (n == self.victim and self.kill + 3.0 <= t < self.heal + 0.3)]
        if self.kill <= t < self.failover + 0.2:
            return {"converged": False, "unconverged": 64 if self.all_keys else 21, "live_nodes": live,
                    "owners": {n: 21 + (n == "node-0") for n in NODES}}
        if t >= self.failover + 0.2:
            return {"converged": True, "unconverged": 0, "live_nodes": live,
                    "owners": {"node-0": 32, "node-1": 0, "node-2": 32}}
        return super().shardmap(t)


@dataclass
class LatencyWorld(World):
    """+600 ms on ``victim``'s PostgreSQL link in [start, stop): slow calls, a few past the 1 s timeout."""

    victim: str = "node-2"
    start: float = 8.0
    stop: float = 14.0
    extra_s: float = 0.6

    def route(self, key: str, t: float, gate: str) -> Route:
        if home(key) == self.victim and self.start <= t < self.stop:
            return Route("ok", home(key), base_epoch(key), applied_p=0.5)
        return super().route(key, t, gate)

    def latency(self, rng: random.Random, key: str, t: float, route: Route) -> float:
        base = super().latency(rng, key, t, route)
        if home(key) == self.victim and self.start <= t < self.stop:
            return base + self.extra_s * rng.lognormvariate(0.0, 0.25)
        return base


@dataclass
class PauseWorld(World):
    """``victim`` is SIGSTOPped in [pause, resume). Its keys fail over at ``failover``. After SIGCONT it
    keeps answering gate-0 for ``stale_for`` seconds from its frozen cache under the old epoch (a
    stale-read bug); its writes are fenced (refused), so nothing acknowledged is lost."""

    victim: str = "node-1"
    pause: float = 8.0
    resume: float = 14.0
    failover: float = 12.0
    stale_for: float = 1.5

    def route(self, key: str, t: float, gate: str) -> Route:
        if home(key) != self.victim or t < self.pause:
            return super().route(key, t, gate)
        if t < self.failover:
            return Route("timeout")
        if self.resume <= t < self.resume + self.stale_for and gate == "gate-0":
            return Route("stale", self.victim, base_epoch(key), frozen=self.pause)
        return Route("ok", successor(key, self.victim), base_epoch(key) + 1)


@dataclass
class SplitWorld(World):
    """``victim`` is cut from etcd only in [cut, heal). It keeps serving through gate-0 (which still
    routes to it) under its old epoch, with writes kept locally and lost at the heal, while the
    successor serves gate-1 under epoch + 1 from ``failover`` on (no fencing)."""

    victim: str = "node-1"
    cut: float = 8.0
    heal: float = 18.0
    failover: float = 12.0

    def route(self, key: str, t: float, gate: str) -> Route:
        if home(key) != self.victim or t < self.failover:
            return super().route(key, t, gate)
        if t < self.heal and gate == "gate-0":
            return Route("ok", self.victim, base_epoch(key), frozen=self.failover, scope=self.victim,
                         lost_at=self.heal)
        return Route("ok", successor(key, self.victim), base_epoch(key) + 1)


# ---- the workload -------------------------------------------------------------------------------------
def _extra(world: World, route: Route, gate: str) -> dict[str, Any]:
    extra: dict[str, Any] = {"gate": gate, "node": route.node}
    if world.epochs and route.epoch is not None:
        extra["epoch"] = route.epoch
    return extra


def _call(b: Builder, world: World, process: str, f: str, key: str, t: float, gate: str,
          amount: int | None = None) -> float:
    """One counter call (read/probe/increment/final-read); returns its completion time."""
    route = world.route(key, t, gate)
    rng = b.rng
    if route.mode == "timeout":
        if amount is not None and rng.random() < route.applied_p:
            world.apply(key, amount, t, Route("ok", route.node))
        b.op(process, f, key, amount, t, CALL_TIMEOUT, "info", error="timeout after 1.0s", gate=gate)
        return t + CALL_TIMEOUT
    if route.mode == "refused" or (route.mode == "stale" and amount is not None):
        lat = rng.uniform(0.001, 0.003)
        err = "503 no owner for shard" if route.mode == "refused" else "409 fenced: lease lost"
        b.op(process, f, key, amount, t, lat, "fail", error=err, gate=gate)
        return t + lat
    lat = world.latency(rng, key, t, route)
    if lat >= CALL_TIMEOUT:
        if amount is not None and rng.random() < max(route.applied_p, 0.5):
            world.apply(key, amount, t, route)
        b.op(process, f, key, amount, t, CALL_TIMEOUT, "info", error="timeout after 1.0s", gate=gate)
        return t + CALL_TIMEOUT
    if amount is not None:
        world.apply(key, amount, t, route)
    value = world.value(key, t, route)
    b.op(process, f, key, amount, t, lat, "ok", result=value, gate=gate, extra=_extra(world, route, gate))
    return t + lat


def run_counter(b: Builder, world: World, t_end: float, clients: int = 4, counter_keys: int = 16,
                probe_hz: float = 20.0, probe_keys: int = 32, think: float = 0.2) -> None:
    """Probe + counter clients until ``t_end``, then one final read per counter key."""
    queue: list[tuple[float, int, str]] = []
    n_probes = int(t_end * probe_hz)
    for k in range(n_probes):
        heapq.heappush(queue, (k / probe_hz + b.rng.uniform(0.0, 0.003), k, "probe"))
    for i in range(clients):
        heapq.heappush(queue, (b.rng.uniform(0.0, 0.2), i, "client"))
    while queue:
        t, i, who = heapq.heappop(queue)
        if who == "probe":
            _call(b, world, f"probe-{i % 4}", "probe", f"probe-{i % probe_keys:02d}", t, GATES[i % 2])
            continue
        key = f"ctr-{b.rng.randrange(counter_keys):02d}"
        if b.rng.random() < 0.6:
            done = _call(b, world, f"client-{i}", "increment", key, t, GATES[i % 2], b.rng.randint(1, 5))
        else:
            done = _call(b, world, f"client-{i}", "read", key, t, GATES[i % 2])
        nxt = done + think * b.rng.uniform(0.5, 1.5)
        if nxt < t_end:
            heapq.heappush(queue, (nxt, i, "client"))
    t = t_end + 0.5
    for k in range(counter_keys):
        t = _call(b, world, "client-0", "final-read", f"ctr-{k:02d}", t, "gate-0") + 0.01
    for s in range(int(t / 0.5) + 1):
        b.sample(s * 0.5 + 0.02, "shardmap", world.shardmap(s * 0.5 + 0.02))


# ---- the histories ----------------------------------------------------------------------------------
def kill_node_recovers() -> History:
    """SIGKILL node-1 at 10 s, restarted at 15 s; its third of the keys fails until failover at 16 s."""
    b = Builder(1, {"scenario": "restart node sigkill", "expect": "L M O C pass; RTO ≈ 7 s"})
    world = KillWorld()
    b.fault("kill", "node-1", world.kill, world.heal, {"signal": "SIGKILL"})
    run_counter(b, world, 30.0)
    return b.history()


def kill_node_no_epochs() -> History:
    """The same kill on a stack that reports no ownership epochs (Goverse v0.1.1's gate API)."""
    b = Builder(2, {"scenario": "restart node sigkill", "stack": "goverse"})
    world = KillWorld(epochs=False)
    b.fault("kill", "node-1", world.kill, world.heal, {"signal": "SIGKILL"})
    run_counter(b, world, 24.0, clients=2)
    return b.history()


def outage_never_recovers() -> History:
    """Every key down from 10 s to the end (e.g. the shard leader never reassigns)."""
    b = Builder(3, {"scenario": "restart node sigkill", "bug": "slow-failover"})
    world = KillWorld(all_keys=True, failover=math.inf)
    b.fault("kill", "node-1", world.kill, world.heal, {"signal": "SIGKILL"})
    run_counter(b, world, 24.0, clients=2)
    return b.history()


def partial_dip() -> History:
    """+600 ms on node-2 → PostgreSQL for 6 s: a slice of calls time out, availability dips partly."""
    b = Builder(4, {"scenario": "latency node-postgres"})
    world = LatencyWorld()
    b.fault("latency", "node-2->postgres", world.start, world.stop, {"latency_ms": 600})
    run_counter(b, world, 24.0, clients=3)
    return b.history()


def lost_writes() -> History:
    """ack-before-persist: increments node-1 acknowledged in the 0.8 s before its SIGKILL are gone."""
    b = Builder(5, {"scenario": "restart node sigkill", "bug": "ack-before-persist"})
    world = KillWorld(lose_window=0.8)
    b.fault("kill", "node-1", world.kill, world.heal, {"signal": "SIGKILL"})
    run_counter(b, world, 20.0, clients=4, counter_keys=9, think=0.12)
    return b.history()


def stale_reads() -> History:
    """pause node: after SIGCONT node-1 answers reads from its frozen cache under the old epoch."""
    b = Builder(6, {"scenario": "pause node", "bug": "stale-read-after-resume"})
    world = PauseWorld()
    b.fault("pause", "node-1", world.pause, world.resume, {"signal": "SIGSTOP"})
    run_counter(b, world, 20.0, clients=4, counter_keys=9, think=0.12)
    return b.history()


def split_brain() -> History:
    """partition node-etcd with no fencing: two owners of node-1's keys for 6 s, its writes then lost."""
    b = Builder(7, {"scenario": "partition node-etcd", "bug": "no-fencing"})
    world = SplitWorld()
    b.fault("partition", {"shape": "node-etcd", "node": "node-1"}, world.cut, world.heal)
    run_counter(b, world, 20.0, clients=4, counter_keys=9, think=0.12)
    return b.history()


def run_wallet(b: Builder, world: KillWorld, t_end: float, dedup: bool, clients: int = 4,
               wallets: int = 6) -> None:
    """Deposits, each sent up to 4 times with the same call_id: again after a timeout or refusal, and
    deliberately once more after 1 in 5 acknowledgements; then one final balance per wallet.

    ``dedup``: a retry of an applied call_id returns the recorded response; otherwise it applies again."""
    applied: dict[str, dict[str, Any]] = {}
    balance: dict[str, int] = {}
    for i in range(clients):
        t = b.rng.uniform(0.0, 0.3)
        for n in itertools.count():
            if t >= t_end:
                break
            key = f"wallet-{b.rng.randrange(wallets)}"
            call_id = f"c{i}-{n}"
            amount = b.rng.randint(1, 20)
            for attempt in range(4):
                gate = GATES[(i + attempt) % 2]
                route = world.route(key, t, gate)
                value = {"amount": amount, "call_id": call_id}
                if route.mode in ("timeout", "refused"):
                    took = route.mode == "timeout" and b.rng.random() < route.applied_p
                    if took and (call_id not in applied or not dedup):
                        balance[key] = balance.get(key, 0) + amount
                        applied[call_id] = {"balance": balance[key], "status": "SUCCESS"}
                    lat = CALL_TIMEOUT if route.mode == "timeout" else 0.002
                    type_ = "info" if route.mode == "timeout" else "fail"
                    b.op(f"client-{i}", "deposit", key, value, t, lat, type_, gate=gate,
                         error="timeout after 1.0s" if type_ == "info" else "503 no owner for shard")
                    t += lat + 0.3
                    continue
                if call_id not in applied or not dedup:
                    balance[key] = balance.get(key, 0) + amount
                    applied[call_id] = {"balance": balance[key], "status": "SUCCESS"}
                lat = world.latency(b.rng, key, t, route)
                b.op(f"client-{i}", "deposit", key, value, t, lat, "ok", result=dict(applied[call_id]),
                     gate=gate, extra=_extra(world, route, gate))
                t += lat
                if b.rng.random() >= 0.2:
                    break
                t += 0.05  # a deliberate duplicate: send the acknowledged call_id once more
            t += 0.15 * b.rng.uniform(0.5, 1.5)
    t = t_end + 1.5
    for w in range(wallets):
        key = f"wallet-{w}"
        b.op("client-0", "final-balance", key, None, t, 0.004, "ok", result=balance.get(key, 0),
             gate="gate-0", extra=_extra(world, world.route(key, t, "gate-0"), "gate-0"))
        t += 0.01


def wallet_dedup_ok() -> History:
    """Deposits through a node kill; retried call_ids are answered from the dedup record."""
    b = Builder(8, {"scenario": "wallet under restarts"})
    world = KillWorld(kill=6.0, heal=9.0, failover=10.0)
    b.fault("kill", "node-1", world.kill, world.heal, {"signal": "SIGKILL"})
    run_wallet(b, world, 16.0, dedup=True)
    return b.history()


def wallet_no_dedup() -> History:
    """The same run on a stack with ``no-dedup``: retries after a timeout are applied a second time."""
    b = Builder(8, {"scenario": "wallet under restarts", "bug": "no-dedup"})
    world = KillWorld(kill=6.0, heal=9.0, failover=10.0)
    b.fault("kill", "node-1", world.kill, world.heal, {"signal": "SIGKILL"})
    run_wallet(b, world, 16.0, dedup=False)
    return b.history()


HISTORIES: dict[str, Callable[[], History]] = {
    "kill_node_recovers": kill_node_recovers,
    "kill_node_no_epochs": kill_node_no_epochs,
    "outage_never_recovers": outage_never_recovers,
    "partial_dip": partial_dip,
    "lost_writes": lost_writes,
    "stale_reads": stale_reads,
    "split_brain": split_brain,
    "wallet_dedup_ok": wallet_dedup_ok,
    "wallet_no_dedup": wallet_no_dedup,
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, make in HISTORIES.items():
        path = OUT / f"{name}.jsonl"
        make().dump(path)
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
