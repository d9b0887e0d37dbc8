"""The TCP fault proxy: real traffic over 127.0.0.1 through each toxic, with the effect measured."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from harness.platforms.local.faultproxy import (
    IDLE_READY,
    Bandwidth,
    FaultProxy,
    HoldAfterCommit,
    Latency,
    ResetPeer,
    Timeout,
)
from harness.waiting import wait_until
from tests.support.echo import EchoServer


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    s = EchoServer()
    yield s
    s.close()


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    fp = FaultProxy()
    yield fp
    fp.stop()
    assert not fp._thread.is_alive()


def rtt_ms(s: socket.socket, n: int = 5) -> list[float]:
    out = []
    for _ in range(n):
        t = time.monotonic()
        s.sendall(b"x" * 32)
        got = b""
        while len(got) < 32:
            got += s.recv(64)
        out.append((time.monotonic() - t) * 1000)
    return out


def test_forwards_without_toxics_with_small_overhead(proxy: FaultProxy, echo: EchoServer) -> None:
    addr = proxy.add_link("l", echo.addr)
    with socket.create_connection(addr, timeout=5) as s:
        rtt_ms(s, 3)  # warm up
        samples = sorted(rtt_ms(s, 20))
        assert samples[10] < 5.0, samples  # median added round trip well under 5 ms
    assert proxy.links() == {"l": (addr, echo.addr)}
    assert proxy.stats("l").accepted == 1


def test_latency_is_added_per_direction(proxy: FaultProxy, echo: EchoServer) -> None:
    addr = proxy.add_link("l", echo.addr)
    with socket.create_connection(addr, timeout=5) as s:
        proxy.set_toxic("l", Latency(80))  # downstream only: +80 ms per round trip
        r = rtt_ms(s)
        assert min(r) >= 80 and max(r) < 80 + 150, r
        proxy.set_toxic("l", Latency(40, direction="both"))  # replaces: +40 each way
        r = rtt_ms(s)
        assert min(r) >= 80 and max(r) < 80 + 150, r
        proxy.set_toxic("l", Latency(60, jitter_ms=30))
        r = rtt_ms(s, 15)
        assert min(r) >= 30 and max(r) < 90 + 150, r
        assert max(r) - min(r) > 5, r  # jitter actually varies the delay
        proxy.clear("l")
        assert sorted(rtt_ms(s))[2] < 30


def echo_seconds(addr: tuple[str, int], data: bytes) -> float:
    """Seconds from starting to send ``data`` through ``addr`` (sending on a thread) until all of it is back."""
    with socket.create_connection(addr, timeout=10) as s:
        t = time.monotonic()
        threading.Thread(target=s.sendall, args=(data,), daemon=True).start()
        got = 0
        while got < len(data):
            got += len(s.recv(1 << 16))
        return time.monotonic() - t


def test_latency_is_pipelined_not_a_throughput_cap(proxy: FaultProxy, echo: EchoServer) -> None:
    addr = proxy.add_link("l", echo.addr)
    proxy.set_toxic("l", Latency(50, direction="upstream"))
    data = b"z" * (2 << 20)  # 2 MiB: 32+ chunks; one delay per chunk in series would take > 1.6 s
    took = echo_seconds(addr, data)
    assert 0.05 <= took < 1.0, took


def test_timeout_holds_data_until_cleared(proxy: FaultProxy, echo: EchoServer) -> None:
    addr = proxy.add_link("l", echo.addr)
    with socket.create_connection(addr, timeout=5) as s:
        proxy.set_toxic("l", Timeout())
        s.settimeout(0.4)
        s.sendall(b"held")
        with pytest.raises(socket.timeout):
            s.recv(10)
        # new connections are accepted but black-holed too
        with socket.create_connection(addr, timeout=2) as s2:
            s2.settimeout(0.3)
            s2.sendall(b"x")
            with pytest.raises(socket.timeout):
                s2.recv(10)
        proxy.clear("l")
        s.settimeout(5)
        assert s.recv(10) == b"held"


def test_timeout_downstream_delivers_requests_and_holds_the_answers(proxy: FaultProxy, echo: EchoServer) -> None:
    """Committed but unanswered: the server gets the request (bytes forwarded upstream), the client
    gets no answer until the toxic is cleared."""
    addr = proxy.add_link("l", echo.addr)
    with socket.create_connection(addr, timeout=5) as s:
        assert rtt_ms(s, 1)  # connected and flowing
        up = proxy.stats("l").bytes_up
        proxy.set_toxic("l", Timeout(direction="downstream"))
        s.sendall(b"commit")
        wait_until(lambda: proxy.stats("l").bytes_up >= up + 6, 5, "the request to reach the server")
        s.settimeout(0.4)
        with pytest.raises(socket.timeout):
            s.recv(10)
        proxy.clear("l")
        s.settimeout(5)
        assert s.recv(10) == b"commit"


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        more = s.recv(n - len(got))
        assert more, "connection closed"
        got += more
    return got


@pytest.mark.parametrize("split", [False, True], ids=["whole", "marker-split-across-chunks"])
def test_hold_after_commit_answers_a_transaction_until_it_commits(proxy: FaultProxy, echo: EchoServer,
                                                                  split: bool) -> None:
    """PostgreSQL's backend messages, echoed: answers inside a transaction (ReadyForQuery 'T') flow, the
    COMMIT's CommandComplete flows, its ReadyForQuery 'I' and all after it are held until cleared."""
    in_tx = b"C\x00\x00\x00\x0dUPDATE 1\x00" + b"Z\x00\x00\x00\x05T"
    commit = b"C\x00\x00\x00\x0bCOMMIT\x00"
    addr = proxy.add_link("l", echo.addr)
    with socket.create_connection(addr, timeout=5) as s:
        proxy.set_toxic("l", HoldAfterCommit())
        s.sendall(in_tx)
        assert _recv_exactly(s, len(in_tx)) == in_tx  # inside the transaction: answered
        if split:  # the marker's first bytes travel in one chunk, the rest in the next
            s.sendall(commit + IDLE_READY[:3])
            assert _recv_exactly(s, len(commit)) == commit
            time.sleep(0.2)  # sleep-ok: let the first chunk pass the proxy before the second
            s.sendall(IDLE_READY[3:] + b"after")
        else:
            s.sendall(commit + IDLE_READY + b"after")
            assert _recv_exactly(s, len(commit)) == commit  # the commit's completion, not its ReadyForQuery
        s.settimeout(0.4)
        rest = IDLE_READY + b"after"
        got = b""
        with pytest.raises(socket.timeout):
            while True:
                got += s.recv(64)
        assert len(got) < len(rest) and rest.startswith(got)
        proxy.clear("l")
        s.settimeout(5)
        assert got + _recv_exactly(s, len(rest) - len(got)) == rest


