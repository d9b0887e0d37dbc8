"""Seeded bugs are real: each one, switched on, breaks the property it is named after, while the
conforming stack keeps it (the pairs show the check can fail). Small real clusters on etcd/PostgreSQL."""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

from harness import wire
from harness.refstack.localcluster import LocalCluster, PgAccess, fresh_database
from harness.refstack.sharding import shard_of
from harness.waiting import WaitTimeout, wait_until

pytestmark = pytest.mark.integration

SHARDS = 16
INC = "counter.IncrementRequest"
GET = "counter.GetRequest"


@contextlib.contextmanager
def small_cluster(etcd, postgres, *, nodes: int, bugs: tuple[str, ...] = (), grace: float = 5.0,  # noqa: ANN001
                  gates: int = 1) -> Iterator[tuple[LocalCluster, PgAccess]]:
    workdir = Path(tempfile.mkdtemp(prefix="gvh-test-bugs-"))
    pg = fresh_database(postgres)
    c = LocalCluster(workdir, etcd.client_urls, pg, nodes=nodes, gates=gates, inspector=False, shards=SHARDS,
                     bugs=bugs, shutdown_grace=grace)
    try:
        c.start(timeout=30)
        yield c, pg
    finally:
        c.close()
        shutil.rmtree(workdir, ignore_errors=True)


def stored(pg: PgAccess, key: str) -> int | None:
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.database) as c:
        row = c.execute("SELECT data FROM goverse_objects WHERE object_id = %s", (key,)).fetchone()
    return None if row is None else int(row[0]["value"])


def key_on(c: LocalCluster, advertise: str) -> str:
    shards, _, _ = c.shard_map()
    for _ in range(10_000):
        key = f"b-{uuid.uuid4().hex[:10]}"
        if shards[shard_of(key, SHARDS)].current == advertise:
            return key
    raise AssertionError("no key")


def get(c: LocalCluster, key: str) -> tuple[int, str]:
    r = c.call(0, "Counter", key, "Get", wire.new(GET))
    assert r.ok, r.body
    return int(r.message().value), r.headers["X-Goverse-Node"]


def inc(c: LocalCluster, key: str, amount: int = 1) -> int:
    r = c.call(0, "Counter", key, "Increment", wire.new(INC, amount=amount))
    assert r.ok, r.body
    return int(r.message().value)


# ----------------------------------------------------------------------------- pause past the lease
@pytest.mark.slow
@pytest.mark.parametrize("bug", ["conforming", "no-fencing", "stale-overwrite-on-rejoin"])
def test_pause_node_longer_than_the_lease(etcd, postgres, bug: str) -> None:  # noqa: ANN001
    """SIGSTOP a node past its lease; its shards move; a request waiting in its socket buffer and its
    in-memory objects must not overwrite the new owner's state when it resumes."""
    bugs = () if bug == "conforming" else (bug,)
    with small_cluster(etcd, postgres, nodes=2, bugs=bugs) as (c, pg):
        a, b = c.nodes()
        key = key_on(c, a.advertise)
        for _ in range(3):
            inc(c, key)
        a.process.signal(signal.SIGSTOP)
        stale: dict[str, object] = {}

        def send_to_paused_node() -> None:
            try:
                r = requests.post(f"{a.api}/internal/v1/call", timeout=30, json={
                    "type": "Counter", "id": key, "method": "Increment",
                    "request": wire.pack(wire.new(INC, amount=100))})
                stale.update(r.json())
            except requests.RequestException as exc:
                stale["exception"] = repr(exc)
        sender = threading.Thread(target=send_to_paused_node, daemon=True)
        sender.start()
        try:
            wait_until(lambda: get(c, key) == (3, b.name), 15, f"{key} served by {b.name} while {a.name} is paused")
            assert inc(c, key) == 4
        finally:
            a.process.signal(signal.SIGCONT)
        sender.join(timeout=30)
        c.wait_converged(20, expect_nodes={a.advertise, b.advertise})
        wait_until(lambda: a.process.is_running() and requests.get(f"{a.ops}/ready", timeout=1).status_code == 200,
                   15, f"{a.name} ready again")
        final, _ = get(c, key)
        in_db = stored(pg, key)
        if bug == "conforming":
            assert stale.get("ok") is False and "not serving" in str(stale.get("error")), stale
            assert final == 4 and in_db == 4, f"final {final}, stored {in_db}: acknowledged increments lost"
        elif bug == "no-fencing":
            assert stale.get("ok") is True and stale.get("node") == a.name, \
                f"the paused node served without its lease: {stale}"
            assert (final, in_db) != (4, 4), "the stale write must have overwritten the new owner's state"
        else:
            assert stale.get("ok") is False, "the lease check still rejects the buffered call"
            assert in_db == 3 or final == 3, f"stale in-memory state flushed over the new owner's: {final}/{in_db}"


