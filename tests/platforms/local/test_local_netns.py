"""Network namespaces on a private bridge: real TCP between hosts and the harness, nothing left behind."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from harness import random as hrand
from harness.platforms.local import netns
from harness.platforms.local.netns import Host, Network
from harness.waiting import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

ECHO = r"""
import socket, sys, threading
srv = socket.create_server((sys.argv[1], int(sys.argv[2])), reuse_port=False)
def echo(c):
    with c:
        while (d := c.recv(65536)):
            c.sendall(d)
while True:
    c, _ = srv.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
"""


def start_echo(host: Host, port: int = 7000) -> subprocess.Popen[bytes]:
    """An echo server inside ``host``, ready when this returns."""
    proc = host.popen([sys.executable, "-c", ECHO, "0.0.0.0", str(port)])
    wait_until(lambda: host.can_connect(host.ip, port, 0.5), 10, f"echo server in {host.name}")
    return proc


@pytest.fixture
def net() -> Iterator[Network]:
    prefix = hrand.run_prefix()
    with Network(prefix) as n:
        for name in ("a", "b", "c"):
            n.add_host(name)
        yield n
    assert netns.leftovers(prefix) == []


def test_hosts_talk_tcp_to_each_other_and_to_the_harness(net: Network) -> None:
    a, b = net.host("a"), net.host("b")
    server = start_echo(b)
    try:
        assert a.can_connect(b.ip, 7000, 1.0)
        # the harness (root namespace) reaches a host directly over the bridge
        with socket.create_connection((b.ip, 7000), timeout=2) as s:
            s.sendall(b"ping")
            assert s.recv(10) == b"ping"
        # and a host reaches the harness on the bridge IP
        srv = socket.create_server((net.bridge_ip, 0))
        port = srv.getsockname()[1]
        threading.Thread(target=lambda: srv.accept()[0].close(), daemon=True).start()
        try:
            assert a.can_connect(net.bridge_ip, port, 1.0)
        finally:
            srv.close()
        # nothing listens on c: refused, not hanging
        assert not a.can_connect(net.host("c").ip, 7000, 1.0)
    finally:
        server.kill()
        server.wait()


def test_hosts_have_lo_and_no_default_route(net: Network) -> None:
    a = net.host("a")
    assert "UP" in a.run(["ip", "link", "show", "lo"]).stdout
    routes = a.run(["ip", "route"]).stdout
    assert "default" not in routes and str(net.subnet) in routes
    # a route lookup (sends nothing) proves packets for the outside world have nowhere to go
    assert a.run(["ip", "route", "get", "192.0.2.1"], check=False).returncode != 0
    assert ipaddress.ip_address(a.ip) in net.subnet


def test_teardown_removes_everything_and_kills_stragglers() -> None:
    prefix = hrand.run_prefix()
    n = Network(prefix)
    h = n.add_host("x")
    straggler = h.popen(["sleep", "300"])
    assert len(netns.leftovers(prefix)) >= 3  # namespace, bridge, veth
    n.teardown()
    n.teardown()  # idempotent
    assert straggler.wait(5) != 0
    assert netns.leftovers(prefix) == []
    assert not any(line.startswith(prefix) for line in subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines())


def test_cleanup_leftovers_of_a_crashed_run() -> None:
    prefix = hrand.run_prefix()
    n = Network(prefix)
    n.add_host("x")
    n.add_host("y")
    proc = n.host("x").popen(["sleep", "300"])
    # simulate a crash: nobody calls teardown
    removed = netns.cleanup_leftovers(prefix)
    assert any(r.startswith("netns") for r in removed) and any(r.startswith("link") for r in removed)
    assert netns.leftovers(prefix) == []
    assert proc.wait(5) != 0


def test_owner_marks_tell_dead_runs_from_live_ones() -> None:
    live = hrand.run_prefix()
    netns.claim_prefix(live)
    dead = hrand.run_prefix()
    netns.OWNERS_DIR.mkdir(parents=True, exist_ok=True)
    (netns.OWNERS_DIR / dead).write_text("999999999\n")
    try:
        found = netns.dead_prefixes()
        assert dead in found and live not in found
    finally:
        netns.release_prefix(live)
        netns.release_prefix(dead)


def test_pick_subnet_avoids_used_networks() -> None:
    used = [ipaddress.ip_network(f"10.77.{i}.0/24") for i in range(1, 255) if i != 42]
    assert netns.pick_subnet(used=used) == "10.77.42.0/24"
    with pytest.raises(Exception, match="no free"):
        netns.pick_subnet(used=[ipaddress.ip_network("10.77.0.0/16")])
    with pytest.raises(ValueError):
        netns.check_prefix("Bad-Prefix")
