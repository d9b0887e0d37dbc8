"""A toxiproxy-style TCP fault proxy: latency (with jitter), black hole, reset, bandwidth — per link.

Why: this kernel has no ``sch_netem``, so "+200 ms on node → PostgreSQL" cannot be a qdisc. Instead the
stack is wired at deploy time so that each faultable link goes through a listener here (the client is
given the proxy's address), and toxics are switched on and off at runtime (Shopify's toxiproxy does
the same; ``anchors.md`` §10). Where netem exists the platform may prefer it; this proxy works anywhere,
without privileges.

Why in-process (asyncio on a background thread) rather than a child process: toxics must take effect
*before* ``set_toxic`` returns (the nemesis records t_inject right after), which is a plain
synchronous call here instead of an IPC round trip; there is no extra process to supervise or leak on
a crash (the thread dies with the harness, and so do the sockets); and the links carry small RPCs, for
which the measured overhead is small: ≈ 50 µs added to a median round trip, ≈ 0.5 ms of overshoot on
a latency toxic, ≈ 450 MB/s of echo throughput on this 2-core VM (``benchmarks/bench_faultproxy.py``).
The cost is sharing the GIL with the harness: a harness thread that hogs the CPU adds jitter, so keep
checkers off the hot path while a scenario runs.

Semantics (``upstream`` = client → server, ``downstream`` = server → client, as in toxiproxy):

- :class:`Latency` — every chunk read in the toxic's direction is delivered ``ms ± jitter`` later;
  chunks stay in order and reading continues meanwhile (pipelined, so throughput is not capped at
  one chunk per delay).
- :class:`Timeout` — a black hole: connections are accepted, nothing is forwarded in either direction
  (data is *held*, as TCP retransmission would deliver it after a healed partition), and with
  ``close_after_ms > 0`` the connection is closed after that long. Clearing the toxic releases what
  was held. ``direction="downstream"`` holds only the server's answers: requests still reach it (a
  PostgreSQL commit happens, its reply is not delivered — committed but unanswered).
- :class:`HoldAfterCommit` — PostgreSQL-aware, server → client only: answers flow until the server says
  it is idle outside a transaction (ReadyForQuery ``'Z'`` with status ``'I'``: an autocommit statement
  or a ``COMMIT`` has completed, i.e. committed), and from that message on everything is held until the
  toxic is cleared. Statements inside a transaction get their answers (``'Z'`` ``'T'``), so a
  transaction reaches its COMMIT; its client never learns that it committed. A plain downstream
  :class:`Timeout` would instead stop a multi-statement transaction at its first answer, before COMMIT.
  Cleartext protocol only (``sslmode=disable``, as the local stack's links are).
- :class:`ResetPeer` — every open connection is aborted with a TCP RST (``SO_LINGER`` 0) on both
  sides, and every new one is reset right after accept.
- :class:`Bandwidth` — at most ``rate_kbps`` kilobytes per second in the toxic's direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random as _stdrandom
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar

from harness import random as hrand
from harness.platforms.base import PlatformError

Direction = Literal["upstream", "downstream", "both"]
Addr = tuple[str, int]
T = TypeVar("T")
CHUNK = 64 * 1024
QUEUE_CHUNKS = 64  # per direction; bounds memory held by a latency toxic (backpressure beyond it)


@dataclass(frozen=True)
class Latency:
    ms: float
    jitter_ms: float = 0.0
    direction: Direction = "downstream"


@dataclass(frozen=True)
class Timeout:
    close_after_ms: float = 0.0  # 0: hold until the toxic is removed
    direction: Direction = "both"  # "downstream": hold only the answers ("upstream": only the requests)


@dataclass(frozen=True)
class HoldAfterCommit:
    pass


IDLE_READY = b"Z\x00\x00\x00\x05I"  # ReadyForQuery, length 5, status idle (not in a transaction)


@dataclass(frozen=True)
class ResetPeer:
    pass


@dataclass(frozen=True)
class Bandwidth:
    rate_kbps: float  # kilobytes per second
    direction: Direction = "downstream"


Toxic = Latency | Timeout | ResetPeer | Bandwidth | HoldAfterCommit


def _applies(toxic_dir: Direction, d: str) -> bool:
    return toxic_dir == "both" or toxic_dir == d


@dataclass
class LinkStats:
    accepted: int = 0
    active: int = 0
    resets: int = 0
    upstream_failures: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass
class _Link:
    name: str
    upstream: Addr
    server: asyncio.base_events.Server
    listen: Addr
    toxics: dict[type, Toxic] = field(default_factory=dict)
    conns: set[_Conn] = field(default_factory=set)
    flowing_up: asyncio.Event = field(default_factory=asyncio.Event)  # cleared: a Timeout holds requests
    flowing_down: asyncio.Event = field(default_factory=asyncio.Event)  # cleared: a Timeout holds answers

    commit_hold_cleared: asyncio.Event = field(default_factory=asyncio.Event)  # cleared: HoldAfterCommit

    def flowing(self, d: str) -> asyncio.Event:
        return self.flowing_up if d == "upstream" else self.flowing_down
    stats: LinkStats = field(default_factory=LinkStats)
    rng: _stdrandom.Random = field(default_factory=lambda: hrand.fork("faultproxy"))

    def delay_s(self, d: str) -> float:
        t = self.toxics.get(Latency)
        if not isinstance(t, Latency) or not _applies(t.direction, d):
            return 0.0
        jitter = self.rng.uniform(-t.jitter_ms, t.jitter_ms) if t.jitter_ms else 0.0
        return max(0.0, (t.ms + jitter) / 1000.0)

    def rate(self, d: str) -> float | None:
        t = self.toxics.get(Bandwidth)
        if isinstance(t, Bandwidth) and _applies(t.direction, d):
            return t.rate_kbps * 1024.0
        return None


class _Conn:
    """One proxied connection: two directions, each a reader task and a delivery task."""

    def __init__(self, link: _Link, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.link = link
        self.client = client
        self.upstream = upstream
        self.tasks: list[asyncio.Task[None]] = []
        self.closer: asyncio.TimerHandle | None = None

    def reset(self) -> None:
        """Abort both sides with RST."""
        for w in (self.client, self.upstream):
            _rst(w)
        for t in self.tasks:
            t.cancel()


class _Broken(Exception):
    """A side of a proxied connection failed (reset, write error): tear the whole connection down."""


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """A set of named TCP links with switchable toxics, served by one asyncio loop on a thread.

    ``with FaultProxy() as fp: addr = fp.add_link("node-0->postgres", ("10.77.3.4", 5432),
    listen=("10.77.3.1", 0))`` — point the client at ``addr``; ``fp.set_toxic(name, Latency(200))``.
    """

    def __init__(self, default_listen_host: str = "127.0.0.1") -> None:
        self.default_listen_host = default_listen_host
        self._links: dict[str, _Link] = {}
        self._clients: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._stopped = False
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float = 10.0) -> T:
        if self._stopped:
            raise PlatformError("fault proxy is stopped")
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result(timeout)

    # --- public API (thread-safe, synchronous) ----------------------------------------------------

    def add_link(self, name: str, upstream: Addr, listen: Addr | None = None) -> Addr:
        """Start a listener for ``name`` forwarding to ``upstream``; returns the address it listens on
        (port 0 picks a free port)."""
        return self._call(lambda: self._add_link(name, upstream, listen or (self.default_listen_host, 0)))

    def set_toxic(self, link: str, toxic: Toxic) -> None:
        """Add (or replace the same-type) toxic on ``link``; in force when this returns."""
        self._call(lambda: self._set_toxic(link, toxic))

    def clear(self, link: str) -> None:
        """Remove every toxic from ``link`` (held data flows again)."""
        self._call(lambda: self._clear(link))

    def clear_all(self) -> None:
        for name in list(self._links):
            self.clear(name)

    def remove_link(self, link: str) -> None:
        self._call(lambda: self._remove_link(link))

    def toxics(self, link: str) -> list[Toxic]:
        return list(self._links[link].toxics.values())

    def links(self) -> dict[str, tuple[Addr, Addr]]:
        """name → (listen address, upstream address)."""
        return {n: (lk.listen, lk.upstream) for n, lk in self._links.items()}

    def stats(self, link: str) -> LinkStats:
        s = self._links[link].stats
        return LinkStats(**vars(s))

    def stop(self) -> None:
        """Close every listener and connection and stop the loop thread (idempotent)."""
        if self._stopped:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._stopped = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()
        # a connection accepted in the instant of stopping may still sit in an unreachable transport
        # whose close callback never ran; collecting it closes the socket instead of leaving it open
        gc.collect()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- loop side ---------------------------------------------------------------------------------

    async def _add_link(self, name: str, upstream: Addr, listen: Addr) -> Addr:
        if name in self._links:
            raise ValueError(f"link {name!r} exists")
        holder: dict[str, _Link] = {}

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await self._handle(holder["link"], r, w)

        server = await asyncio.start_server(handle, listen[0], listen[1], reuse_address=True)
        sockname = server.sockets[0].getsockname()
        link = _Link(name=name, upstream=upstream, server=server, listen=(sockname[0], sockname[1]))
        link.flowing_up.set()
        link.flowing_down.set()
        link.commit_hold_cleared.set()
        holder["link"] = link
        self._links[name] = link
        return link.listen

    async def _set_toxic(self, name: str, toxic: Toxic) -> None:
        link = self._links[name]
        link.toxics[type(toxic)] = toxic
        if isinstance(toxic, Timeout):
            for d in ("upstream", "downstream"):
                if _applies(toxic.direction, d):
                    link.flowing(d).clear()
            if toxic.close_after_ms > 0:
                for c in list(link.conns):
                    self._schedule_close(c, toxic.close_after_ms)
        elif isinstance(toxic, HoldAfterCommit):
            link.commit_hold_cleared.clear()
        elif isinstance(toxic, ResetPeer):
            for c in list(link.conns):
                link.stats.resets += 1
                c.reset()

    async def _clear(self, name: str) -> None:
        link = self._links[name]
        link.toxics.clear()
        link.flowing_up.set()
        link.flowing_down.set()
        link.commit_hold_cleared.set()
        for c in link.conns:
            if c.closer is not None:
                c.closer.cancel()
                c.closer = None

    async def _remove_link(self, name: str) -> None:
        link = self._links.pop(name)
        link.server.close()
        for c in list(link.conns):
            c.reset()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(link.server.wait_closed(), 2)

    async def _shutdown(self) -> None:
        for name in list(self._links):
            await self._remove_link(name)
        # connections accepted just before the listeners closed are still being wrapped by asyncio;
        # let that finish (bounded) so their handlers register and get aborted, not leaked half-open
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and any(
            "_accept_connection" in getattr(t.get_coro(), "__qualname__", "") for t in asyncio.all_tasks()
        ):
            await asyncio.sleep(0.005)  # sleep-ok: yielding to asyncio's own accept tasks
        await asyncio.sleep(0)  # sleep-ok: a bare yield to the event loop, not a wait
        for w in list(self._clients):
            w.transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _ in range(5):  # transports close their sockets in call_soon callbacks: let those run
            await asyncio.sleep(0)  # sleep-ok: a bare yield to the event loop, not a wait

    def _schedule_close(self, conn: _Conn, after_ms: float) -> None:
        if conn.closer is None:
            conn.closer = self._loop.call_later(after_ms / 1000.0, conn.reset)

    async def _handle(self, link: _Link, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        link.stats.accepted += 1
        self._clients.add(cw)
        try:
            await self._proxy(link, cr, cw)
        finally:
            self._clients.discard(cw)
            if not cw.transport.is_closing():
                cw.transport.abort()  # cancelled (stop) or failed before the pumps ran

    async def _proxy(self, link: _Link, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        if ResetPeer in link.toxics:
            link.stats.resets += 1
            _rst(cw)
            return
        try:
            ur, uw = await asyncio.wait_for(asyncio.open_connection(*link.upstream), 10)
        except (TimeoutError, OSError):
            link.stats.upstream_failures += 1
            _rst(cw)  # the client sees a refused/reset connection, as it would without the proxy
            return
        conn = _Conn(link, cw, uw)
        link.conns.add(conn)
        link.stats.active += 1
        t = link.toxics.get(Timeout)
        if isinstance(t, Timeout) and t.close_after_ms > 0:
            self._schedule_close(conn, t.close_after_ms)
        try:
            conn.tasks = [
                asyncio.ensure_future(self._direction(link, cr, uw, "upstream")),
                asyncio.ensure_future(self._direction(link, ur, cw, "downstream")),
            ]
            for fut in asyncio.as_completed(conn.tasks):
                try:
                    await fut
                except (_Broken, asyncio.CancelledError):
                    # one side reset or failed: the other side must not linger half-open forever
                    for w in (cw, uw):
                        w.transport.abort()
        finally:
            for task in conn.tasks:
                task.cancel()
            link.conns.discard(conn)
            link.stats.active -= 1
            for w in (cw, uw):
                w.close()

    async def _direction(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, d: str
    ) -> None:
        """Read chunks and hand them to a delivery task with their due time (pipelined latency)."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)
        deliver = asyncio.ensure_future(self._deliver(link, queue, writer, d))
        last_due = 0.0
        tail = b""  # the last bytes forwarded, for an IDLE_READY split across two chunks
        try:
            while True:
                try:
                    data = await reader.read(CHUNK)
                except (ConnectionError, OSError):
                    raise _Broken() from None
                if not data:
                    break
                if d == "downstream" and HoldAfterCommit in link.toxics:
                    at = (tail + data).find(IDLE_READY)
                    if at >= 0:  # committed: forward what came before its ReadyForQuery, hold the rest
                        cut = max(0, at - len(tail))
                        if cut:
                            await queue.put((max(last_due, time.monotonic()), data[:cut]))
                        data = data[cut:]
                        await link.commit_hold_cleared.wait()
                tail = (tail + data)[-(len(IDLE_READY) - 1):]
                await link.flowing(d).wait()  # black hole: hold this chunk (and stop reading) until healed
                due = max(last_due, time.monotonic() + link.delay_s(d))  # jitter never reorders bytes
                last_due = due
                await queue.put((due, data))
            await queue.put((last_due, b""))  # EOF marker, delivered after the data before it
            await deliver
        finally:
            deliver.cancel()

    async def _deliver(
        self, link: _Link, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter, d: str
    ) -> None:
        next_free = 0.0
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # sleep-ok: the latency toxic's delay is the point
            await link.flowing(d).wait()
            if not data:
                with contextlib.suppress(OSError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            rate = link.rate(d)
            if rate:
                now = time.monotonic()
                start = max(now, next_free)
                if start > now:
                    await asyncio.sleep(start - now)  # sleep-ok: the bandwidth cap is the point
                next_free = start + len(data) / rate
            try:
                writer.write(data)
                await writer.drain()
            except (ConnectionError, OSError):
                raise _Broken() from None
            if d == "upstream":
                link.stats.bytes_up += len(data)
            else:
                link.stats.bytes_down += len(data)