# ------------------------------------------------------------------------------ durability on crash
@pytest.mark.parametrize("bug", ["conforming", "ack-before-persist"])
def test_sigkill_after_acknowledged_increments(etcd, postgres, bug: str) -> None:  # noqa: ANN001
    bugs = () if bug == "conforming" else (bug,)
    with small_cluster(etcd, postgres, nodes=1, bugs=bugs) as (c, pg):
        node = c.nodes()[0]
        keys = [f"d-{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
        acked = {k: inc(c, k, 1) for k in keys}
        acked = {k: inc(c, k, 2) for k in keys}
        node.process.kill()
        node.process.start()
        wait_until(lambda: requests.get(f"{node.ops}/ready", timeout=1).status_code == 200, 20, "node back")
        values = {k: get(c, k)[0] for k in keys}
        if bug == "conforming":
            assert values == acked == {k: 3 for k in keys}
        else:
            assert all(v < 3 for v in values.values()), f"acknowledged increments should be lost: {values}"


# ------------------------------------------------------------------------------------ readiness
@pytest.mark.parametrize("bug", ["conforming", "ready-latched"])
def test_gate_readiness_follows_the_cluster(etcd, postgres, bug: str) -> None:  # noqa: ANN001
    bugs = () if bug == "conforming" else (bug,)
    with small_cluster(etcd, postgres, nodes=1, bugs=bugs) as (c, _pg):
        gate, node = c.gates()[0], c.nodes()[0]
        assert requests.get(f"{gate.ops}/ready", timeout=2).status_code == 200
        node.process.kill()
        wait_until(lambda: not c.shard_map()[1], 10, "the dead node's key expired")
        if bug == "conforming":
            wait_until(lambda: requests.get(f"{gate.ops}/ready", timeout=2).status_code == 503, 5,
                       "gate not ready without a live owner")
            body = requests.get(f"{gate.ops}/ready", timeout=2).json()
            assert body["code"] == "NOT_READY" and "Cluster is not ready" in body["error"]
        else:
            assert requests.get(f"{gate.ops}/ready", timeout=2).status_code == 200, "latched"
        node.process.start()
        wait_until(lambda: requests.get(f"{node.ops}/ready", timeout=2).status_code == 200, 20, "node ready again")
        wait_until(lambda: requests.get(f"{gate.ops}/ready", timeout=2).status_code == 200, 20, "gate ready again")
        key = f"after-restart-{uuid.uuid4().hex[:6]}"
        wait_until(lambda: c.call(0, "Counter", key, "Get", wire.new(GET)).ok, 10, "calls served again")


# -------------------------------------------------------------------- reliable calls and SIGTERM
def test_no_dedup_and_ignore_sigterm(etcd, postgres) -> None:  # noqa: ANN001
    with small_cluster(etcd, postgres, nodes=1, bugs=("no-dedup", "ignore-sigterm"), grace=2.0) as (c, _pg):
        wallet, call_id = f"w-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
        dep = wire.new("wallet.DepositRequest", amount=10)
        first = c.reliable_call(0, "Wallet", wallet, "Deposit", call_id, dep)
        again = c.reliable_call(0, "Wallet", wallet, "Deposit", call_id, dep)
        assert first.message().balance == 10 and again.message().balance == 20, "the repeated call_id ran twice"
        node = c.nodes()[0]
        node.process.signal(signal.SIGTERM)
        assert node.process.wait(2.0) is None, "SIGTERM was ignored"
        assert requests.get(f"{node.ops}/ready", timeout=2).status_code == 200
        assert "SIGTERM received and ignored" in c.log_tail(node.name, 50)


# ---------------------------------------------------------------------------------- failover speed
@pytest.mark.slow
def test_slow_failover_keeps_a_dead_nodes_shards_unassigned(etcd, postgres) -> None:  # noqa: ANN001
    with small_cluster(etcd, postgres, nodes=2, bugs=("slow-failover",)) as (c, _pg):
        a, b = c.nodes()
        a.process.kill()
        wait_until(lambda: c.shard_map()[1] == {b.advertise}, 10, "the dead node's key expired")

        def moved() -> bool:
            shards, _, _ = c.shard_map()
            return all(e.current == b.advertise for e in shards.values())
        with pytest.raises(WaitTimeout):  # the conforming stack moves them ~1.5 s after expiry
            wait_until(moved, 4.0, "shards moved off the dead node")


# --------------------------------------------------------------------------------------- handover
def test_lose_state_on_handover_resets_migrated_objects(etcd, postgres) -> None:  # noqa: ANN001
    with small_cluster(etcd, postgres, nodes=2, bugs=("lose-state-on-handover",)) as (c, pg):
        a, b = c.nodes()
        key = key_on(c, a.advertise)
        assert inc(c, key, 5) == 5
        a.process.signal(signal.SIGTERM)
        assert a.process.wait(10) == 0
        wait_until(lambda: get(c, key)[1] == b.name, 10, f"{key} served by {b.name}")
        assert get(c, key)[0] == 0, "the receiving node activated the object fresh instead of loading it"
        assert stored(pg, key) == 5, "the acknowledged state is still in PostgreSQL, just not loaded"
