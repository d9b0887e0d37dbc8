"""The reference stack's etcd layer against a real etcd: endpoint failover, CAS shard writes, the
cluster view, and lease registration that notices a lost lease and registers again."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from harness.ports import free_port
from harness.refstack.coordination import ClusterView, Keys, Registration
from harness.refstack.etcd import EtcdClient, EtcdUnavailable, cmp_mod, op_put
from harness.refstack.sharding import ShardEntry

pytestmark = pytest.mark.integration


def prefix() -> str:
    return f"/etcdtest-{secrets.token_hex(3)}"


def test_client_fails_over_to_a_live_endpoint_and_reports_when_none_answers(etcd) -> None:  # noqa: ANN001
    dead = f"http://127.0.0.1:{free_port()}"

    async def go() -> None:
        async with EtcdClient([dead, etcd.client_urls[0]], timeout=1.0) as client:
            rev = await client.put("/failover/k", "v")
            assert rev > 0 and client.current_endpoint == etcd.client_urls[0] and client.failovers == 1
            kv = await client.get("/failover/k")
            assert kv is not None and kv.value == "v" and kv.mod_revision == rev
        async with EtcdClient([dead], timeout=0.5) as client:
            with pytest.raises(EtcdUnavailable, match="no etcd endpoint answered"):
                await client.get("/failover/k")
    asyncio.run(go())


def test_shard_writes_are_compare_and_swap_and_the_view_follows(etcd) -> None:  # noqa: ANN001
    keys = Keys(prefix())

    async def go() -> None:
        async with EtcdClient(etcd.client_urls) as client:
            view = ClusterView(client, keys, shards=4)
            state = await view.refresh()
            assert state.loaded and state.shards == {} and state.nodes == {}
            revs = await view.write_shards_revisions({0: ShardEntry("a:1", ""), 1: ShardEntry("b:1", "")})
            assert set(revs) == {0, 1} and revs[0] == revs[1], "one transaction, one revision (the epoch)"
            state = await view.refresh()
            assert state.shards[0] == ShardEntry("a:1", "", (), revs[0])
            stale = {0: ShardEntry("a:1", "a:1", (), 0)}  # read before the first write: must not apply
            assert await view.write_shards_revisions(stale) == {}
            claim = {0: state.shards[0].with_current("a:1")}
            won = await view.write_shards_revisions(claim)
            assert won[0] > revs[0]
            await client.put(keys.node("a:1"), "a:1")
            before = view.last_membership_change
            state = await view.refresh()  # incremental: only shard 0 changed
            assert state.shards[0].current == "a:1" and state.shards[1].target == "b:1"
            assert set(state.nodes) == {"a:1"} and view.last_membership_change > before
            assert await view.try_become_leader("a:1")
            assert not await view.try_become_leader("b:1"), "the CAS used the revision seen before 'a' won"
            state = await view.refresh()
            assert state.leader == "a:1"
            await view.resign_leader("b:1")  # not the leader: no effect
            assert (await view.refresh()).leader == "a:1"
            await view.resign_leader("a:1")
            assert (await view.refresh()).leader == ""
            res = await client.txn([cmp_mod(keys.shard(3), 0)], [op_put(keys.shard(3), "c:1,c:1")])
            assert res.succeeded and (await view.refresh()).shards[3].current == "c:1"
    asyncio.run(go())


def test_registration_detects_a_lost_lease_and_registers_again(etcd) -> None:  # noqa: ANN001
    keys = Keys(prefix())

    async def go() -> None:
        async with EtcdClient(etcd.client_urls) as client, EtcdClient(etcd.client_urls) as other:
            lost = asyncio.Event()
            reasons: list[str] = []

            async def on_lost(why: str) -> None:
                reasons.append(why)
                lost.set()
            reg = Registration(client, {keys.node("n:1"): "n:1"}, ttl=2, on_lost=on_lost)
            await reg.register()
            first = reg.lease_id
            assert reg.alive() and reg.deadline > time.monotonic() + 1.5
            assert (await client.get(keys.node("n:1"))).lease == first
            runner = asyncio.create_task(reg.run())
            try:
                await other.lease_revoke(first)  # e.g. an operator, or expiry while we were paused
                await asyncio.wait_for(lost.wait(), 5)
                assert reasons == ["etcd says the lease expired"]
                await asyncio.wait_for(_until(lambda: reg.alive() and reg.lease_id != first), 5)
                kv = await client.get(keys.node("n:1"))
                assert kv is not None and kv.lease == reg.lease_id, "registered again under a new lease"
                await reg.revoke()
                assert not reg.alive() and await client.get(keys.node("n:1")) is None
            finally:
                runner.cancel()
    asyncio.run(go())


async def _until(predicate) -> None:  # noqa: ANN001
    while not predicate():
        await asyncio.sleep(0.02)  # sleep-ok: polling a local flag inside asyncio.wait_for's deadline
