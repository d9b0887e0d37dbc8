"""PostgreSQL persistence with Goverse's schema plus per-shard ownership fences.

Why fences: Goverse's ``SaveObject`` is an unconditional upsert (contract §5.1), so a node that lost its
shard but still believes it owns it can overwrite the new owner's state. Here every claim of a shard
raises ``refstack_shard_fences.epoch`` to the claim's etcd revision, and every object write runs in the
same statement as a ``FOR SHARE`` check that the fence still equals the writer's epoch: a stale owner's
write matches no fence row and changes nothing. The share lock also makes a fence raise wait for
in-flight writes of the old epoch, so the new owner loads state only after the last old write.

Errors are classified because the harness's checkers depend on it: ``StoreError`` means nothing was
applied (the server rejected it, or no connection could be had); ``StoreUnknown`` means the connection
broke while a write was in flight, so it may or may not have committed; ``StaleEpoch`` means the fence
rejected the write.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from harness.refstack.config import PostgresSettings, read_password

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_LOCK = 0x676F7665  # advisory lock id: several nodes may create the schema at once

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS goverse_objects (
    object_id VARCHAR(255) PRIMARY KEY,
    object_type VARCHAR(255) NOT NULL,
    data JSONB NOT NULL,
    next_rcseq BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_goverse_objects_type ON goverse_objects(object_type);
CREATE INDEX IF NOT EXISTS idx_goverse_objects_updated_at ON goverse_objects(updated_at);

CREATE TABLE IF NOT EXISTS goverse_reliable_calls (
    seq BIGSERIAL UNIQUE,
    call_id VARCHAR(255) PRIMARY KEY,
    object_id VARCHAR(255) NOT NULL,
    object_type VARCHAR(255) NOT NULL,
    method_name VARCHAR(255) NOT NULL,
    request_data BYTEA NOT NULL,
    result_data BYTEA,
    error_message TEXT,
    status VARCHAR(50) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'success', 'failed', 'skipped')),
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT valid_success_state CHECK (status != 'success' OR result_data IS NOT NULL),
    CONSTRAINT valid_failed_state CHECK (status NOT IN ('failed', 'skipped') OR error_message IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS idx_goverse_reliable_calls_object_status
    ON goverse_reliable_calls(object_id, status);

CREATE OR REPLACE FUNCTION update_goverse_reliable_calls_timestamp()
RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = CURRENT_TIMESTAMP;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS trigger_update_goverse_reliable_calls_timestamp ON goverse_reliable_calls;
CREATE TRIGGER trigger_update_goverse_reliable_calls_timestamp
    BEFORE UPDATE ON goverse_reliable_calls
    FOR EACH ROW EXECUTE FUNCTION update_goverse_reliable_calls_timestamp();

CREATE TABLE IF NOT EXISTS refstack_shard_fences (
    shard INT PRIMARY KEY,
    epoch BIGINT NOT NULL
);
"""

SCHEMA_PRESENT_SQL = """
SELECT to_regclass('goverse_objects') IS NOT NULL
   AND to_regclass('goverse_reliable_calls') IS NOT NULL
   AND to_regclass('refstack_shard_fences') IS NOT NULL
   AND to_regclass('idx_goverse_objects_type') IS NOT NULL
   AND to_regclass('idx_goverse_objects_updated_at') IS NOT NULL
   AND to_regclass('idx_goverse_reliable_calls_object_status') IS NOT NULL
   AND EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'trigger_update_goverse_reliable_calls_timestamp')
"""


async def _schema_present(conn: psycopg.AsyncConnection[Any]) -> bool:
    cur = await conn.execute(SCHEMA_PRESENT_SQL)
    row = await cur.fetchone()
    await conn.commit()
    return bool(row and row[0])


_UPSERT_TAIL = """
ON CONFLICT (object_id) DO UPDATE SET data = EXCLUDED.data, object_type = EXCLUDED.object_type,
    next_rcseq = EXCLUDED.next_rcseq, updated_at = CURRENT_TIMESTAMP
RETURNING 1"""
SAVE_FENCED = ("WITH fence AS (SELECT 1 FROM refstack_shard_fences "
               "WHERE shard = %(shard)s AND epoch = %(epoch)s FOR SHARE) "
               "INSERT INTO goverse_objects (object_id, object_type, data, next_rcseq) "
               "SELECT %(id)s, %(type)s, %(data)s::jsonb, %(rcseq)s FROM fence" + _UPSERT_TAIL)
