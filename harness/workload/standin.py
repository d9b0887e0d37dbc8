"""A stand-in gate with an exactly known outage schedule: the ground truth for the harness's own numbers.

Why: RTO, unavailability and recovery after heal are the product's headline numbers, and a real stack
cannot say when its outage *truly* began and ended. This server speaks the gate's call route (the
``GateClient`` and the workload use it unchanged, over real HTTP) and serves ``Counter`` objects, but
fails, hangs or slows calls exactly inside the windows it is given, on the caller's clock (e.g. the
history recorder's ``now``). :func:`true_outage` turns a schedule into the numbers a perfect measurement
would report under docs/definitions.md, so ``benchmarks/bench_rto_accuracy.py`` and tests can compare.

Outage modes (a call is judged by the moment it *arrives*):

- ``fail``: answered at once with HTTP 503 (the client records ``info``);
- ``hang``: held until the window ends, then answered ok (a black hole that heals, as TCP delivers held
  data after a partition heals); under the SLO rule the calls that arrive in the last ``slo`` seconds
  of the window are served in time;
- ``slow``: answered ok after ``delay_s``.

An outage may cover only some keys (``keys``): the keys "owned by" a hung node, for client tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from harness import wire

Mode = Literal["fail", "hang", "slow"]


@dataclass(frozen=True)
class Outage:
    """Calls arriving in ``[start, end)`` (seconds on the server's clock) are failed, held or slowed."""

    start: float
    end: float
    mode: Mode = "fail"
    delay_s: float = 0.0  # slow: how long each call is delayed
    keys: frozenset[str] | None = None  # None: every key

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"Outage: end ({self.end}) must be after start ({self.start})")
        if self.mode not in ("fail", "hang", "slow"):
            raise ValueError(f"Outage.mode must be fail, hang or slow, not {self.mode!r}")
        if self.mode == "slow" and self.delay_s <= 0:
            raise ValueError("Outage.delay_s must be > 0 for mode 'slow'")

    def covers(self, t: float, key: str) -> bool:
        return self.start <= t < self.end and (self.keys is None or key in self.keys)


class StandInGate:
    """``with StandInGate(clock, schedule) as gate: gate.url`` — an HTTP server on 127.0.0.1 in its own
    thread and event loop (so the client's loop under test cannot delay the server's answers)."""

    def __init__(self, clock: Callable[[], float], schedule: Iterable[Outage] = (),
                 counter_type: str = "Counter") -> None:
        self.clock = clock
        self.schedule: list[Outage] = list(schedule)
        self.values: dict[str, int] = {}
        # the one type it serves, like a node that registered its counter under that name; calls to
        # any other type are answered 404, as a gate answers an unregistered type
        self.counter_type = counter_type
        self.calls_by_type: dict[str, int] = {}
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._release: asyncio.Event | None = None  # set at shutdown: held calls are answered

    def set_schedule(self, schedule: Iterable[Outage]) -> None:
        """Replace the schedule (between measurements; list assignment is atomic)."""
        self.schedule = list(schedule)

    def _active(self, t: float, key: str) -> Outage | None:
        for o in self.schedule:
            if o.covers(t, key):
                return o
        return None

    async def _call(self, request: web.Request) -> web.Response:
        t = self.clock()
        key = request.match_info["id"]
        method = request.match_info["method"]
        otype = request.match_info["type"]
        await request.read()
        self.calls_by_type[otype] = self.calls_by_type.get(otype, 0) + 1
        if otype != self.counter_type:
            return web.json_response({"error": f"unknown object type {otype}", "code": "NOT_FOUND"}, status=404)
        o = self._active(t, key)
        if o is not None and o.mode == "fail":
            return web.json_response({"error": "stand-in outage", "code": "UNAVAILABLE"}, status=503)
        if o is not None and o.mode == "hang":
            assert self._release is not None
            with contextlib.suppress(TimeoutError):  # held until the window ends (or the server stops)
                await asyncio.wait_for(self._release.wait(), max(0.0, o.end - self.clock()))
        elif o is not None and o.mode == "slow":
            await asyncio.sleep(o.delay_s)  # sleep-ok: the slowness is the subject
        if method == "Increment":
            body = await request.json()
            amount = wire.to_dict(wire.unpack(body["request"])).get("amount", 0)
            self.values[key] = self.values.get(key, 0) + int(amount)
        msg = wire.new("counter.CounterResponse", name=key, value=self.values.get(key, 0))
        return web.json_response({"response": wire.pack(msg)}, headers={"X-Goverse-Node": "standin-0"})

    async def _serve(self) -> None:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/api/v1/objects/call/{type}/{id}/{method}", self._call)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = int(self._runner.addresses[0][1])  # the port the kernel chose for port 0
        self.url = f"http://127.0.0.1:{port}"

    def _main(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - surfaced by __enter__
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _shutdown(self) -> None:
        if self._release is not None:
            self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
        asyncio.get_running_loop().stop()

    def __enter__(self) -> StandInGate:
        self._thread = threading.Thread(target=self._main, name="standin-gate", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            self.__exit__()
            raise RuntimeError(f"stand-in gate did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        if thread is not None:
            thread.join(10)
        self._thread = None


@dataclass(frozen=True)
class Truth:
    """What a perfect measurement reports for a schedule (docs/definitions.md, raw-stream rules)."""

    t_dip: float | None
    t_recovered: float | None
    rto_s: float | None
    unavailability_s: float
    recovery_after_heal_s: float | None


def bad_intervals(schedule: Iterable[Outage], slo_s: float) -> list[tuple[float, float]]:
    """Invocation times at which a call on every key is *not* served within the SLO, merged."""
    raw: list[tuple[float, float]] = []
    for o in schedule:
        if o.mode == "fail" or (o.mode == "slow" and o.delay_s > slo_s):
            raw.append((o.start, o.end))
        elif o.mode == "hang" and o.end - slo_s > o.start:
            raw.append((o.start, o.end - slo_s))
    raw.sort()
    merged: list[tuple[float, float]] = []
    for a, b in raw:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def true_outage(schedule: Iterable[Outage], t_inject: float, t_heal: float | None, slo_s: float,
                stable_s: float) -> Truth:
    """The true RTO etc.: recovered at the end of the first bad interval followed by ≥ W of service."""
    bad = [iv for iv in bad_intervals(schedule, slo_s) if iv[1] > t_inject]
    if not bad:
        return Truth(None, None, 0.0, 0.0, 0.0 if t_heal is not None else None)
    unav = sum(b - max(a, t_inject) for a, b in bad)
    rec = None
    for i, (_, b) in enumerate(bad):
        if i + 1 == len(bad) or bad[i + 1][0] > b + stable_s:
            rec = b
            break
    assert rec is not None
    rah = None if t_heal is None else max(0.0, rec - t_heal)
    return Truth(max(bad[0][0], t_inject), rec, rec - t_inject, unav, rah)
