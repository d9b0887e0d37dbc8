"""Committed but unanswered: the workload re-sends a deposit of unknown outcome with the same call_id
(``retry_unknown``), and aims its burst at the keys of given shards (``aim_burst``). Real HTTP against a
small gate made here, which commits every deposit and loses the answer to each call_id's first attempt
(HTTP 504 CALL_TIMEOUT, as the reference gate says when a node died after sending)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from harness import wire
from harness.history import Recorder
from harness.ports import free_port
from harness.sharding import shard_of
from harness.waiting import wait_until
from harness.workload.runner import Workload, WorkloadSpec


class LosingGate:
    """Deduplicates by call_id (a correct stack) but loses the answer of every call_id's first attempt."""

    def __init__(self) -> None:
        self.port = free_port()
        self.attempts: dict[str, int] = {}
        self.balances: dict[str, int] = {}
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _reliable(self, request: web.Request) -> web.Response:
        body = await request.json()
        call_id, wallet = body["call_id"], request.match_info["id"]
        n = self.attempts[call_id] = self.attempts.get(call_id, 0) + 1
        if n == 1:
            amount = int(wire.to_dict(wire.unpack(body["request"])).get("amount", 0))
            self.balances[wallet] = self.balances.get(wallet, 0) + amount
            return web.json_response({"error": "remote call failed after sending (outcome unknown)",
                                      "code": "CALL_TIMEOUT"}, status=504)
        msg = wire.new("wallet.WalletResponse", balance=self.balances.get(wallet, 0))
        return web.json_response({"response": wire.pack(msg), "status": "SUCCESS"})

    async def _call(self, request: web.Request) -> web.Response:
        msg = wire.new("counter.CounterResponse", name=request.match_info["id"], value=0)
        return web.json_response({"response": wire.pack(msg)})

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        app = web.Application()
        app.router.add_post("/api/v1/objects/reliable-call/{type}/{id}/{method}", self._reliable)
        app.router.add_post("/api/v1/objects/call/{type}/{id}/{method}", self._call)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> LosingGate:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive()


@pytest.fixture
def gate() -> Iterator[LosingGate]:
    with LosingGate() as g:
        yield g


def _deposits(rec: Recorder) -> dict[str, list[Any]]:
    by_id: dict[str, list[Any]] = {}
    for op in rec.history().ops("deposit"):
        by_id.setdefault(op.value["call_id"], []).append(op)
    return by_id


def _spec(retry_unknown: bool) -> WorkloadSpec:
    return WorkloadSpec(probe_hz=0, counter_rate=1.0, counter_keys=4, wallet_keys=2, wallet_rate=20.0,
                        retry_ratio=0.0, retry_unknown=retry_unknown, timeout=5.0)


def test_deposits_of_unknown_outcome_are_resent_with_their_call_id(gate: LosingGate) -> None:
    rec = Recorder()
    wl = Workload(rec, {"g": f"http://127.0.0.1:{gate.port}"}, _spec(True), run_tag="retry")
    with wl.running():
        wait_until(lambda: sum(1 for ops in _deposits(rec).values()
                               if [o.type for o in ops][:2] == ["info", "ok"]) >= 3, 20,
                   "three deposits answered ok on a retry after an unknown outcome", interval=0.05)
    by_id = _deposits(rec)
    retried = [ops for ops in by_id.values() if len(ops) > 1]
    assert retried and all(ops[0].type == "info" and ops[0].key == ops[1].key for ops in retried)
    assert all(gate.attempts[cid] == len(ops) for cid, ops in by_id.items())


def test_without_retry_unknown_no_call_id_is_sent_twice(gate: LosingGate) -> None:
    rec = Recorder()
    wl = Workload(rec, {"g": f"http://127.0.0.1:{gate.port}"}, _spec(False), run_tag="noretry")
    with wl.running():
        wait_until(lambda: len(_deposits(rec)) >= 10, 20, "ten deposits", interval=0.05)
    assert all(len(ops) == 1 and ops[0].type == "info" for ops in _deposits(rec).values())


def test_aim_burst_picks_the_keys_of_the_victims_shards() -> None:
    wl = Workload(Recorder(), {"g": "http://127.0.0.1:9"}, WorkloadSpec(counter_keys=16, wallet_keys=2),
                  run_tag="aim")
    victim = {s for s in range(64) if s % 3 == 0}
    counters, wallets = wl.aim_burst(victim)
    assert counters and all(shard_of(k, 64) in victim for k in counters)
    assert set(counters) == {k for k in wl.counter_keys if shard_of(k, 64) in victim}
    assert len(wallets) == 2 and all(shard_of(k, 64) in victim for k in wallets)
    assert set(wallets) <= set(wl.wallet_keys)  # the final balances read them
