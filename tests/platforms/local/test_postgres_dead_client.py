"""A PostgreSQL client that dies behind a cut network must not keep its locks until the network heals.

Found on Kubernetes: the held-down SIGKILL cuts the pod's network, then kills the node. The node's session
was inside a transaction holding ``FOR SHARE`` locks on fence rows; no FIN ever reached the server, which
kept the session (OS keepalive default: 2 h) until the cut was healed, and the shards' next owner could not
raise their fences meanwhile (RTO 13.5 s against 10 s). The server now starts with TCP keepalives of
2 s/1 s/2 probes for an idle connection and a 4 s TCP user timeout for one with a reply in flight (what the
dead client here leaves: the server retransmits it into the cut) — manifests, chart and local platform.
These tests put a real client in a real network namespace, cut it with nft, SIGKILL it, and take the lock
from outside."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from harness.platforms.local.netns import Network
from harness.platforms.local.services import PostgresServer, find_pg_bindir

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and nft need root"),
    pytest.mark.skipif(find_pg_bindir() is None, reason="PostgreSQL not installed"),
]

# In the namespace: open a transaction, share-lock the fence row as a node's write does, say so, wait.
CLIENT = """
import sys, psycopg
conn = psycopg.connect(sys.argv[1], options=sys.argv[2])
conn.execute("SELECT epoch FROM fence WHERE shard = 1 FOR SHARE")
print("LOCKED", flush=True)
sys.stdin.read()
"""
# Every packet in and out of the namespace dropped: what the Kubernetes held-down kill does to a pod.
CUT = """add table inet gvhcut
add chain inet gvhcut in { type filter hook input priority 0; policy drop; }
add chain inet gvhcut out { type filter hook output priority 0; policy drop; }
"""


@pytest.fixture
def server_and_host() -> Iterator[tuple[PostgresServer, Network]]:
    workdir = Path(tempfile.mkdtemp(prefix="gvh-test-deadclient-"))
    try:
        with Network() as net:
            server = PostgresServer(workdir / "pg", host=net.bridge_ip)
            with server:
                with psycopg.connect(server.dsn(), autocommit=True) as conn:
                    conn.execute("CREATE TABLE fence (shard int PRIMARY KEY, epoch int)")
                    conn.execute("INSERT INTO fence VALUES (1, 1)")
                yield server, net
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _lock_then_die_silently(server: PostgresServer, net: Network, options: str) -> None:
    host = net.add_host("client")
    client = host.popen([sys.executable, "-c", CLIENT, server.dsn(), options], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None and client.stdout.readline().strip() == "LOCKED"
        host.run(["nft", "-f", "-"], input=CUT)
    finally:
        client.kill()  # the client's FIN/RST is dropped by the cut: the server never hears of its death
        client.wait(10)


def _take_the_lock(server: PostgresServer, lock_timeout_s: int) -> None:
    with psycopg.connect(server.dsn()) as conn:
        conn.execute(f"SET lock_timeout = '{lock_timeout_s}s'")
        conn.execute("UPDATE fence SET epoch = 2 WHERE shard = 1")


def test_the_lock_of_a_client_killed_behind_a_cut_network_is_released(
        server_and_host: tuple[PostgresServer, Network]) -> None:
    server, net = server_and_host
    # the idle-in-transaction limit (5 s) off for this session: what releases the lock here is the
    # keepalives and the user timeout, which drop the dead peer 4 s after its last ack
    _lock_then_die_silently(server, net, options="-c idle_in_transaction_session_timeout=0")
    _take_the_lock(server, lock_timeout_s=8)  # 8 s leaves room on a loaded machine


NO_KEEPALIVES = "-c tcp_keepalives_idle=0 -c tcp_keepalives_interval=0 -c tcp_keepalives_count=0 -c tcp_user_timeout=0"


def test_without_the_keepalives_the_lock_is_held(server_and_host: tuple[PostgresServer, Network]) -> None:
    """The control: the same client with the OS defaults (its session's settings at 0, the idle limit
    off) keeps the lock (the OS retransmits for ~15 min), so the test above passes because of the
    settings, not by luck."""
    server, net = server_and_host
    _lock_then_die_silently(server, net, options=NO_KEEPALIVES + " -c idle_in_transaction_session_timeout=0")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        _take_the_lock(server, lock_timeout_s=5)


def test_the_idle_in_transaction_limit_is_the_backstop(server_and_host: tuple[PostgresServer, Network]) -> None:
    """Without keepalives, the server's idle-in-transaction limit (5 s, what also bounds a client paused
    mid-transaction) ends the session: the lock comes free within it and a margin."""
    server, net = server_and_host
    _lock_then_die_silently(server, net, options=NO_KEEPALIVES)
    _take_the_lock(server, lock_timeout_s=9)
