"""A reference node: hosts Counter and Wallet objects for the shards it owns.

Ownership and fencing (the conforming design):
- The node registers ``<prefix>/nodes/<advertise>`` under a lease and serves only while the lease is
  alive by its *local* deadline (see ``coordination.Registration``) and it is the shard's current owner.
- It claims a shard targeted to it with a CAS on the shard key; the etcd revision of that write is the
  claim's *epoch*, and the shard's PostgreSQL fence is raised to it before the first call is served.
- Every write is fenced (``store.SAVE_FENCED_BATCH``): a node that lost the shard cannot overwrite its
  successor. Calls are acknowledged only after the write committed (write-through).
- On lease loss it stops serving at once and drops its in-memory objects; on a handover (the leader
  moved the target) it stops serving the shard, waits for in-flight calls, flushes, and clears
  ``current`` so the new target can claim.

The leader (one node, elected by CAS on ``<prefix>/leader``) assigns and rebalances targets with the
pure planner in ``sharding.plan_targets``. Seeded bugs are switched on by name (``bugs.BUGS``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from aiohttp import web

from harness import wire
from harness.refstack import metrics
from harness.refstack.bugs import (
    ACK_BEFORE_PERSIST_FLUSH_SECONDS,
    DRAIN_GIVES_UP_SECONDS,
    READY_WARMUP_SECONDS,
    SLOW_FAILOVER_SECONDS,
)
from harness.refstack.config import Settings
from harness.refstack.coordination import ClusterState, Registration
from harness.refstack.etcd import EtcdError
from harness.refstack.httpserve import json_response, ops_app, serve
from harness.refstack.objects import CallError, ObjectType, object_type
from harness.refstack.service import Service, StartupError
from harness.refstack.sharding import (
    EMPTY,
    ShardEntry,
    full_map,
    plan_targets,
    shard_of,
    shards_to_claim,
    shards_to_release,
)
from harness.refstack.store import StaleEpoch, Store, StoreError, StoreUnknown, first_line
from harness.waiting import Deadline

log = logging.getLogger(__name__)
T = TypeVar("T")


class CallRejected(Exception):
    """Refused before anything was applied (not the owner, migrating, stopped, fenced out...)."""


class CallUnknown(Exception):
    """A write was in flight when its outcome became unknowable (connection lost, timeout)."""


@dataclass(eq=False)
class ActiveObject:
    type: ObjectType
    id: str
    shard: int
    epoch: int
    state: Any
    next_rcseq: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    dirty: bool = False
    dropped: bool = False


class Node(Service):
    component = "node"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        inst = settings.instance
        self.me = inst.advertise_addr
        self.node_id = inst.id
        self.bugs = settings.bugs
        self.shards = settings.cluster.shards
        self.store = Store(settings.postgres, f"refstack-{inst.id}",
                           reload_secrets="no-secret-reload" not in self.bugs,
                           connect_timeout=min(5.0, settings.cluster.call_timeout))
        info = {"id": inst.id, "advertise": self.me, "ops": inst.ops_addr, "version": settings.version_tag,
                "pid": os.getpid(), "bugs": sorted(self.bugs)}
        self.registration = Registration(
            self.etcd, {self.keys.node(self.me): self.me,
                        self.keys.info_key("node", self.me): json.dumps(info, separators=(",", ":"))},
            settings.cluster.lease_ttl, on_lost=self._on_lease_lost,
            trust_until_told="no-lease-deadline" in self.bugs)
        self.owned: dict[int, int] = {}  # shard -> epoch we serve it under
        self.handed_in: set[int] = set()  # shards whose fence existed before our claim (handovers)
        self.warming: dict[int, int] = {}  # seeded bug ready-before-serving: claimed, fenced, not yet served
        self.objects: dict[str, ActiveObject] = {}
        self.by_shard: dict[int, set[str]] = {}
        self._activating: dict[str, asyncio.Future[None]] = {}
        self.inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._ready_once = False
        self._lost_once: set[int] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._unsettled: dict[str, asyncio.Future[Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._runners: list[web.AppRunner] = []
        self._sighup = False
        self._label = {"node": self.me}
        self._call_metrics: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    # =============================================================== lifecycle
    async def run(self) -> int:
        stop = self.install_signals()
        try:
            await self.check_etcd()
            try:
                await self.store.open()
            except psycopg.OperationalError as exc:
                raise StartupError("postgres",
                                   f"cannot connect to {self.store.describe()}: {first_line(exc)}") from None
            except psycopg.Error as exc:
                raise StartupError("postgres", f"cannot create the schema at {self.store.describe()}: "
                                               f"{first_line(exc)}") from None
            await self._listen()
            try:
                await self.registration.register()
            except EtcdError as exc:
                raise StartupError("cluster.etcd.endpoints", f"cannot register in etcd: {exc}") from None
        except BaseException:
            await self._close_resources()
            raise
        log.info("node %s serving as %s (postgres %s, shards %d, bugs %s)", self.node_id, self.me,
                 self.store.describe(), self.shards, ",".join(sorted(self.bugs)) or "none")
        await self.refresh_view()
        self._tasks = [asyncio.create_task(self.registration.run(), name="keepalive"),
                       asyncio.create_task(self.tick_loop(self.tick), name="manage")]
        if "ack-before-persist" in self.bugs:
            self._tasks.append(asyncio.create_task(self._flush_loop(), name="flusher"))
        await stop.wait()
        return await self.shutdown()

    async def _listen(self) -> None:
        inst = self.settings.instance
        api = web.Application(client_max_size=4 * 1024 * 1024)
        api.router.add_post("/internal/v1/call", self._h_call)
        api.router.add_post("/internal/v1/reliable-call", self._h_reliable)
        api.router.add_post("/internal/v1/create", self._h_create)
        api.router.add_post("/internal/v1/delete", self._h_delete)
        api.router.add_get("/internal/v1/status", self._h_status)
        api.router.add_get("/internal/v1/objects", self._h_objects)
        try:
            self._runners.append(await serve(api, inst.listen_addr, "nodes[].grpc_addr"))
            if inst.ops_addr:
                ops = ops_app(ready=self.ready, stopped=lambda: self.stopping, gate_style=False,
                              extra={"/internal/v1/status": self._h_status})
                self._runners.append(await serve(ops, inst.ops_addr, "nodes[].http_addr"))
        except OSError as exc:
            raise StartupError("nodes[].grpc_addr/http_addr", f"cannot listen: {exc.strerror or exc}") from None

    async def shutdown(self) -> int:
        """SIGTERM: /ready 503 at once, refuse new calls, drain, flush, hand shards over, resign,
        revoke the lease, exit 0 — all within the shutdown grace period."""
        grace = Deadline(self.cluster.shutdown_grace)
        self.stopping = True
        t0 = time.monotonic()
        log.info("shutting down: draining %d in-flight calls", self.inflight)
        # 5 s of the grace are kept: flush, handover and revoke (~1 s), then closing the HTTP servers (up
        # to 2 s for handlers still running) and the PostgreSQL pool (up to 2 s). With 3 s kept, a node
        # SIGTERMed with calls held in PostgreSQL exited 10.19 s after a 10 s grace (SIGKILLed).
        drain = max(0.1, grace.remaining() - 5.0)
        if "drain-gives-up-early" in self.bugs:
            drain = DRAIN_GIVES_UP_SECONDS
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=drain)
        if "drain-gives-up-early" in self.bugs and self.inflight:
            # seeded bug: the drain timer fired; like log.Fatal after http.Server.Shutdown(ctx) returned
            # "context deadline exceeded", the process exits with the calls still running
            log.error("drain deadline (%gs) exceeded with %d calls in flight; exiting", drain, self.inflight)
            logging.shutdown()
            os._exit(1)
        for task in self._tasks:
            if task.get_name() != "keepalive":
                task.cancel()
        owned = dict(self.owned)
        self.owned.clear()
        await self._flush_dirty(list(self.objects.values()), fenced=True)
        self._drop_objects(list(self.objects))
        try:
            await self.refresh_view()
            state = self.view.state
            updates = {s: state.shards[s].with_current("") for s in owned
                       if s in state.shards and state.shards[s].current == self.me}
            if updates:
                written, conflicts, _ = await asyncio.wait_for(self.view.write_shards(updates),
                                                               timeout=max(0.1, grace.remaining() - 1.0))
                metrics.SHARD_RELEASES.labels(**self._label).inc(written)
                log.info("handed over %d shards (%d conflicts)", written, conflicts)
            if state.leader == self.me:
                await self.view.resign_leader(self.me)
        except (TimeoutError, EtcdError) as exc:
            log.warning("handover during shutdown incomplete: %s", exc)
        for task in self._tasks:
            task.cancel()
        try:
            await asyncio.wait_for(self.registration.revoke(), timeout=max(0.1, grace.remaining()))
        except (TimeoutError, EtcdError) as exc:
            log.warning("lease revoke failed (it will expire): %s", exc)
        await self._close_resources()
        log.info("stopped after %.2fs", time.monotonic() - t0)
        return 0

    async def _close_resources(self) -> None:
        for runner in self._runners:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        with contextlib.suppress(Exception):
            await self.store.close()
        with contextlib.suppress(Exception):
            await self.etcd.close()

    def on_sighup(self) -> None:
        if "no-secret-reload" in self.bugs:
            log.info("SIGHUP received and ignored (seeded bug no-secret-reload)")
            return
        log.info("SIGHUP received: re-reading the PostgreSQL password file")
        self._sighup = True

    # ============================================================ readiness
    def ready(self) -> tuple[bool, str]:
        if self._ready_once and "ready-latched" in self.bugs:
            return True, ""
        ok, why = self._ready_now()
        metrics.set_ready(self.node_id, ok)
        if ok:
            self._ready_once = True
        return ok, why

    def _ready_now(self) -> tuple[bool, str]:
        if self.stopping:
            return False, "shutting down"
        if not self.registration.alive():
            return False, "no live etcd lease"
        st = self.view.state
        if not st.loaded or self.me not in st.nodes:
            return False, "not yet in the cluster view"
        table = full_map(st.shards, self.shards)
        unassigned = sum(1 for e in table.values() if not e.target)
        if unassigned:
            return False, f"{unassigned} shards have no target node yet"
        # seeded bug ready-before-serving: a shard claimed in etcd counts, served or still warming up
        counts = (lambda s: True) if "ready-before-serving" in self.bugs else (lambda s: s in self.owned)
        missing = sum(1 for s, e in table.items()
                      if e.target == self.me and (e.current != self.me or not counts(s)))
        if missing:
            return False, f"{missing} shards targeted to this node are not claimed yet"
        return True, ""

    # ======================================================== management tick
    async def tick(self) -> None:
        try:
            await self._tick()
        except EtcdError as exc:  # etcd trouble is expected under faults: no traceback, retry next tick
            log.warning("management tick: etcd: %s", exc)

    async def _tick(self) -> None:
        if self._sighup:
            self._sighup = False
            await self.store.check_secret(force=True)
        else:
            await self.store.check_secret()
        if not await self.refresh_view():
            return
        state = self.view.state
        self._drop_lost_shards(state)
        self._update_gauges(state)
        if not self.registration.alive() or self.me not in state.nodes or self.stopping:
            return
        leaderless = not state.leader or state.leader not in state.nodes
        if leaderless and await self.view.try_become_leader(self.me):
            log.info("became leader")
            await self.refresh_view()
            state = self.view.state
        if state.leader == self.me and await self._lead(state):
            await self.refresh_view()
            state = self.view.state
        for s in shards_to_release(state.shards, self.me):
            await self._handover(s, state.shards[s])
        await self._claim(state)

    def _update_gauges(self, state: ClusterState) -> None:
        metrics.update_shard_gauges(state.shards, set(state.nodes))
        metrics.OWNED_SHARDS.labels(**self._label).set(len(self.owned))
        metrics.ACTIVE_OBJECTS.labels(**self._label).set(len(self.objects))
        metrics.NODE_CONNECTED_GATES.labels(**self._label).set(len(state.gates))

    async def _lead(self, state: ClusterState) -> bool:
        stable = self.view.stable(self.cluster.stability)
        hold = self._slow_failover_hold if "slow-failover" in self.bugs else (lambda n: False)
        changes = plan_targets(state.shards, self.shards, set(state.nodes), stable=stable, hold=hold,
                               rebalance_batch=max(1, self.shards // 16))
        if not changes:
            return False
        updates = {s: state.shards.get(s, EMPTY).with_target(t) for s, t in changes.items()}
        written, conflicts, _ = await self.view.write_shards(updates)
        if conflicts:
            metrics.MAPPING_WRITE_FAILURES.labels(error_type="modrevision_conflict").inc(conflicts)
        log.info("leader: set target of %d shards (%d conflicts)", written, conflicts)
        return written > 0

    def _slow_failover_hold(self, node: str) -> bool:
        now = time.monotonic()
        return now - self.view.gone_since.setdefault(node, now) < SLOW_FAILOVER_SECONDS

    async def _claim(self, state: ClusterState) -> None:
        todo = shards_to_claim(state.shards, self.me, set(state.nodes), self.owned.keys() | self.warming.keys())
        if not todo:
            return
        updates = {s: state.shards.get(s, EMPTY).with_current(self.me) for s in todo}
        revisions = await self.view.write_shards_revisions(updates)
        if len(revisions) < len(todo):
            metrics.MAPPING_WRITE_FAILURES.labels(error_type="modrevision_conflict").inc(len(todo) - len(revisions))
        by_epoch: dict[int, list[int]] = {}
        for s, rev in revisions.items():
            by_epoch.setdefault(rev, []).append(s)
        for epoch, shards in by_epoch.items():
            try:
                results = await self.store.raise_fences(shards, epoch)
            except (StoreError, StoreUnknown) as exc:
                log.warning("claimed %d shards in etcd but cannot raise their fences: %s", len(shards), exc)
                continue
            for r in results:
                if r.epoch != epoch and not await self._fence_from_old_history(r.shard, epoch, r.epoch):
                    log.warning("shard %d: fence %d is ahead of our claim %d; not serving", r.shard, r.epoch, epoch)
                    continue
                if not self.registration.alive():
                    continue
                if "ready-before-serving" in self.bugs:
                    self.warming[r.shard] = epoch  # served after the warm-up (_warm_up), ready already
                    continue
                self.owned[r.shard] = epoch
                if r.existed:
                    self.handed_in.add(r.shard)
                else:
                    self.handed_in.discard(r.shard)
                metrics.SHARD_CLAIMS.labels(**self._label).inc()
        if revisions:
            log.info("claimed %d shards", len(revisions))
        if "ready-before-serving" in self.bugs and self.warming:
            task = asyncio.create_task(self._warm_up(dict(self.warming)))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _warm_up(self, shards: dict[int, int]) -> None:
        """Seeded bug ready-before-serving: claimed shards are served only after a warm-up (a preload
        of their objects, modelled as its duration), while /ready already counts them."""
        await asyncio.sleep(READY_WARMUP_SECONDS)  # sleep-ok: the warm-up's length is the bug
        for shard, epoch in shards.items():
            if self.warming.get(shard) != epoch:
                continue
            del self.warming[shard]
            entry = self.view.state.shards.get(shard, EMPTY)
            if self.registration.alive() and entry.current == self.me and entry.target == self.me:
                self.owned[shard] = epoch

    async def _fence_from_old_history(self, shard: int, epoch: int, fence: int) -> bool:
        """A fence above our claim with etcd still showing our claim as the latest write can only come
        from an older etcd history (e.g. etcd restored from a backup): reset it."""
        try:
            kv = await self.etcd.get(self.keys.shard(shard))
        except EtcdError:
            return False
        if kv is None or kv.mod_revision != epoch or ShardEntry.parse(kv.value).current != self.me:
            return False
        try:
            ok = await self.store.force_fence(shard, epoch, fence)
        except (StoreError, StoreUnknown):
            return False
        if ok:
            log.warning("shard %d: fence %d came from an older etcd history; reset to %d", shard, fence, epoch)
        return ok

    async def _handover(self, shard: int, entry: ShardEntry) -> None:
        """Target moved away: stop serving, finish in-flight calls, flush, drop, clear current."""
        self.owned.pop(shard, None)
        self.warming.pop(shard, None)
        objs = [self.objects[i] for i in self.by_shard.get(shard, set()) if i in self.objects]
        if not await self._flush_dirty(objs, fenced=True):
            return  # Goverse too: a failed save blocks eviction; retried next tick
        for obj in objs:
            async with obj.lock:
                obj.dropped = True
        self._drop_objects([o.id for o in objs])
        written, _, _ = await self.view.write_shards({shard: entry.with_current("")})
        if written:
            metrics.SHARD_RELEASES.labels(**self._label).inc()
            log.info("handed shard %d over to %s", shard, entry.target)

    def _drop_lost_shards(self, state: ClusterState) -> None:
        """Shards we serve whose etcd owner is no longer us (someone took them): stop at once."""
        for s in [s for s in self.warming if state.shards.get(s, EMPTY).current != self.me]:
            del self.warming[s]
        lost = [s for s in self.owned if state.shards.get(s, EMPTY).current != self.me]
        if "no-fencing" in self.bugs:
            # seeded bug: ownership loss is 'debounced' (must be seen on two refreshes in a row), so
            # a node that resumes after a pause keeps serving its stale shards for at least a tick
            confirmed = [s for s in lost if s in self._lost_once]
            self._lost_once = set(lost) - set(confirmed)
            lost = confirmed
        if lost:
            log.warning("shards %s are no longer ours in etcd; dropping", lost[:10])
            for s in lost:
                self.owned.pop(s, None)
            ids = [i for s in lost for i in self.by_shard.get(s, set())]
            if "stale-overwrite-on-rejoin" in self.bugs:
                task = asyncio.create_task(self._stale_flush([self.objects[i] for i in ids if i in self.objects]))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            else:
                self._drop_objects(ids)

    async def _on_lease_lost(self, why: str) -> None:
        metrics.LEASE_LOSSES.labels(**self._label).inc()
        if "no-fencing" in self.bugs:
            log.warning("lease lost (%s); keeping %d shards (seeded bug no-fencing)", why, len(self.owned))
            return
        log.warning("lease lost (%s): no longer serving %d shards; dropping %d objects", why, len(self.owned),
                    len(self.objects))
        self.owned.clear()
        objs = list(self.objects.values())
        if "stale-overwrite-on-rejoin" in self.bugs:
            await self._stale_flush(objs)
        else:
            self._drop_objects([o.id for o in objs])

    async def _stale_flush(self, objs: list[ActiveObject]) -> None:
        """Seeded bug stale-overwrite-on-rejoin: 'save before evicting', unfenced."""
        for obj in objs:
            with contextlib.suppress(StoreError, StoreUnknown, StaleEpoch):
                await self.store.save(obj.id, obj.type.name, obj.type.to_data(obj.id, obj.state), obj.next_rcseq,
                                      obj.shard, obj.epoch, fenced=False)
        log.warning("flushed %d in-memory objects before dropping them (seeded bug stale-overwrite-on-rejoin)",
                    len(objs))
        self._drop_objects([o.id for o in objs])

    def _drop_objects(self, ids: list[str]) -> None:
        for oid in ids:
            obj = self.objects.pop(oid, None)
            if obj is None:
                continue
            obj.dropped = True
            members = self.by_shard.get(obj.shard)
            if members is not None:
                members.discard(oid)
                if not members:
                    del self.by_shard[obj.shard]

    async def _flush_dirty(self, objs: list[ActiveObject], *, fenced: bool) -> bool:
        ok = True
        for obj in objs:
            if not obj.dirty:
                continue
            async with obj.lock:
                if not obj.dirty:
                    continue
                try:
                    await self.store.save(obj.id, obj.type.name, obj.type.to_data(obj.id, obj.state),
                                          obj.next_rcseq, obj.shard, obj.epoch,
                                          fenced=fenced and "no-fencing" not in self.bugs)
                    obj.dirty = False
                except (StoreError, StoreUnknown, StaleEpoch) as exc:
                    log.warning("flush of %s failed: %s", obj.id, exc)
                    ok = False
        return ok

    async def _flush_loop(self) -> None:
        """Seeded bug ack-before-persist: acknowledged state reaches PostgreSQL only every ~1 s."""
        while True:
            await asyncio.sleep(ACK_BEFORE_PERSIST_FLUSH_SECONDS)  # sleep-ok: the batching period is the bug
            await self._flush_dirty([o for o in self.objects.values() if o.dirty], fenced=True)

    # ============================================================== serving
    def _serving_epoch(self, shard: int, object_id: str) -> int:
        if "no-fencing" not in self.bugs and not self.registration.alive():
            raise CallRejected(f"node {self.me} has no live etcd lease; not serving")
        epoch = self.owned.get(shard)
        if epoch is not None:
            return epoch
        entry = self.view.state.shards.get(shard, EMPTY)
        if entry.current == self.me and entry.target and entry.target != self.me:
            raise CallRejected(f"shard {shard} is in migration from {self.me} to {entry.target}")
        if entry.current == self.me:
            raise CallRejected(f"shard {shard} is being claimed by this node {self.me} (no fenced epoch yet), "
                               "not serving")
        owner = entry.current or "(none)"
        raise CallRejected(f"object {object_id} is sharded to node {owner}, not this node {self.me}")

    async def _object(self, otype: ObjectType, object_id: str, shard: int) -> ActiveObject:
        """The active object, loading it from PostgreSQL on first use under the current epoch."""
        for _ in range(3):
            epoch = self._serving_epoch(shard, object_id)
            obj = self.objects.get(object_id)
            if obj is not None and obj.epoch == epoch and not obj.dropped:
                if obj.type is not otype:
                    raise CallError(f"object type mismatch: expected {obj.type.name}, got {otype.name}")
                return obj
            pending = self._activating.get(object_id)
            if pending is not None:
                await asyncio.shield(pending)
                continue
            return await self._activate(otype, object_id, shard, epoch)
        raise CallRejected(f"object {object_id}: ownership changed during activation, not serving")

    async def _activate(self, otype: ObjectType, object_id: str, shard: int, epoch: int) -> ActiveObject:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._activating[object_id] = fut
        try:
            old = self.objects.get(object_id)
            if old is not None:
                self._drop_objects([object_id])
            unsettled = self._unsettled.get(object_id)
            if unsettled is not None:  # a timed-out write of this object is still in flight: let it land
                await asyncio.wait({unsettled}, timeout=self.cluster.call_timeout)
                if not unsettled.done():
                    raise CallRejected(f"object {object_id} has a write of unknown outcome in flight, not serving")
            if "lose-state-on-handover" in self.bugs and shard in self.handed_in:
                stored = None  # Goverse's in-memory samples: a migrated object starts from zero
            else:
                try:
                    stored = await self.store.load(object_id)
                except StoreError as exc:
                    raise CallRejected(str(exc)) from None
            if stored is not None and stored.object_type != otype.name:
                raise CallError(f"object type mismatch: expected {stored.object_type}, got {otype.name}")
            if self.owned.get(shard) != epoch:
                raise CallRejected(f"shard {shard} changed owner while {object_id} was loading, not serving")
            obj = ActiveObject(otype, object_id, shard, epoch,
                               otype.from_data(stored.data) if stored else otype.initial(),
                               stored.next_rcseq if stored else 0)
            self.objects[object_id] = obj
            self.by_shard.setdefault(shard, set()).add(object_id)
            return obj
        finally:
            del self._activating[object_id]
            fut.set_result(None)

    def _begin(self) -> None:
        if self.stopping:
            raise CallRejected("node is stopped")
        self.inflight += 1
        self._idle.clear()

    def _end(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def _settled(self, object_id: str, write: Awaitable[T]) -> T:
        """Await a database write that must not be interrupted halfway. If the caller is cancelled
        (call timeout), the write goes on; until it finishes the object is not loaded again, so a
        later write can never be overtaken by this one (which would persist an older state)."""
        task = asyncio.ensure_future(write)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            def settled(t: asyncio.Future[Any]) -> None:
                if self._unsettled.get(object_id) is t:
                    del self._unsettled[object_id]
                if not t.cancelled():
                    t.exception()  # retrieved: its outcome is unknown to the client either way
            self._unsettled[object_id] = task
            task.add_done_callback(settled)
            self._drop_objects([object_id])
            raise

    async def _persist(self, obj: ActiveObject, new_state: Any) -> None:
        try:
            await self._settled(obj.id, self.store.save(
                obj.id, obj.type.name, obj.type.to_data(obj.id, new_state), obj.next_rcseq, obj.shard, obj.epoch,
                fenced="no-fencing" not in self.bugs))
        except StaleEpoch as exc:
            metrics.FENCE_REJECTIONS.labels(**self._label).inc()
            self._fenced_out(obj.shard)
            raise CallRejected(str(exc)) from None
        except StoreError as exc:
            raise CallRejected(str(exc)) from None
        except StoreUnknown as exc:
            self._drop_objects([obj.id])  # memory may no longer match the database
            raise CallUnknown(str(exc)) from None

    def _fenced_out(self, shard: int) -> None:
        if self.owned.pop(shard, None) is not None:
            log.warning("shard %d: fenced out by a newer owner; dropping it", shard)
        self._drop_objects(list(self.by_shard.get(shard, set())))

    async def call(self, type_name: str, object_id: str, method: str, request_b64: str) -> tuple[str, int]:
        """One plain call; returns (base64 Any response, epoch)."""
        otype = object_type(type_name, object_id)
        m = otype.method(method)
        try:
            req = wire.unpack(request_b64)
        except wire.WireError as exc:
            raise CallError(f"request type mismatch: expected {m.request}, got undecodable request ({exc})") from None
        shard = shard_of(object_id, self.shards)
        self._begin()
        try:
            for _ in range(3):
                obj = await self._object(otype, object_id, shard)
                async with obj.lock:
                    if obj.dropped:
                        continue
                    epoch = self._serving_epoch(shard, object_id)
                    if obj.epoch != epoch:
                        continue
                    new_state, resp = otype.invoke(object_id, obj.state, method, req)
                    if m.mutates and new_state != obj.state:
                        if "ack-before-persist" in self.bugs:
                            obj.dirty = True
                        else:
                            await self._persist(obj, new_state)
                        obj.state = new_state
                    return wire.pack(resp), epoch
            raise CallRejected(f"object {object_id}: ownership kept changing during the call, not serving")
        finally:
            self._end()

    async def reliable_call(self, type_name: str, object_id: str, method: str, call_id: str,
                            request_b64: str) -> dict[str, Any]:
        """Deduplicated by call_id; state and call status commit in one transaction."""
        otype = object_type(type_name, object_id)
        m = otype.method(method)
        try:
            req = wire.unpack(request_b64)
            raw = base64.b64decode(request_b64)
        except (wire.WireError, ValueError) as exc:
            raise CallError(f"request type mismatch: expected {m.request}, got undecodable request ({exc})") from None
        if req.DESCRIPTOR.full_name != m.request:
            raise CallError(f"request type mismatch: expected {m.request}, got {req.DESCRIPTOR.full_name}")
        shard = shard_of(object_id, self.shards)
        self._begin()
        try:
            obj = await self._object(otype, object_id, shard)
            async with obj.lock:
                if obj.dropped:
                    raise CallRejected(f"object {object_id} was dropped during the call, not serving")
                epoch = self._serving_epoch(shard, object_id)
                if obj.epoch != epoch:
                    raise CallRejected(f"object {object_id}: ownership changed during the call, not serving")
                pending: list[Any] = []

                def execute() -> tuple[dict[str, Any] | None, bytes | None, str | None]:
                    new_state, resp = otype.invoke(object_id, obj.state, method, req)
                    pending[:] = [new_state]
                    changed = m.mutates and new_state != obj.state
                    result = base64.b64decode(wire.pack(resp))
                    return (otype.to_data(object_id, new_state) if changed else None), result, None

                try:
                    out = await self._settled(object_id, self.store.reliable_call(
                        call_id=call_id, object_id=object_id, object_type=otype.name, method=method, request=raw,
                        shard=shard, epoch=epoch, execute=execute, fenced="no-fencing" not in self.bugs,
                        dedup="no-dedup" not in self.bugs))
                except StaleEpoch as exc:
                    metrics.FENCE_REJECTIONS.labels(**self._label).inc()
                    self._fenced_out(shard)
                    raise CallRejected(str(exc)) from None
                except StoreError as exc:
                    raise CallRejected(str(exc)) from None
                except StoreUnknown as exc:
                    self._drop_objects([object_id])
                    raise CallUnknown(str(exc)) from None
                if out.executed and pending:
                    obj.state = pending[0]
                    obj.next_rcseq = out.next_rcseq
                status = {"success": "SUCCESS", "failed": "FAILED", "skipped": "SKIPPED"}.get(out.status, "UNKNOWN")
                response = base64.b64encode(out.result).decode("ascii") if out.result else ""
                return {"status": status, "response": response, "error": out.error or "", "epoch": epoch,
                        "executed": out.executed}
        finally:
            self._end()

    async def create(self, type_name: str, object_id: str) -> int:
        otype = object_type(type_name, object_id)
        shard = shard_of(object_id, self.shards)
        self._begin()
        try:
            obj = await self._object(otype, object_id, shard)
            async with obj.lock:
                epoch = self._serving_epoch(shard, object_id)
                if obj.next_rcseq == 0 and not obj.dirty:
                    stored = await self._load_quiet(object_id)
                    if stored is None:
                        await self._persist(obj, obj.state)
                return epoch
        finally:
            self._end()

    async def _load_quiet(self, object_id: str) -> Any:
        try:
            return await self.store.load(object_id)
        except StoreError as exc:
            raise CallRejected(str(exc)) from None

    async def delete(self, type_name: str, object_id: str) -> int:
        otype = object_type(type_name, object_id)
        shard = shard_of(object_id, self.shards)
        self._begin()
        try:
            epoch = self._serving_epoch(shard, object_id)
            obj = self.objects.get(object_id)
            if obj is not None and obj.type is not otype:
                raise CallError(f"delete rejected: type mismatch: object {object_id} is {obj.type.name}, "
                                f"not {type_name}")
            lock = obj.lock if obj is not None else asyncio.Lock()
            async with lock:
                try:
                    await self.store.delete(object_id, shard, epoch, fenced="no-fencing" not in self.bugs)
                except StaleEpoch as exc:
                    self._fenced_out(shard)
                    raise CallRejected(str(exc)) from None
                except StoreError as exc:
                    raise CallRejected(str(exc)) from None
                except StoreUnknown as exc:
                    raise CallUnknown(str(exc)) from None
                finally:
                    self._drop_objects([object_id])
            return epoch
        finally:
            self._end()

    # ========================================================= HTTP handlers
    def _observe(self, type_name: str, method: str, ok: bool, seconds: float) -> None:
        key = (type_name, method, "success" if ok else "failure")
        pair = self._call_metrics.get(key)
        if pair is None:
            labels = {"node": self.me, "object_type": key[0], "method_name": key[1], "status": key[2]}
            pair = (metrics.METHOD_CALLS.labels(**labels), metrics.METHOD_DURATION.labels(**labels))
            self._call_metrics[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def _error(self, exc: BaseException) -> web.Response:
        if isinstance(exc, CallUnknown):
            kind = "unknown"
        elif isinstance(exc, CallRejected):
            kind = "rejected"
        else:
            kind = "failed"
        return json_response({"ok": False, "error": str(exc), "kind": kind, "node": self.node_id})

    async def _body(self, request: web.Request) -> dict[str, Any]:
        data = await request.json(loads=json.loads)
        if not isinstance(data, dict):
            raise CallError("invalid internal request body")
        return data

    async def _guarded(self, request: web.Request, op: str, fn: Any) -> web.Response:
        t0 = time.perf_counter()
        body: dict[str, Any] = {}
        try:
            body = await self._body(request)
            async with asyncio.timeout(self.cluster.call_timeout):
                result = await fn(body)
        except (CallError, CallRejected, CallUnknown) as exc:
            self._observe(str(body.get("type", "?")), str(body.get("method", op)), False, time.perf_counter() - t0)
            return self._error(exc)
        except TimeoutError:
            self._observe(str(body.get("type", "?")), str(body.get("method", op)), False, time.perf_counter() - t0)
            return self._error(CallUnknown(f"node {self.me}: {op} did not finish within "
                                           f"{self.cluster.call_timeout:g}s"))
        except (ValueError, KeyError, TypeError) as exc:
            return self._error(CallError(f"invalid internal request: {exc!r}"))
        self._observe(str(body.get("type", "?")), str(body.get("method", op)), True, time.perf_counter() - t0)
        return json_response({"ok": True, "node": self.node_id, **result})

    async def _h_call(self, request: web.Request) -> web.Response:
        async def go(b: dict[str, Any]) -> dict[str, Any]:
            resp, epoch = await self.call(b["type"], b["id"], b["method"], b.get("request") or "")
            return {"response": resp, "epoch": epoch}
        return await self._guarded(request, "call", go)

    async def _h_reliable(self, request: web.Request) -> web.Response:
        async def go(b: dict[str, Any]) -> dict[str, Any]:
            return await self.reliable_call(b["type"], b["id"], b["method"], str(b["call_id"]), b.get("request") or "")
        return await self._guarded(request, "reliable-call", go)

    async def _h_create(self, request: web.Request) -> web.Response:
        async def go(b: dict[str, Any]) -> dict[str, Any]:
            return {"id": b["id"], "epoch": await self.create(b["type"], b["id"])}
        return await self._guarded(request, "create", go)

    async def _h_delete(self, request: web.Request) -> web.Response:
        async def go(b: dict[str, Any]) -> dict[str, Any]:
            return {"epoch": await self.delete(b["type"], b["id"])}
        return await self._guarded(request, "delete", go)

    async def _h_status(self, request: web.Request) -> web.Response:
        ok, why = self.ready()
        return json_response({
            "node_id": self.node_id, "advertise_addr": self.me, "version": self.settings.version_tag,
            "bugs": sorted(self.bugs), "pid": os.getpid(), "uptime_seconds": round(time.monotonic() - self.started, 3),
            "num_objects": len(self.objects), "inflight": self.inflight, "lease_alive": self.registration.alive(),
            "leader": self.view.state.leader, "ready": ok, "not_ready_reason": why, "stopping": self.stopping,
            "owned_shards": {str(s): e for s, e in sorted(self.owned.items())},
            "postgres_pool": self.store.pool.get_stats(),
        })

    async def _h_objects(self, request: web.Request) -> web.Response:
        return json_response({"node_id": self.node_id, "objects": [
            {"type": o.type.name, "id": o.id, "shard": o.shard, "epoch": o.epoch}
            for o in self.objects.values()]})
