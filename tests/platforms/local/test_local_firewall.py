"""Partitions as real packet drops in namespaces: rendering (pure) and effect (integration)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from harness import random as hrand
from harness.faults import shapes
from harness.platforms.base import PlatformError
from harness.platforms.local import netns
from harness.platforms.local.faultproxy import FaultProxy
from harness.platforms.local.firewall import (
    HostDrops,
    Partitioner,
    iptables_heal_cmds,
    plan,
    render_iptables,
    render_nft,
)
from harness.platforms.local.netns import Host, Network
from harness.waiting import wait_until

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and firewall rules need root")

IPS = {"a": "10.9.0.2", "b": "10.9.0.3", "c": "10.9.0.4"}


# --- pure --------------------------------------------------------------------------------------------


def test_plan_maps_grudge_to_input_drops() -> None:
    p = plan(shapes.cut(["a"], ["b"]), IPS)
    assert p == {"a": HostDrops({"10.9.0.3"}), "b": HostDrops({"10.9.0.2"})}
    assert plan({"a": set()}, IPS) == {}
    with pytest.raises(PlatformError, match="not a host"):
        plan({"a": {"zz"}}, IPS)


def test_plan_covers_proxied_aliases_on_both_ends() -> None:
    # b is also reached at 10.9.0.1:4001 (a proxy in the root namespace)
    p = plan({"a": {"b"}}, IPS, {"b": [("10.9.0.1", 4001)]})
    assert p["a"].from_ips == {"10.9.0.3"} and p["a"].from_aliases == {("10.9.0.1", 4001)}
    assert "b" not in p  # a one-way grudge held by a installs nothing in b
    # b drops a, and b is reached through the proxy: a must not get its packets out to that proxy
    p = plan({"b": {"a"}}, IPS, {"b": [("10.9.0.1", 4001)]})
    assert p["b"].from_ips == {"10.9.0.2"}
    assert p["a"].to_aliases == {("10.9.0.1", 4001)} and not p["a"].from_ips


def test_render_nft_is_an_atomic_replace() -> None:
    d = HostDrops({"10.9.0.3", "10.9.0.4"}, {("10.9.0.1", 4001), ("10.9.0.1", 4002)}, {("10.9.0.1", 5000)})
    text = render_nft("gvhabc123", d)
    assert text.startswith("add table inet gvhabc123\ndelete table inet gvhabc123\n")
    assert "ip saddr { 10.9.0.3, 10.9.0.4 } drop" in text
    assert "ip saddr 10.9.0.1 tcp sport { 4001, 4002 } drop" in text
    assert "ip daddr 10.9.0.1 tcp dport { 5000 } drop" in text
    assert render_nft("t", HostDrops()) == "add table inet t\ndelete table inet t\n"


def test_render_iptables() -> None:
    cmds = render_iptables("gvhabc123", HostDrops({"10.9.0.3"}, {("10.9.0.1", 4001)}, {("10.9.0.1", 5000)}))
    flat = [" ".join(c) for c in cmds]
    assert "iptables -w -A gvhabc123-in -s 10.9.0.3 -j DROP" in flat
    assert "iptables -w -A gvhabc123-in -s 10.9.0.1 -p tcp --sport 4001 -j DROP" in flat
    assert "iptables -w -A gvhabc123-out -d 10.9.0.1 -p tcp --dport 5000 -j DROP" in flat
    assert flat[-2:] == ["iptables -w -I INPUT 1 -j gvhabc123-in", "iptables -w -I OUTPUT 1 -j gvhabc123-out"]
    assert ["iptables", "-w", "-X", "gvhabc123-in"] in iptables_heal_cmds("gvhabc123")


# --- integration -------------------------------------------------------------------------------------

ECHO = r"""
import socket, sys, threading
srv = socket.create_server(("0.0.0.0", int(sys.argv[1])))
def echo(c):
    with c:
        while (d := c.recv(65536)):
            c.sendall(d)
while True:
    c, _ = srv.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
"""
# Bound before "ready", so a datagram that arrives waits in the socket's buffer however slowly the
# sender starts on a loaded machine; the 0.8 s wait for one that never comes starts only once the
# sender has finished ("sent" on stdin).
UDP_RECV = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
sys.stdin.readline()
s.settimeout(float(sys.argv[2]))
try:
    print(s.recvfrom(100)[0].decode(), flush=True)
except socket.timeout:
    print("TIMEOUT", flush=True)
"""
UDP_SEND = "import socket,sys\nfor _ in range(5): socket.socket(2,2).sendto(b'hi',(sys.argv[1],int(sys.argv[2])))\n"
PORT = 7000
FAIL_S = 0.6  # a dropped SYN never completes; 0.6 s is plenty for a working connect on a bridge


