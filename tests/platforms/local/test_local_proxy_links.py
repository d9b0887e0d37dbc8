"""Latency (and black holes, resets) on gate → node, node → etcd and gate → etcd links of a real
reference stack deployed with ``StackSpec(proxy_links=...)``: the links go through the TCP fault proxy
(gates by an nft dnat in their namespaces, etcd clients by their endpoint list), each latency window is
the hold asked for (±50 ms) with its effect measured on real calls and its heal verified, and a
partition still cuts the proxied path (the proxy addresses are aliases of the peer).

This kernel has no netem; before these links were wired, ``Latency(("gates", "node-0"), …)`` was
``Unsupported``."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import wire
from harness.faults.nemesis import Nemesis
from harness.faults.spec import Fault, Latency, Partition, Timeout
from harness.history import FaultWindow, Recorder
from harness.platforms.base import StackSpec, Unsupported
from harness.platforms.local import netns
from harness.platforms.local.deploy import LocalDeployment, LocalPlatform, proxy_link_name
from harness.platforms.local.firewall import render_dnat_nft
from harness.sharding import shard_of
from harness.waiting import wait_until
from harness.workload.gate_client import CallOutcome, GateClient
from harness.workload.lagwatch import LagWatch
from tests.support.ontime import assert_on_time, lag_watched

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
HOLD_S, TOLERANCE_S, DELAY_MS = 0.5, 0.05, 200


def test_dnat_script_replaces_the_table_and_sends_each_peer_to_its_listener() -> None:
    script = render_dnat_nft("gvhabcdnat", {("10.77.0.11", 7001): ("10.77.0.1", 40001)})
    assert script.splitlines()[:2] == ["add table ip gvhabcdnat", "delete table ip gvhabcdnat"]
    assert "type nat hook output priority -100;" in script
    assert "ip daddr 10.77.0.11 tcp dport 7001 dnat to 10.77.0.1:40001" in script
    assert render_dnat_nft("t", {}) == "add table ip t\ndelete table ip t\n"


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    d = LocalPlatform().deploy(StackSpec(isolate_network=True, inspector=False,
                                         proxy_links=("gate-node", "node-etcd", "gate-etcd")),
                               tmp_path_factory.mktemp("proxylinks"))
    prefix = d.fault_prefix
    try:
        yield d
    finally:
        d.teardown()
    assert netns.leftovers(prefix) == []


def key_on(dep: LocalDeployment, node: str) -> str:
    owners = dep.shard_map()
    return next(k for k in (f"proxylink-{i}" for i in range(1000))
                if owners.get(shard_of(k, dep.spec.shards), ("", ""))[1] == node)


def call(dep: LocalDeployment, key: str, timeout: float = 3.0) -> tuple[CallOutcome, float]:
    """One Get through gate-0 (a fresh client: the gate's own pooled connection to the node is used)."""
    async def go() -> tuple[CallOutcome, float]:
        async with GateClient(dep.gate_urls(), timeout=timeout) as c:
            t0 = time.monotonic()
            out = await c.call("gate-0", "Counter", key, "Get", wire.new("counter.GetRequest"))
            return out, time.monotonic() - t0
    return asyncio.run(go())


def etcd_rtt(dep: LocalDeployment, link: str) -> float:
    """Seconds for one etcd range request sent through ``link``'s listener (the path the client uses)."""
    assert dep.proxy is not None
    (host, port), _ = dep.proxy.links()[link]
    body = json.dumps({"key": "eA=="}).encode()
    t0 = time.monotonic()
    req = urllib.request.Request(f"http://{host}:{port}/v3/kv/range", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - a local etcd on the bridge
        r.read()
    return time.monotonic() - t0


@dataclass
class Held:
    """A window held through the nemesis while ``during()`` ran, with what measures its timing."""

    window: FaultWindow
    during_done: float  #: history time at which during() returned (a slow call can outlast the hold)
    lag: LagWatch  #: this process's scheduling lag meanwhile (tests/support/ontime.py)


def held_with(dep: LocalDeployment, fault: Fault, during: object) -> tuple[Held, object]:
    """Inject ``fault`` through the nemesis, run ``during()`` while it holds, heal at t_inject + HOLD_S."""
    rec = Recorder()
    nemesis = Nemesis(LocalPlatform().injector(dep), rec)
    with lag_watched() as lag:
        fid, _ = nemesis.inject(fault, hold_s=HOLD_S)
        try:
            seen = during()  # type: ignore[operator]
            during_done = rec.now()
            (open_window,) = rec.history().faults()
            remaining = open_window.t_start + HOLD_S - rec.now()
            if remaining > 0:
                time.sleep(remaining)  # sleep-ok: the fault's duration is the subject
        finally:
            nemesis.heal(fid)
    (w,) = rec.history().faults()
    return Held(w, during_done, lag), seen


def assert_window(h: Held) -> None:
    """The heal began when the hold ended (or when ``during()`` returned, if a call slowed by the fault
    outlasted it) and a proxy toxic goes out in microseconds, so the recorded window is the requested
    hold ±50 ms — late only by as much as this process was measurably starved."""
    w = h.window
    assert w.requested_hold_s == HOLD_S and w.t_stop is not None and w.result is not None
    due = max(w.t_start + HOLD_S, h.during_done)
    assert_on_time(w.result["heal_began_at"] - due, TOLERANCE_S, h.lag, "heal start")
    assert_on_time(w.t_stop - w.result["heal_began_at"], TOLERANCE_S, h.lag, "heal run")
    if h.during_done <= w.t_start + HOLD_S:
        assert_on_time(w.actual_hold_s - HOLD_S, TOLERANCE_S, h.lag, "recorded window")
    assert w.params["via"] == "faultproxy" and w.result["cleared"], w.params


@pytest.mark.integration
@root_only
def test_latency_on_gate_to_node_is_the_hold_and_heals(dep: LocalDeployment) -> None:
    key = key_on(dep, "node-0")
    assert call(dep, key)[0].type == "ok"
    h, seen = held_with(dep, Latency(("gates", "node-0"), ms=DELAY_MS), lambda: call(dep, key))
    assert_window(h)
    w = h.window
    out, took = seen  # type: ignore[misc]
    assert out.type == "ok" and took >= DELAY_MS / 1000, took  # the call waited for the delayed request
    assert set(w.params["links"]) == {proxy_link_name(g, "node-0") for g in dep.gate_urls()}
    out, took = call(dep, key)
    assert out.type == "ok" and took < DELAY_MS / 1000 / 2, took  # healed


@pytest.mark.integration
@root_only
@pytest.mark.parametrize("src", ["node-0", "gate-0"])
def test_latency_on_etcd_links_is_the_hold_and_heals(dep: LocalDeployment, src: str) -> None:
    link = proxy_link_name(src, "etcd-0")
    assert dep.proxy is not None and dep.proxy.stats(link).accepted > 0  # the client really uses it
    h, rtt = held_with(dep, Latency((src, "all-etcd"), ms=DELAY_MS, direction="both"), lambda: etcd_rtt(dep, link))
    assert_window(h)
    w = h.window
    assert w.params["links"] == [link] and w.params["direction"] == "both"
    assert rtt >= 2 * DELAY_MS / 1000, rtt  # delayed each way
    assert etcd_rtt(dep, link) < DELAY_MS / 1000 / 2  # healed


@pytest.mark.integration
@root_only
def test_black_hole_on_a_proxied_link_is_the_proxys_and_partitions_still_cut_it(dep: LocalDeployment) -> None:
    key = key_on(dep, "node-0")
    h, seen = held_with(dep, Timeout(("gate-0", "node-0")), lambda: call(dep, key, timeout=0.3))
    assert_window(h)
    w = h.window
    assert seen[0].type != "ok"  # type: ignore[index]
    wait_until(lambda: call(dep, key)[0].type == "ok", 20, "calls to node-0 after the black hole")
    # the gates reach node-0 only through the proxy now: the cut must drop that path too (aliases)
    h, seen = held_with(dep, Partition("gates-node", target="node-0"), lambda: call(dep, key, timeout=0.3))
    w = h.window
    assert seen[0].type != "ok", seen  # type: ignore[index]
    assert w.result is not None and w.result["verification"]["verified_cut"]["dropped"] is True
    wait_until(lambda: call(dep, key)[0].type == "ok", 20, "calls to node-0 after the partition")


@pytest.mark.integration
@root_only
def test_links_not_wired_say_how_to_wire_them(tmp_path: Path) -> None:
    d = LocalPlatform().deploy(StackSpec(isolate_network=True, inspector=False, nodes=1, gates=1), tmp_path)
    try:
        with pytest.raises(Unsupported, match=r"StackSpec\(proxy_links="):
            LocalPlatform().injector(d).inject(Latency(("gate-0", "node-0"), ms=10))
    finally:
        d.teardown()