def test_timeout_with_close_after(proxy: FaultProxy, echo: EchoServer) -> None:
    addr = proxy.add_link("l", echo.addr)
    with socket.create_connection(addr, timeout=5) as s:
        proxy.set_toxic("l", Timeout(close_after_ms=200))
        t = time.monotonic()
        s.sendall(b"x")
        with pytest.raises((ConnectionResetError, ConnectionAbortedError)):
            if s.recv(10) == b"":
                raise ConnectionResetError("closed")
        assert 0.15 <= time.monotonic() - t < 3


def test_reset_kills_open_and_new_connections(proxy: FaultProxy, echo: EchoServer) -> None:
    addr = proxy.add_link("l", echo.addr)
    with socket.create_connection(addr, timeout=5) as s:
        assert rtt_ms(s, 1)
        proxy.set_toxic("l", ResetPeer())
        with pytest.raises(ConnectionResetError):
            s.sendall(b"x")
            s.recv(10)
    # the RST may even beat connect() back
    with pytest.raises(ConnectionResetError), socket.create_connection(addr, timeout=5) as s:
        s.recv(10)
    assert proxy.stats("l").resets >= 2
    proxy.clear("l")
    with socket.create_connection(addr, timeout=5) as s:
        assert rtt_ms(s, 1)


def test_bandwidth_caps_throughput(proxy: FaultProxy, echo: EchoServer) -> None:
    addr = proxy.add_link("l", echo.addr)
    proxy.set_toxic("l", Bandwidth(rate_kbps=1024))  # 1 MiB/s downstream
    data = b"y" * (512 * 1024)
    took = echo_seconds(addr, data)
    assert took >= 0.4, took  # 512 KiB at 1 MiB/s, first chunk free


def test_upstream_down_resets_the_client(proxy: FaultProxy) -> None:
    dead = socket.create_server(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    addr = proxy.add_link("l", ("127.0.0.1", port))
    try:  # the RST may even beat connect() back to the client
        with socket.create_connection(addr, timeout=5) as s:
            s.settimeout(5)
            assert s.recv(10) == b""
    except ConnectionResetError:
        pass
    wait_until(lambda: proxy.stats("l").upstream_failures == 1, 5, "upstream failure counted")


def assert_closed(s: socket.socket) -> None:
    """The peer closed (EOF) or reset the connection — it is not left hanging."""
    s.settimeout(2)
    with contextlib.suppress(ConnectionResetError):
        assert s.recv(10) == b""
    s.close()


def test_stop_closes_listeners_and_connections(echo: EchoServer) -> None:
    fp = FaultProxy()
    addr = fp.add_link("l", echo.addr)
    s = socket.create_connection(addr, timeout=5)
    wait_until(lambda: fp.stats("l").active == 1, 5, "connection proxied")
    t = socket.create_connection(addr, timeout=5)  # accepted, maybe not yet handled, when stop runs
    fp.stop()

    fp.stop()  # idempotent
    assert not fp._thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(addr, timeout=1).close()
    assert_closed(s)
    assert_closed(t)