SAVE_UNFENCED = ("INSERT INTO goverse_objects (object_id, object_type, data, next_rcseq) "
                 "VALUES (%(id)s, %(type)s, %(data)s::jsonb, %(rcseq)s)" + _UPSERT_TAIL)
RAISE_FENCES = """
INSERT INTO refstack_shard_fences (shard, epoch) SELECT s, %(epoch)s FROM unnest(%(shards)s::int[]) AS s
ON CONFLICT (shard) DO UPDATE SET epoch = GREATEST(refstack_shard_fences.epoch, EXCLUDED.epoch)
RETURNING shard, epoch, (xmax = 0) AS inserted"""
# Group commit: concurrent fenced saves go to PostgreSQL as one statement; each row is checked against its
# own shard's fence, and RETURNING names the rows that passed.
SAVE_FENCED_BATCH = """
WITH input AS (
    SELECT * FROM unnest(%(ids)s::varchar[], %(types)s::varchar[], %(datas)s::jsonb[], %(rcseqs)s::bigint[],
                         %(shards)s::int[], %(epochs)s::bigint[])
        AS t(object_id, object_type, data, next_rcseq, shard, epoch)
), fenced AS (
    SELECT i.object_id, i.object_type, i.data, i.next_rcseq
    FROM input i JOIN refstack_shard_fences f ON f.shard = i.shard AND f.epoch = i.epoch
    FOR SHARE OF f
)
INSERT INTO goverse_objects (object_id, object_type, data, next_rcseq)
SELECT object_id, object_type, data, next_rcseq FROM fenced""" + _UPSERT_TAIL.replace("RETURNING 1",
                                                                                      "RETURNING object_id")
BATCH_MAX = 64  # rows per statement
BATCH_INFLIGHT = 4  # statements in flight at once per node (the rest queue and join the next batch)
LOCK_FENCE = "SELECT epoch FROM refstack_shard_fences WHERE shard = %s FOR SHARE"
RETRYABLE_SQLSTATES = {"57P01", "57P02", "57P03"}  # backend terminated while idle: nothing ran


async def _hold_fence(conn: psycopg.AsyncConnection[Any], shard: int, epoch: int) -> None:
    """Inside a transaction: share-lock ``shard``'s fence row and raise StaleEpoch unless it is still at
    ``epoch`` (ownership moved on), so the rest of the transaction writes as the shard's owner."""
    cur = await conn.execute(LOCK_FENCE, (shard,))
    row = await cur.fetchone()
    if row is None or int(row[0]) != epoch:
        raise StaleEpoch(f"shard {shard}: fenced out (ownership moved past epoch {epoch}), not serving")


class StoreError(Exception):
    """The operation definitely did not take effect."""


class StoreUnknown(Exception):
    """The connection broke while a write was in flight: it may or may not have committed."""


class StaleEpoch(Exception):
    """The shard's fence moved past our epoch: another node owns it now."""


@dataclass(frozen=True)
class StoredObject:
    object_type: str
    data: dict[str, Any]
    next_rcseq: int


@dataclass(frozen=True)
class FenceResult:
    shard: int
    epoch: int  # the fence after our raise
    existed: bool  # a fence row was there before (the shard was owned before: a handover)


@dataclass(frozen=True)
class ReliableOutcome:
    status: str  # success | failed | skipped
    result: bytes | None
    error: str | None
    executed: bool  # False: the cached result of an earlier execution
    next_rcseq: int = 0  # the object's next_rcseq after this execution (0 if not executed)


