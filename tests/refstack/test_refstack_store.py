"""Fenced persistence on a real PostgreSQL: stale owners cannot write, reliable calls apply once,
secret rotation picks up a new password."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from harness.refstack.config import PostgresSettings
from harness.refstack.localcluster import PgAccess, fresh_database
from harness.refstack.store import StaleEpoch, Store, StoreError
from harness.waiting import Deadline

pytestmark = pytest.mark.integration


@pytest.fixture
def pg(postgres) -> PgAccess:  # noqa: ANN001
    return fresh_database(postgres)


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="gvh-test-store-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def settings(pg: PgAccess, password_file: str = "") -> PostgresSettings:
    return PostgresSettings(host=pg.host, port=pg.port, user=pg.user, database=pg.database,
                            password="" if password_file else pg.password, password_file=password_file,
                            max_open_conns=4)


def value_in_db(pg: PgAccess, object_id: str) -> int | None:
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.database) as c:
        row = c.execute("SELECT data FROM goverse_objects WHERE object_id = %s", (object_id,)).fetchone()
    return None if row is None else int(row[0]["value"])


def test_schema_is_goverses_plus_fences(pg: PgAccess) -> None:
    async def go() -> None:
        stores = [Store(settings(pg), f"t{i}") for i in range(3)]
        await asyncio.gather(*(s.open() for s in stores))  # concurrent creation must not race
        for s in stores:
            await s.close()
    asyncio.run(go())
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.database) as c:
        cols = {t: [r[0] for r in c.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
            (t,)).fetchall()] for t in ("goverse_objects", "goverse_reliable_calls", "refstack_shard_fences")}
        triggers = [r[0] for r in c.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal").fetchall()]
    assert cols["goverse_objects"] == ["object_id", "object_type", "data", "next_rcseq", "created_at", "updated_at"]
    assert cols["goverse_reliable_calls"] == ["seq", "call_id", "object_id", "object_type", "method_name",
                                              "request_data", "result_data", "error_message", "status",
                                              "created_at", "updated_at"]
    assert cols["refstack_shard_fences"] == ["shard", "epoch"]
    assert triggers == ["trigger_update_goverse_reliable_calls_timestamp"]


def test_a_stale_epoch_cannot_overwrite_the_new_owner(pg: PgAccess) -> None:
    async def go() -> None:
        store = Store(settings(pg), "fence-test")
        await store.open()
        try:
            first = await store.raise_fences([3, 4], 100)
            assert [(r.shard, r.epoch, r.existed) for r in first] == [(3, 100, False), (4, 100, False)]
            await store.save("c", "Counter", {"name": "c", "value": 5}, 0, shard=3, epoch=100)
            again = await store.raise_fences([3], 250)  # a new owner claims shard 3
            assert [(r.epoch, r.existed) for r in again] == [(250, True)]
            with pytest.raises(StaleEpoch, match="not serving"):
                await store.save("c", "Counter", {"name": "c", "value": 1}, 0, shard=3, epoch=100)
            assert value_in_db(pg, "c") == 5
            lower = await store.raise_fences([3], 200)  # an older claim arriving late cannot lower it
            assert lower[0].epoch == 250
            await store.save("c", "Counter", {"name": "c", "value": 6}, 0, shard=3, epoch=250)
            await store.save("c", "Counter", {"name": "c", "value": 2}, 0, shard=3, epoch=100, fenced=False)
            assert value_in_db(pg, "c") == 2, "without the fence (seeded bugs) the stale write lands"
            assert await store.force_fence(3, 120, seen=250) and not await store.force_fence(3, 130, seen=250)
            assert (await store.fences())[3] == 120
            loaded = await store.load("c")
            assert loaded is not None and loaded.object_type == "Counter" and loaded.data["value"] == 2
            assert await store.load("nope") is None
            assert await store.delete("c", 3, 120) and await store.load("c") is None
            with pytest.raises(StaleEpoch):
                await store.delete("c", 3, 100)
        finally:
            await store.close()
    asyncio.run(go())


def test_a_fence_raise_waits_for_an_in_flight_write_of_the_old_epoch(pg: PgAccess) -> None:
    async def go() -> None:
        store = Store(settings(pg), "lock-test")
        await store.open()
        await store.raise_fences([9], 10)
        conn = await psycopg.AsyncConnection.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password,
                                                     dbname=pg.database)
        try:
            await conn.execute("SELECT epoch FROM refstack_shard_fences WHERE shard = 9 FOR SHARE")  # open txn
            raising = asyncio.ensure_future(store.raise_fences([9], 20))
            done, _ = await asyncio.wait({raising}, timeout=0.5)
            assert not done, "the new owner's fence must wait for the old owner's open write"
            await conn.commit()
            result = await asyncio.wait_for(raising, 5)
            assert result[0].epoch == 20
        finally:
            await conn.close()
            await store.close()
    asyncio.run(go())


def _deposit(amount: int):  # noqa: ANN202
    def execute() -> tuple[dict, bytes, None]:
        return {"walletId": "w", "balance": str(amount)}, b"result-bytes", None
    return execute


@pytest.mark.parametrize("dedup", [True, False], ids=["dedup", "seeded-bug-no-dedup"])
def test_reliable_calls_run_once_per_call_id(pg: PgAccess, dedup: bool) -> None:
    runs: list[int] = []

    def execute() -> tuple[dict, bytes, None]:
        runs.append(1)
        return {"walletId": "w", "balance": str(10 * len(runs))}, b"r%d" % len(runs), None

    async def go() -> None:
        store = Store(settings(pg), "rc-test")
        await store.open()
        await store.raise_fences([1], 7)
        try:
            kw = {"call_id": "call-1", "object_id": "w", "object_type": "Wallet", "method": "Deposit",
                  "request": b"req", "shard": 1, "epoch": 7, "execute": execute, "dedup": dedup}
            first = await store.reliable_call(**kw)
            second = await store.reliable_call(**kw)
            assert first.executed and first.status == "success" and first.result == b"r1" and first.next_rcseq > 0
            if dedup:
                assert not second.executed and second.result == b"r1" and len(runs) == 1
            else:
                assert second.executed and second.result == b"r2" and len(runs) == 2
            await store.raise_fences([1], 8)
            with pytest.raises(StaleEpoch):
                await store.reliable_call(**{**kw, "call_id": "call-2"})
            assert len(runs) == (1 if dedup else 2), "a fenced-out reliable call never executes"
        finally:
            await store.close()
    asyncio.run(go())


@pytest.mark.parametrize("reload", [True, False], ids=["reload", "seeded-bug-no-secret-reload"])
def test_secret_rotation_uses_the_new_password_for_new_connections(postgres, workdir: Path, reload: bool) -> None:  # noqa: ANN001
    pg = fresh_database(postgres)
    role = f"rot_{'a' if reload else 'b'}_{workdir.name[-6:].lower()}"
    with postgres.admin_connect() as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'old-pw'").format(sql.Identifier(role)))
        admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(pg.database),
                                                                       sql.Identifier(role)))
    pw = workdir / "pw"
    pw.write_text("old-pw\n")
    access = PgAccess(pg.host, pg.port, role, pg.database, "old-pw")

    async def go() -> None:
        store = Store(settings(access, str(pw)), "rot", reload_secrets=reload, connect_timeout=1.0)
        await store.open()
        try:
            await store.raise_fences([0], 1)
            await store.save("x", "Counter", {"value": 1}, 0, shard=0, epoch=1)
            pw.write_text("new-pw\n")
            assert not await store.check_secret(), "the role is not altered yet: keep the old password"
            with postgres.admin_connect() as admin:
                admin.execute(sql.SQL("ALTER ROLE {} PASSWORD 'new-pw'").format(sql.Identifier(role)))
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            assert await store.check_secret(force=True) is reload
            deadline = Deadline(8)
            while True:  # the pool reconnects in the background; an attempt may meet a terminated backend
                try:
                    await store.save("x", "Counter", {"value": 2}, 0, shard=0, epoch=1)
                    saved = True
                    break
                except StoreError:
                    if not reload or deadline.expired():
                        saved = False
                        break
            assert saved is reload
        finally:
            await store.close()
    asyncio.run(go())


def test_concurrent_saves_are_group_committed_and_fenced_row_by_row(pg: PgAccess) -> None:
    async def go() -> None:
        store = Store(settings(pg), "batch-test")
        await store.open()
        try:
            await store.raise_fences([0, 1], 5)
            await store.raise_fences([1], 9)  # shard 1 moved on: epoch-5 writes to it are stale
            before = store.pool.get_stats().get("requests_num", 0)

            async def save(i: int) -> str:
                shard = i % 2
                try:
                    await store.save(f"o{i}", "Counter", {"name": f"o{i}", "value": i}, 0, shard=shard, epoch=5)
                    return "ok"
                except StaleEpoch:
                    return "stale"
            results = await asyncio.gather(*(save(i) for i in range(40)))
            statements = store.pool.get_stats().get("requests_num", 0) - before
        finally:
            await store.close()
        assert results == ["ok" if i % 2 == 0 else "stale" for i in range(40)]
        assert statements < 40, f"40 concurrent saves should share statements, used {statements}"
        assert [value_in_db(pg, f"o{i}") for i in range(4)] == [0, None, 2, None]
    asyncio.run(go())
