"""The Kubernetes platform's port-forward in direct mode (pod IPs reachable from this machine), against
a real TCP echo server: bytes relayed both ways, the pod asked once per short period instead of once
per connection, and a hard bound on concurrent connections.

Why the bound is tested: each forwarded connection is a thread that first resolves its pod through the
API server; with a slow API server and clients retrying at the probe rate, one scenario run once grew
4,801 threads and starved the machine (and every measurement on it)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from harness.platforms.kubernetes.portforward import PortForward
from harness.waiting import wait_until
from tests.support.echo import EchoServer


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    srv = EchoServer()
    yield srv
    srv.close()


def forward(echo: EchoServer, calls: list[str], max_connections: int | None = None) -> PortForward:
    def pod() -> str:
        calls.append("pod")
        return "gate-abc"

    cls = PortForward
    if max_connections is not None:
        cls = type("SmallForward", (PortForward,), {"MAX_CONNECTIONS": max_connections})
    return cls(core=None, namespace="ns", pod=pod, remote_port=echo.addr[1], ip_of=lambda name: echo.addr[0])


def roundtrip(pf: PortForward, payload: bytes = b"ping") -> socket.socket:
    c = socket.create_connection(("127.0.0.1", pf.local_port), timeout=5)
    c.sendall(payload)
    assert c.recv(64) == payload
    return c


def test_relays_both_ways_and_asks_for_the_pod_once_per_period(echo: EchoServer) -> None:
    calls: list[str] = []
    pf = forward(echo, calls)
    try:
        conns = [roundtrip(pf, f"hello {i}".encode()) for i in range(5)]
        for c in conns:
            c.close()
        assert 1 <= len(calls) < 5, calls  # remembered POD_TTL_S, not asked per connection
    finally:
        pf.close()


def test_connections_beyond_the_bound_are_refused_not_queued(echo: EchoServer) -> None:
    calls: list[str] = []
    pf = forward(echo, calls, max_connections=2)
    try:
        held = [roundtrip(pf), roundtrip(pf)]  # both relayed, both still open
        extra = socket.create_connection(("127.0.0.1", pf.local_port), timeout=5)
        try:
            extra.sendall(b"ping")
            got = extra.recv(64)
        except ConnectionResetError:  # closed with our bytes unread: the kernel answers with a reset
            got = b""
        assert got == b""  # closed at once: the bound holds
        extra.close()
        assert pf.refused_busy == 1
        held.pop().close()  # a slot frees when its relay ends

        def relayed() -> bool:
            try:
                roundtrip(pf).close()
                return True
            except (AssertionError, OSError):
                return False
        wait_until(relayed, 10, "a freed slot to relay a new connection")
        held.pop().close()
    finally:
        pf.close()