class Store:
    """A connection pool plus the few statements a node needs."""

    def __init__(self, pg: PostgresSettings, app_name: str, *, reload_secrets: bool = True,
                 connect_timeout: float = 5.0) -> None:
        self.pg = pg
        self.reload_secrets = reload_secrets
        self._password = read_password(pg)
        self._password_stat: tuple[int, int, int] | None = self._stat()
        self.app_name = app_name
        self.connect_timeout = max(1, int(connect_timeout))
        self._queue: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
        self._inflight = 0
        self._batches: set[asyncio.Task[None]] = set()
        self.pool = AsyncConnectionPool(
            kwargs=self._connect_kwargs,
            min_size=min(2, pg.max_open_conns),
            max_size=pg.max_open_conns,
            max_lifetime=300.0,  # Goverse: conn max lifetime 5 min
            max_idle=60.0,
            timeout=connect_timeout,
            open=False,
            name=app_name,
            reconnect_timeout=3600.0,
        )

    def _connect_kwargs(self) -> dict[str, Any]:
        return {"host": self.pg.host, "port": self.pg.port, "user": self.pg.user, "dbname": self.pg.database,
                "password": self._password, "sslmode": self.pg.sslmode, "autocommit": True,
                "connect_timeout": self.connect_timeout, "application_name": self.app_name}

    def describe(self) -> str:
        """Where we connect, without the password."""
        return f"postgresql://{self.pg.user}@{self.pg.host}:{self.pg.port}/{self.pg.database}"

    async def open(self) -> None:
        """Check that we can log in (raises ``psycopg.OperationalError`` otherwise), create the
        schema, then start the pool."""
        conn = await psycopg.AsyncConnection.connect(**self._connect_kwargs())
        try:
            # The DDL takes table locks in another order than live reliable calls do, so running it
            # while the cluster serves can deadlock a starting node: create the schema only if a
            # piece of it is missing (the usual case at every restart is "all present").
            if not await _schema_present(conn):
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    await conn.execute(SCHEMA_SQL)
        finally:
            await conn.close()
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close(timeout=2.0)

    # ---------------------------------------------------------------- secrets
    def _stat(self) -> tuple[int, int, int] | None:
        if not self.pg.password_file:
            return None
        try:
            st = os.stat(self.pg.password_file)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    async def check_secret(self, force: bool = False) -> bool:
        """Pick up a rotated password: when the password file changed (or ``force``, on SIGHUP),
        log in once with the new password and, if that works, recycle every pooled connection so
        all of them use it. A password that does not work yet (the role not altered yet) is retried
        on the next check while the old connections keep serving."""
        if not self.reload_secrets or not self.pg.password_file:
            return False
        st = self._stat()
        if not force and st == self._password_stat:
            return False
        try:
            new = read_password(self.pg)
        except OSError as exc:
            log.warning("cannot read postgres.password_file: %s", exc.strerror)
            return False
        if new == self._password:
            self._password_stat = st
            return False
        try:
            probe = await psycopg.AsyncConnection.connect(**{**self._connect_kwargs(), "password": new})
            await probe.close()
        except psycopg.OperationalError:
            log.warning("new PostgreSQL password from %s is not accepted yet; keeping the current one",
                        self.pg.password_file)
            return False
        self._password = new
        self._password_stat = st
        await self.pool.drain()
        log.info("PostgreSQL password rotated; pool connections recycled")
        return True

    # -------------------------------------------------------------- plumbing
    async def _run(self, what: str, fn: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]], *,
                   write: bool) -> T:
        for attempt in (1, 2):
            try:
                async with self.pool.connection() as conn:
                    return await fn(conn)
            except PoolTimeout as exc:
                raise StoreError(f"{what}: no PostgreSQL connection available: {exc}") from None
            except psycopg.Error as exc:
                state = getattr(exc, "sqlstate", None)
                if state in RETRYABLE_SQLSTATES and attempt == 1:
                    continue
                if state is not None or not write:
                    raise StoreError(f"{what}: {first_line(exc)}") from None
                raise StoreUnknown(f"{what}: connection lost during the write: {first_line(exc)}") from None
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- fences
    async def raise_fences(self, shards: list[int], epoch: int) -> list[FenceResult]:
        async def go(conn: psycopg.AsyncConnection[Any]) -> list[FenceResult]:
            cur = await conn.execute(RAISE_FENCES, {"shards": shards, "epoch": epoch})
            return [FenceResult(int(s), int(e), not bool(ins)) for s, e, ins in await cur.fetchall()]
        return await self._run("raise shard fences", go, write=True)

    async def force_fence(self, shard: int, epoch: int, seen: int) -> bool:
        """Lower a fence left by an older etcd history (e.g. etcd restored from a backup) — only
        if it is still the value we saw."""
        async def go(conn: psycopg.AsyncConnection[Any]) -> bool:
            cur = await conn.execute("UPDATE refstack_shard_fences SET epoch = %s WHERE shard = %s AND epoch = %s",
                                     (epoch, shard, seen))
            return cur.rowcount == 1
        return await self._run("reset shard fence", go, write=True)

    # --------------------------------------------------------------- objects
    async def load(self, object_id: str) -> StoredObject | None:
        async def go(conn: psycopg.AsyncConnection[Any]) -> StoredObject | None:
            cur = await conn.execute(
                "SELECT object_type, data, next_rcseq FROM goverse_objects WHERE object_id = %s", (object_id,))
            row = await cur.fetchone()
            return None if row is None else StoredObject(row[0], row[1], int(row[2]))
        return await self._run(f"failed to load object {object_id} from persistence", go, write=False)

    async def save(self, object_id: str, object_type: str, data: dict[str, Any], next_rcseq: int,
                   shard: int, epoch: int, *, fenced: bool = True) -> None:
        """Upsert the object's state; with ``fenced`` only if the shard's fence equals ``epoch``.

        Fenced saves are group-committed: up to ``BATCH_INFLIGHT`` statements run at once, one row
        each; beyond that, saves queue and go out together as one statement (each row still checked
        against its own fence). Small batches cost more than single rows, big ones far less. The
        caller must not save the same object twice concurrently (the node's per-object lock ensures it).
        """
        params = {"id": object_id, "type": object_type, "data": json.dumps(data), "rcseq": next_rcseq,
                  "shard": shard, "epoch": epoch}

        async def single(conn: psycopg.AsyncConnection[Any]) -> bool:
            cur = await conn.execute(SAVE_FENCED if fenced else SAVE_UNFENCED, params)
            return await cur.fetchone() is not None
        if fenced and (self._queue or self._inflight >= BATCH_INFLIGHT):
            fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self._queue.append((params, fut))
            self._start_batches()
            ok = await fut
        elif fenced:
            self._inflight += 1
            try:
                ok = await self._run(f"failed to save object {object_id}", single, write=True)
            finally:
                self._inflight -= 1
                self._start_batches()
        else:
            ok = await self._run(f"failed to save object {object_id}", single, write=True)
        if not ok:
            raise StaleEpoch(f"shard {shard}: fenced out (ownership moved past epoch {epoch}), not serving; "
                             f"write of {object_id} refused")

    def _start_batches(self) -> None:
        while self._queue and self._inflight < BATCH_INFLIGHT:
            batch: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
            ids: set[str] = set()
            rest: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
            for item in self._queue:  # one row per object per statement (ON CONFLICT needs it)
                if len(batch) < BATCH_MAX and item[0]["id"] not in ids and not item[1].done():
                    batch.append(item)
                    ids.add(item[0]["id"])
                elif not item[1].done():
                    rest.append(item)
            self._queue = rest
            if not batch:
                return
            self._inflight += 1
            task = asyncio.create_task(self._save_batch(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _save_batch(self, batch: list[tuple[dict[str, Any], asyncio.Future[bool]]]) -> None:
        params = {key: [p[src] for p, _ in batch] for key, src in (
            ("ids", "id"), ("types", "type"), ("datas", "data"), ("rcseqs", "rcseq"), ("shards", "shard"),
            ("epochs", "epoch"))}

        async def go(conn: psycopg.AsyncConnection[Any]) -> set[str]:
            cur = await conn.execute(SAVE_FENCED_BATCH, params)
            return {row[0] for row in await cur.fetchall()}
        try:
            what = f"failed to save object {batch[0][0]['id']}" + (f" (+{len(batch) - 1} batched)" if len(batch) > 1
                                                                  else "")
            saved = await self._run(what, go, write=True)
        except BaseException as exc:  # StoreError / StoreUnknown / cancellation: every row shares it
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(type(exc)(str(exc)) if isinstance(exc, StoreError | StoreUnknown)
                                      else StoreUnknown(f"save interrupted: {exc!r}"))
            if not isinstance(exc, Exception):
                raise
        else:
            for p, fut in batch:
                if not fut.done():
                    fut.set_result(p["id"] in saved)
        finally:
            self._inflight -= 1
            self._start_batches()

    async def delete(self, object_id: str, shard: int, epoch: int, *, fenced: bool = True) -> bool:
        async def go(conn: psycopg.AsyncConnection[Any]) -> bool:
            async with conn.transaction():
                if fenced:
                    await _hold_fence(conn, shard, epoch)
                cur = await conn.execute("DELETE FROM goverse_objects WHERE object_id = %s", (object_id,))
                return cur.rowcount > 0
        return await self._run(f"failed to delete object {object_id}", go, write=True)

    # --------------------------------------------------------- reliable calls
    async def reliable_call(
        self, *, call_id: str, object_id: str, object_type: str, method: str, request: bytes, shard: int,
        epoch: int, execute: Callable[[], tuple[dict[str, Any] | None, bytes | None, str | None]],
        fenced: bool = True, dedup: bool = True,
    ) -> ReliableOutcome:
        """Run one reliable call in ONE transaction: record the call_id, execute, save the new object
        state and the call's status together — or return the recorded result of an earlier run.

        ``execute()`` returns (new object data or None if unchanged, result Any bytes, error text);
        it must not touch the node's state: the caller adopts the new state only after commit.
        """
        async def go(conn: psycopg.AsyncConnection[Any]) -> ReliableOutcome:
            async with conn.transaction():
                if fenced:
                    await _hold_fence(conn, shard, epoch)
                if dedup:
                    cur = await conn.execute(
                        "INSERT INTO goverse_reliable_calls (call_id, object_id, object_type, method_name, "
                        "request_data) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (call_id) DO NOTHING RETURNING seq",
                        (call_id, object_id, object_type, method, request))
                else:  # seeded bug no-dedup: a repeated call_id runs again
                    cur = await conn.execute(
                        "INSERT INTO goverse_reliable_calls (call_id, object_id, object_type, method_name, "
                        "request_data) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (call_id) DO UPDATE SET "
                        "status = 'pending', result_data = NULL, error_message = NULL RETURNING seq",
                        (call_id, object_id, object_type, method, request))
                row = await cur.fetchone()
                if row is None:
                    cur = await conn.execute(
                        "SELECT status, result_data, error_message FROM goverse_reliable_calls WHERE call_id = %s",
                        (call_id,))
                    prev = await cur.fetchone()
                    if prev is None:
                        raise StoreError(f"reliable call {call_id} vanished")
                    return ReliableOutcome(prev[0], bytes(prev[1]) if prev[1] is not None else None, prev[2],
                                           executed=False)
                seq = int(row[0])
                new_data, result, error = execute()
                if new_data is not None:
                    await conn.execute(
                        "INSERT INTO goverse_objects (object_id, object_type, data, next_rcseq) "
                        "VALUES (%s, %s, %s::jsonb, %s)" + _UPSERT_TAIL,
                        (object_id, object_type, json.dumps(new_data), seq + 1))
                status = "failed" if error is not None else "success"
                await conn.execute(
                    "UPDATE goverse_reliable_calls SET status = %s, result_data = %s, error_message = %s "
                    "WHERE call_id = %s", (status, result, error, call_id))
                return ReliableOutcome(status, result, error, executed=True, next_rcseq=seq + 1)
        return await self._run(f"reliable call {call_id}", go, write=True)

    # ------------------------------------------------------------------ admin
    async def fences(self) -> dict[int, int]:
        async def go(conn: psycopg.AsyncConnection[Any]) -> dict[int, int]:
            cur = await conn.execute("SELECT shard, epoch FROM refstack_shard_fences")
            return {int(s): int(e) for s, e in await cur.fetchall()}
        return await self._run("read fences", go, write=False)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