def udp_delivered(src: Host, dst: Host) -> bool:
    rx = dst.popen([sys.executable, "-c", UDP_RECV, "7001", "0.8"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                   text=True)
    try:
        assert rx.stdin is not None and rx.stdout is not None and rx.stdout.readline().strip() == "ready"
        src.run([sys.executable, "-c", UDP_SEND, dst.ip, "7001"])
        rx.stdin.write("sent\n")
        rx.stdin.flush()
        return rx.stdout.readline().strip() == "hi"
    finally:
        rx.kill()
        rx.wait()


@pytest.fixture
def net() -> Iterator[Network]:
    prefix = hrand.run_prefix()
    procs: list[subprocess.Popen[bytes]] = []
    with Network(prefix) as n:
        for name in ("a", "b", "c"):
            h = n.add_host(name)
            procs.append(h.popen([sys.executable, "-c", ECHO, str(PORT)]))
        for h in n.hosts.values():
            wait_until(lambda h=h: h.can_connect(h.ip, PORT, 0.5), 10, f"echo in {h.name}")
        yield n
        for p in procs:
            p.kill()
            p.wait()
    assert netns.leftovers(prefix) == []


def reach(n: Network, src: str, dst: str) -> bool:
    return n.host(src).can_connect(n.host(dst).ip, PORT, FAIL_S)


@pytest.mark.integration
@root_only
@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_isolate_then_heal(net: Network, backend: str) -> None:
    part = Partitioner(net, backend=backend)  # type: ignore[arg-type]
    part.apply(shapes.cut(["a"], ["b", "c"]))
    assert not reach(net, "a", "b") and not reach(net, "b", "a") and not reach(net, "c", "a")
    assert reach(net, "b", "c")
    assert net.host("a").ip in part.rules("b")
    part.heal()
    part.heal()  # idempotent
    assert reach(net, "a", "b") and reach(net, "b", "a") and reach(net, "c", "a")
    assert net.host("a").ip not in part.rules("b")


@pytest.mark.integration
@root_only
@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_one_way_drop_is_one_way(net: Network, backend: str) -> None:
    part = Partitioner(net, backend=backend)  # type: ignore[arg-type]
    a, b = net.host("a"), net.host("b")
    assert udp_delivered(b, a) and udp_delivered(a, b)
    part.apply({"a": {"b"}})  # a stops hearing b; b still hears a
    try:
        assert not udp_delivered(b, a)
        assert udp_delivered(a, b)
    finally:
        part.heal()
    assert udp_delivered(b, a)


@pytest.mark.integration
@root_only
def test_apply_replaces_the_previous_grudge(net: Network) -> None:
    part = Partitioner(net)
    part.apply(shapes.cut(["a"], ["b"]))
    assert not reach(net, "a", "b")
    part.apply(shapes.cut(["b"], ["c"]))
    assert reach(net, "a", "b") and not reach(net, "b", "c")
    part.heal()
    assert reach(net, "b", "c")


@pytest.mark.integration
@root_only
@pytest.mark.parametrize("grudge", [{"a": {"b"}, "b": {"a"}}, {"a": {"b"}}, {"b": {"a"}}],
                         ids=["both", "a-drops-b", "b-drops-a"])
def test_cut_bites_through_a_fault_proxy(net: Network, grudge: dict[str, set[str]]) -> None:
    """a reaches b's echo server through a proxy in the root namespace; the cut must still bite."""
    a, b = net.host("a"), net.host("b")
    with FaultProxy() as fp:
        listen = fp.add_link("a->b", (b.ip, PORT), listen=(net.bridge_ip, 0))
        b.aliases.append(listen)
        assert a.can_connect(*listen, FAIL_S)
        part = Partitioner(net)
        part.apply(grudge)
        try:
            assert not a.can_connect(*listen, FAIL_S)
            assert net.host("c").can_connect(*listen, FAIL_S)  # others still use the proxy
        finally:
            part.heal()
        assert a.can_connect(*listen, FAIL_S)


@pytest.mark.integration
@root_only
def test_nothing_touches_the_root_namespace(net: Network) -> None:
    before = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    part = Partitioner(net)
    part.apply(shapes.grudge_for("isolate-node", {"a": "node", "b": "etcd", "c": "postgres"}, "a"))
    assert subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout == before
    assert net.prefix not in before
    part.heal()
