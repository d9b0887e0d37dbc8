"""Cluster coordination on etcd: the shared view (nodes, gates, leader, shard map) and leased
registration — Goverse's key layout (contract §4.1) under a prefix.

Why polling with one atomic multi-range transaction per tick instead of a watch: every read is a
linearizable snapshot at one revision (members cut off from the quorum fail over instead of serving
stale data), shard keys are fetched incrementally (``min_mod_revision``) so 8192 shards stay cheap, and
there is no stream whose silent stall under a partition would need its own detector. The price is at
most one tick of extra latency, which the failover budget (TTL + stability + a few ticks) absorbs.

Why a *local* lease deadline: a process may be paused or cut off and not know it. Each successful
keepalive moves the deadline to (time the keepalive was sent + TTL returned); etcd cannot expire the
lease before that instant, so a process that serves only while ``monotonic() < deadline`` never serves
after another node could have taken over its shards (fencing, part 1; PostgreSQL epochs are part 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from harness.refstack.etcd import EtcdClient, EtcdError, cmp_mod, cmp_value, op_delete, op_put, op_range
from harness.refstack.sharding import ShardEntry

log = logging.getLogger(__name__)

FULL_RESYNC_SECONDS = 5.0
TXN_GROUP = 100  # shard keys per CAS transaction (etcd's default limit is 128 operations per branch)
TXN_PARALLEL = 8  # transactions in flight at once when many shards change (8192-shard bootstrap)


@dataclass(frozen=True)
class Keys:
    prefix: str

    @property
    def nodes(self) -> str:
        return f"{self.prefix}/nodes/"

    @property
    def gates(self) -> str:
        return f"{self.prefix}/gates/"

    @property
    def leader(self) -> str:
        return f"{self.prefix}/leader"

    @property
    def shards(self) -> str:
        return f"{self.prefix}/shard/"

    @property
    def info(self) -> str:
        """Reference-stack extension: JSON details (id, ops URL, version) per registered process."""
        return f"{self.prefix}/refstack/info/"

    def node(self, advertise: str) -> str:
        return self.nodes + advertise

    def gate(self, advertise: str) -> str:
        return self.gates + advertise

    def shard(self, i: int) -> str:
        return f"{self.shards}{i}"

    def info_key(self, kind: str, advertise: str) -> str:
        return f"{self.info}{kind}/{advertise}"


@dataclass
class ClusterState:
    """A snapshot of the cluster as of ``revision`` (0 = never loaded)."""

    revision: int = 0
    nodes: dict[str, str] = field(default_factory=dict)  # advertise -> value
    gates: dict[str, str] = field(default_factory=dict)
    info: dict[str, dict[str, object]] = field(default_factory=dict)  # "node/<adv>" -> details
    leader: str = ""
    leader_mod_revision: int = 0
    shards: dict[int, ShardEntry] = field(default_factory=dict)
    loaded_at: float = 0.0  # monotonic time of the last successful refresh

    @property
    def loaded(self) -> bool:
        return self.revision > 0


class ClusterView:
    """Keeps a ``ClusterState`` fresh: ``refresh()`` once per tick. Tracks when node membership last
    changed (Goverse's stability window) and since when each vanished node has been gone."""

    def __init__(self, client: EtcdClient, keys: Keys, shards: int) -> None:
        self.client = client
        self.keys = keys
        self.num_shards = shards
        self.state = ClusterState()
        self.last_membership_change = time.monotonic()
        self.gone_since: dict[str, float] = {}
        self._last_full = 0.0
        self._shard_rev = 0
        self.on_migration: Callable[[int, str, str], None] | None = None

    async def refresh(self, timeout: float | None = None) -> ClusterState:
        now = time.monotonic()
        full = now - self._last_full >= FULL_RESYNC_SECONDS or self._shard_rev == 0
        k = self.keys
        res = await self.client.txn([], [
            op_range(k.nodes, prefix=True),
            op_range(k.gates, prefix=True),
            op_range(k.info, prefix=True),
            op_range(k.leader),
            op_range(k.shards, prefix=True, min_mod_revision=0 if full else self._shard_rev + 1),
        ], timeout=timeout)
        nodes_kv, gates_kv, info_kv, leader_kv, shard_kv = res.ranges()
        old = self.state
        shards = {} if full else dict(old.shards)
        for kv in shard_kv:
            try:
                idx = int(kv.key[len(k.shards):])
            except ValueError:
                continue
            if 0 <= idx < self.num_shards:
                shards[idx] = ShardEntry.parse(kv.value, kv.mod_revision)
        info: dict[str, dict[str, object]] = {}
        for kv in info_kv:
            with contextlib.suppress(ValueError):
                info[kv.key[len(k.info):]] = json.loads(kv.value)
        new = ClusterState(
            revision=res.revision,
            nodes={kv.key[len(k.nodes):]: kv.value for kv in nodes_kv},
            gates={kv.key[len(k.gates):]: kv.value for kv in gates_kv},
            info=info,
            leader=leader_kv[0].value if leader_kv else "",
            leader_mod_revision=leader_kv[0].mod_revision if leader_kv else 0,
            shards=shards,
            loaded_at=time.monotonic(),
        )
        if set(new.nodes) != set(old.nodes) and old.loaded:
            self.last_membership_change = now
        for gone in set(old.nodes) - set(new.nodes):
            self.gone_since.setdefault(gone, now)
        for back in set(new.nodes):
            self.gone_since.pop(back, None)
        if self.on_migration is not None and old.loaded:
            for s, e in new.shards.items():
                prev = old.shards.get(s)
                if prev and prev.current and e.current and prev.current != e.current:
                    self.on_migration(s, prev.current, e.current)
        self.state = new
        self._shard_rev = res.revision
        if full:
            self._last_full = now
        return new

    def stable(self, window: float) -> bool:
        return time.monotonic() - self.last_membership_change >= window

    def gone_for(self, node: str) -> float:
        since = self.gone_since.get(node)
        return 0.0 if since is None else time.monotonic() - since

    async def write_shards(self, updates: dict[int, ShardEntry], group: int = TXN_GROUP) -> tuple[int, int, int]:
        """CAS-write shard entries; returns (written, conflicts, revision of the last success)."""
        revisions = await self.write_shards_revisions(updates, group)
        return len(revisions), len(updates) - len(revisions), max(revisions.values(), default=0)

    async def write_shards_revisions(self, updates: dict[int, ShardEntry], group: int = TXN_GROUP) -> dict[int, int]:
        """CAS-write shard entries, each against the mod_revision it was read at, ``group`` keys per
        transaction (etcd allows 128 operations per branch), a few transactions in flight at once.
        Returns shard -> etcd revision of its write, for the writes that succeeded (a claim's revision
        is its epoch)."""
        out: dict[int, int] = {}
        items = sorted(updates.items())
        chunks = [items[i:i + group] for i in range(0, len(items), group)]
        limit = asyncio.Semaphore(TXN_PARALLEL)

        async def write(chunk: list[tuple[int, ShardEntry]]) -> None:
            async with limit:
                res = await self.client.txn(
                    [cmp_mod(self.keys.shard(s), e.mod_revision) for s, e in chunk],
                    [op_put(self.keys.shard(s), e.format()) for s, e in chunk],
                )
            if res.succeeded:
                out.update({s: res.revision for s, _ in chunk})
        results = await asyncio.gather(*(write(c) for c in chunks), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors and not out:
            raise errors[0]
        return out

    async def try_become_leader(self, me: str) -> bool:
        k = self.keys
        res = await self.client.txn([cmp_mod(k.leader, self.state.leader_mod_revision)],
                                    [op_put(k.leader, me)])
        return res.succeeded

    async def resign_leader(self, me: str) -> None:
        await self.client.txn([cmp_value(self.keys.leader, me)], [op_delete(self.keys.leader)])


class Registration:
    """Keys kept alive under one lease. ``alive()`` is the local fencing check; ``run()`` keeps the
    lease and, after a loss, calls ``on_lost`` and registers again with a fresh lease."""

    def __init__(self, client: EtcdClient, keys: dict[str, str], ttl: float,
                 on_lost: Callable[[str], Awaitable[None]] | None = None,
                 on_registered: Callable[[], Awaitable[None]] | None = None,
                 trust_until_told: bool = False) -> None:
        self.client = client
        # seeded bug no-lease-deadline: alive() ignores the local deadline and trusts the lease until
        # etcd answers that it expired (an unreachable etcd is taken for an election in progress)
        self.trust_until_told = trust_until_told
        self.keys = keys
        self.ttl = ttl
        self.on_lost = on_lost
        self.on_registered = on_registered
        self.lease_id = 0
        self.deadline = 0.0
        self.losses = 0
        self._stopping = False
        self._past_deadline = False

    def alive(self) -> bool:
        if self.trust_until_told:
            return self.lease_id != 0
        return self.lease_id != 0 and time.monotonic() < self.deadline

    async def register(self) -> None:
        sent = time.monotonic()
        lease_id, ttl = await self.client.lease_grant(self.ttl)
        res = await self.client.txn([], [op_put(k, v, lease_id) for k, v in self.keys.items()])
        if not res.succeeded:
            raise EtcdError("registration transaction failed")
        self.lease_id = lease_id
        self.deadline = sent + ttl
        log.info("registered %s under lease %x (ttl %ss)", ", ".join(self.keys), lease_id, ttl)
        if self.on_registered is not None:
            await self.on_registered()

    async def run(self) -> None:
        """Keepalive loop: every TTL/3. Never returns until cancelled or ``stop()``."""
        period = self.ttl / 3
        while not self._stopping:
            await asyncio.sleep(period)  # sleep-ok: the keepalive period is the subject here
            if self._stopping:
                return
            if self.lease_id == 0:
                await self._reregister()
                continue
            sent = time.monotonic()
            try:
                ttl = await self.client.lease_keepalive(self.lease_id, timeout=max(0.5, period))
            except EtcdError as exc:
                # Not lost yet: past the deadline we stop serving (alive() is False), but only etcd can
                # say whether the lease expired. During an etcd leader election keepalives fail while
                # the lease survives (a new leader renews every lease), and then serving resumes.
                if time.monotonic() >= self.deadline and not self._past_deadline:
                    self._past_deadline = True
                    log.warning("lease %x: no keepalive confirmed before the local deadline; not serving "
                                "until etcd answers (%s)", self.lease_id, exc)
                elif not self._past_deadline:
                    log.warning("keepalive failed (lease valid locally for %.1fs more): %s",
                                self.deadline - time.monotonic(), exc)
                continue
            if ttl <= 0:
                await self._lost("etcd says the lease expired")
            else:
                # Even if we were paused or cut off past the local deadline: the lease never expired
                # in etcd, so nobody can have taken over our shards; serving may resume.
                now = time.monotonic()
                if self._past_deadline or now >= self.deadline:
                    log.info("lease %x confirmed alive again %.2fs after the local deadline (keepalive took "
                             "%.2fs, ttl %ss); serving resumes", self.lease_id, now - self.deadline, now - sent, ttl)
                self._past_deadline = False
                self.deadline = sent + ttl

    async def _lost(self, why: str) -> None:
        self.losses += 1
        log.warning("lease %x lost: %s", self.lease_id, why)
        old = self.lease_id
        self.lease_id = 0
        self.deadline = 0.0
        self._past_deadline = False
        if self.on_lost is not None:
            await self.on_lost(why)
        with contextlib.suppress(EtcdError):
            await self.client.lease_revoke(old, timeout=1.0)
        await self._reregister()

    async def _reregister(self) -> None:
        if self._stopping:
            return
        try:
            await self.register()
        except EtcdError as exc:
            log.warning("re-registration failed, will retry: %s", exc)

    async def revoke(self) -> None:
        """Stop keeping alive and revoke (deletes our keys at once)."""
        self._stopping = True
        lease, self.lease_id, self.deadline = self.lease_id, 0, 0.0
        if lease:
            await self.client.lease_revoke(lease, timeout=2.0)
