"""The local injector's fault kinds, each against the real primitive it drives (namespaces and nft, the
TCP fault proxy, cgroups, a small filesystem) with its effect measured, its heal proven, and the
``Unsupported`` paths giving their reasons.

The deployment is a small stand-in (``Rig``) holding exactly what ``LocalDeployment`` wires at deploy
time — the injector is duck-typed against it — so each fault is tested in seconds without a stack; the
scenarios in ``scenarios/test_partitions.py`` and ``scenarios/test_chaos.py`` drive the same code
against a real one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness import random as hrand
from harness.faults.nemesis import HEAL_LEAD_CAP_S, Nemesis
from harness.faults.spec import (
    CpuStress,
    DiskFault,
    Fault,
    Kill,
    Latency,
    MemoryPressure,
    Partition,
    Pause,
    Reset,
    Timeout,
)
from harness.history import FaultWindow, Recorder
from harness.platforms.base import Instance, Unsupported
from harness.platforms.local import cgroups, diskfault, netns
from harness.platforms.local.capabilities import detect
from harness.platforms.local.diskfault import SmallFilesystem
from harness.platforms.local.faultproxy import FaultProxy
from harness.platforms.local.firewall import Partitioner
from harness.platforms.local.injector import LocalInjector
from harness.platforms.local.netns import Network
from harness.platforms.local.process import ManagedProcess
from harness.platforms.local.services import PostgresServer
from harness.waiting import wait_until
from harness.workload.lagwatch import LagWatch
from tests.support.echo import EchoServer
from tests.support.ontime import assert_on_time, lag_watched

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces, cgroups and mounts need root")
CAPS = detect()

LISTEN = r"""
import socket, sys
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""
ECHO_PORT = 7100


class Rig:
    """What the injector needs of a deployment: instances, processes, and the deploy-time wiring."""

    def __init__(self, tmp: Path) -> None:
        self.fault_prefix = hrand.run_prefix()
        self.fault_limits: dict[str, Any] = {}
        self.fault_unwired: dict[str, str] = {}
        self.partitioner: Any = None
        self.network: Any = None
        self.proxy: Any = None
        self.postgres: Any = None
        self.pg_disk: Any = None
        self.pg_faultfs: Any = None
        self.tmp = tmp
        self.insts: dict[str, Instance] = {}
        self.procs: dict[str, ManagedProcess] = {}

    def add(self, name: str, role: str, host: str = "127.0.0.1", port: int | None = None,
            argv: list[str] | None = None) -> None:
        url = f"http://{host}:{port}" if port else None
        self.insts[name] = Instance(name, role, host, api_url=url, running=True)
        if argv:
            self.procs[name] = ManagedProcess(name, argv, self.tmp / f"{name}.log")
            self.procs[name].start()

    def instances(self, component: str | None = None) -> list[Instance]:
        return [i for i in self.insts.values() if component is None or i.component == component]

    def instance(self, name: str) -> Instance:
        return self.insts[name]

    def process(self, name: str) -> ManagedProcess:
        return self.procs[name]

    def kill(self, name: str, sig: int) -> None:
        self.procs[name].signal(sig)
        self.procs[name].wait(10)

    def pause(self, name: str) -> None:
        self.procs[name].signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.procs[name].signal(signal.SIGCONT)

    def start(self, name: str) -> None:
        old = self.procs[name]
        if not old.is_running():
            self.procs[name] = ManagedProcess(name, old.argv, old.log_path)
            self.procs[name].start()

    def capabilities(self) -> dict[str, str | None]:
        return {"latency": None if self.proxy is not None else "no fault proxy wired"}

    def close(self) -> None:
        for p in self.procs.values():
            p.kill()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()
    assert cgroups.find_groups(r.fault_prefix) == [], "a cgroup of the fault was left behind"


# ---- what cannot be applied says why ------------------------------------------------------------------
def test_partition_without_namespaces_is_unsupported_with_the_reason(rig: Rig) -> None:
    rig.fault_unwired["partition"] = "stack runs on 127.0.0.1 (no network namespaces)"
    rig.add("node-0", "node")
    with pytest.raises(Unsupported, match="127.0.0.1"):
        LocalInjector(rig).inject(Partition("isolate-node"))


def test_link_faults_only_where_a_proxy_is_wired(rig: Rig) -> None:
    rig.add("node-0", "node")
    rig.add("gate-0", "gate")
    rig.add("postgres", "postgres")
    with pytest.raises(Unsupported, match="no fault proxy wired"):
        LocalInjector(rig).inject(Latency(("node-0", "postgres"), ms=10))
    with FaultProxy() as fp:
        rig.proxy = fp
        with pytest.raises(Unsupported, match=r"gate-0 -> node-0 is a direct connection.*StackSpec\(proxy_links="):
            LocalInjector(rig).inject(Latency(("gate-0", "node-0"), ms=10))
        fp.add_link("node-0->postgres", ("127.0.0.1", 9))
        # a link the node never used (it ignored the proxy address) would make the fault a no-op
        with pytest.raises(Unsupported, match="does not connect to postgres through its fault proxy link"):
            LocalInjector(rig).inject(Timeout(("node-0", "postgres")))


def test_disk_faults_only_under_postgres_and_only_when_wired(rig: Rig) -> None:
    rig.add("node-0", "node")
    rig.add("postgres", "postgres")
    rig.fault_unwired["disk-latency"] = "libfuse is not installed"
    with pytest.raises(Unsupported, match="PostgreSQL's data directory only"):
        LocalInjector(rig).inject(DiskFault("node-0", "full"))
    with pytest.raises(Unsupported, match="disk full: not wired"):
        LocalInjector(rig).inject(DiskFault("postgres", "full"))
    with pytest.raises(Unsupported, match="libfuse is not installed"):
        LocalInjector(rig).inject(DiskFault("postgres", "latency"))


# ---- partitions ------------------------------------------------------------------------------------------
def connects(net: Network, src: str, dst: str) -> bool:
    return net.host(src).can_connect(net.host(dst).ip, ECHO_PORT, 0.6)


@contextlib.contextmanager
def listening_hosts(rig: Rig, hosts: Iterable[tuple[str, str]]) -> Iterator[Network]:
    """Hosts (name, role) in namespaces of their own, each with a TCP listener on ECHO_PORT, wired into
    ``rig`` as its network and partitioner; afterwards the listeners end, the namespaces go, and
    nothing of the run's prefix is left."""
    listeners = []
    with Network(rig.fault_prefix) as net:
        for name, role in hosts:
            h = net.add_host(name)
            rig.add(name, role, h.ip, ECHO_PORT)
            listeners.append(h.popen([sys.executable, "-c", LISTEN, h.ip, str(ECHO_PORT)],
                                     stdout=subprocess.PIPE, text=True))
        try:
            for p in listeners:
                assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            rig.network, rig.partitioner = net, Partitioner(net)
            yield net
        finally:
            for p in listeners:
                p.kill()
                p.wait()
    assert netns.leftovers(rig.fault_prefix) == []


@pytest.mark.integration
@root_only
@pytest.mark.skipif(not CAPS["fault:partition"][0], reason=CAPS["fault:partition"][1])
def test_partition_cuts_exactly_the_shape_and_heals_with_evidence(rig: Rig) -> None:
    with listening_hosts(rig, (("node-0", "node"), ("node-1", "node"), ("postgres", "postgres"))) as net:
        injected = LocalInjector(rig).inject(Partition("node-postgres", target="node-0"))
        assert injected.targets == ["node-0"]
        assert injected.detail["grudge"] == {"node-0": ["postgres"], "postgres": ["node-0"]}
        # the outcome vocabulary both platforms share (docs/faults.md "One planning step")
        assert injected.detail["victim"] == "node-0" and injected.detail["shape"] == "node-postgres"
        assert "drops in the hosts' network namespaces" in injected.detail["how"]
        assert not connects(net, "postgres", "node-0") and not connects(net, "node-0", "postgres")
        assert connects(net, "node-1", "node-0") and connects(net, "node-1", "postgres")
        assert injected.verify is not None
        evidence = injected.verify()  # the nemesis runs this on its own thread while the cut holds
        assert evidence["verified_cut"]["dropped"] is True, evidence
        assert evidence["verified_cut"]["outcome"] == "timeout"
        assert injected.heal() == {"healed": ["node-0", "postgres"]}
        assert connects(net, "postgres", "node-0") and connects(net, "node-0", "postgres")


def outcome(net: Network, src: str, dst: str) -> str:
    from harness.platforms.local.firewall import connect_from

    return connect_from(net.host(src).ns, net.host(dst).ip, ECHO_PORT, 0.3)


@pytest.mark.integration
@root_only
@pytest.mark.skipif(not CAPS["fault:partition"][0], reason=CAPS["fault:partition"][1])
def test_timeout_and_reset_on_gate_node_and_node_etcd_links_via_nft(rig: Rig) -> None:
    hosts = (("gate-0", "gate"), ("gate-1", "gate"), ("node-0", "node"), ("node-1", "node"), ("etcd-0", "etcd"))
    with listening_hosts(rig, hosts) as net:
        inj = LocalInjector(rig).inject(Timeout(("all-gates", "node-0")))
        assert inj.targets == ["gate-0", "gate-1"] and inj.detail["via"] == "nft"
        assert outcome(net, "gate-0", "node-0") == "timeout" and outcome(net, "gate-1", "node-0") == "timeout"
        assert outcome(net, "gate-0", "node-1") == "connected"  # only the asked-for link
        assert outcome(net, "node-0", "gate-0") == "connected"  # and only that direction
        inj.heal()
        assert outcome(net, "gate-0", "node-0") == "connected"

        inj = LocalInjector(rig).inject(Reset(("node-1", "etcd-0")))
        assert outcome(net, "node-1", "etcd-0").startswith("refused")  # an RST, at once
        assert outcome(net, "node-0", "etcd-0") == "connected"
        inj.heal()
        assert outcome(net, "node-1", "etcd-0") == "connected"
        assert_held_as_asked(*held(rig, Reset(("all-gates", "node-0"))))
        assert outcome(net, "gate-1", "node-0") == "connected"


def test_targeted_partition_must_name_one_node(rig: Rig) -> None:
    rig.add("node-0", "node")
    rig.add("gate-0", "gate")
    rig.partitioner = object()  # never reached: the target is refused first
    with pytest.raises(ValueError, match="cuts one node"):
        LocalInjector(rig).inject(Partition("isolate-node", target="gate-0"))
    with pytest.raises(ValueError, match="cuts one gate"):
        LocalInjector(rig).inject(Partition("gate-etcd", target="node-0"))


# ---- link faults through the proxy -----------------------------------------------------------------------
def round_trip(conn: socket.socket) -> float:
    t0 = time.monotonic()
    conn.sendall(b"ping")
    assert conn.recv(16) == b"ping"
    return time.monotonic() - t0


@contextlib.contextmanager
def proxied_node_postgres(rig: Rig) -> Iterator[tuple[FaultProxy, tuple[str, int]]]:
    """node-0 -> postgres through a fault proxy (an echo server as PostgreSQL), wired into ``rig``;
    yields the proxy and the address the node would connect to."""
    echo = EchoServer()
    rig.add("node-0", "node")
    rig.add("postgres", "postgres")
    try:
        with FaultProxy() as fp:
            rig.proxy = fp
            yield fp, fp.add_link("node-0->postgres", echo.addr)
    finally:
        echo.close()


def test_latency_timeout_and_reset_on_the_node_postgres_link(rig: Rig) -> None:
    with proxied_node_postgres(rig) as (fp, listen):
        conn = socket.create_connection(listen, timeout=5)
        try:
            assert round_trip(conn) < 0.1
            inj = LocalInjector(rig).inject(Latency(("node-0", "postgres"), ms=200))
            assert inj.targets == ["node-0"] and inj.detail["links"] == ["node-0->postgres"]
            slow = round_trip(conn)
            assert 0.19 <= slow < 1.0, slow
            result = inj.heal()
            assert fp.toxics("node-0->postgres") == [] and result["bytes_during"]["node-0->postgres"] > 0
            assert round_trip(conn) < 0.1

            inj = LocalInjector(rig).inject(Timeout(("node-0", "postgres")))
            conn.settimeout(0.5)
            conn.sendall(b"held")
            with pytest.raises(TimeoutError):
                conn.recv(16)
            inj.heal()
            conn.settimeout(5)
            assert conn.recv(16) == b"held"  # a black hole holds data; the heal releases it

            inj = LocalInjector(rig).inject(Reset(("node-0", "postgres")))
            with pytest.raises((ConnectionError, OSError)):
                conn.sendall(b"x")
                if not conn.recv(16):
                    raise ConnectionResetError("closed")
            inj.heal()
            fresh = socket.create_connection(listen, timeout=5)
            assert round_trip(fresh) < 0.1
            fresh.close()
        finally:
            conn.close()


# ---- cgroups -------------------------------------------------------------------------------------------
BUSY = "while True: pass"


@pytest.mark.integration
@root_only
@pytest.mark.skipif(not CAPS["fault:cpu-stress"][0], reason=CAPS["fault:cpu-stress"][1])
def test_cpu_stress_throttles_the_target_and_heals(rig: Rig) -> None:
    rig.add("node-0", "node", argv=[sys.executable, "-c", BUSY])
    inj = LocalInjector(rig).inject(CpuStress("node-0", quota=0.05))
    limit = rig.fault_limits["cpu-node-0"]
    try:
        wait_until(lambda: limit.throttled()[1] >= 3, 10, "the quota to throttle the busy loop")
    finally:
        result = inj.heal()
    assert result["throttled"]["node-0"]["throttled"] >= 3
    assert rig.fault_limits == {}
    assert rig.process("node-0").is_running()


def stressors(prefix: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if f"{prefix}-stressor" in " ".join(p.info["cmdline"] or [])]


@pytest.mark.integration
@root_only
@pytest.mark.skipif(not CAPS["fault:memory-pressure"][0], reason=CAPS["fault:memory-pressure"][1])
def test_memory_pressure_ends_in_an_oom_kill_and_a_supervised_restart(rig: Rig) -> None:
    rig.add("node-0", "node", argv=["sleep", "300"])
    first = rig.process("node-0").pid
    inj = LocalInjector(rig).inject(MemoryPressure("node-0", limit_mb=32))
    try:
        wait_until(lambda: rig.process("node-0").pid != first and rig.process("node-0").is_running(), 20,
                   "the OOM-killed target to be restarted by the supervisor")
    finally:
        result = inj.heal()
    assert result["restarts"][0]["exit_code"] == -9, result  # SIGKILL from the OOM killer
    assert result["oom_kills"]["node-0"] >= 1 and result["filled_mb"]["node-0"] > 0
    assert rig.fault_limits == {} and stressors(rig.fault_prefix) == []
    assert diskfault.leftovers(rig.fault_prefix) == []  # the stressor's tmpfs is gone
    # the restarted process runs outside the limit, in the harness's own memory cgroup
    assert Path(f"/proc/{rig.process('node-0').pid}/cgroup").read_text().count(rig.fault_prefix) == 0


# ---- disk ----------------------------------------------------------------------------------------------
@pytest.mark.integration
@root_only
@pytest.mark.skipif(not CAPS["fault:disk-full"][0], reason=CAPS["fault:disk-full"][1])
def test_disk_full_then_freed(rig: Rig, tmp_path: Path) -> None:
    rig.add("postgres", "postgres")
    with SmallFilesystem(rig.fault_prefix, tmp_path / "pgdisk", size_mb=8) as disk:
        (disk.mountpoint / "data").write_bytes(b"keep")
        rig.pg_disk = disk
        inj = LocalInjector(rig).inject(DiskFault("postgres", "full"))
        assert inj.detail["free_bytes"] == 0 and inj.detail["ballast_bytes"] > 0
        with pytest.raises(OSError) as exc:
            (disk.mountpoint / "more").write_bytes(b"x" * 65536)
        assert exc.value.errno == errno.ENOSPC
        result = inj.heal()
        assert result["free_bytes"] > 4 * 2**20
        (disk.mountpoint / "more").write_bytes(b"x" * 65536)
        assert (disk.mountpoint / "data").read_bytes() == b"keep"


@pytest.mark.integration
@root_only
@pytest.mark.skipif(not CAPS["fault:disk-full"][0], reason=CAPS["fault:disk-full"][1])
def test_disk_full_heal_starts_a_postgres_that_exited_again(rig: Rig, tmp_path: Path) -> None:
    """PostgreSQL that exited under a full disk (a PANIC writing its WAL, a startup that failed on the
    full disk) is started again by the heal, on its data: explore's disk-full-postgres (5.9 s) left the
    stack without a database for every later segment."""
    rig.add("postgres", "postgres")
    with SmallFilesystem(rig.fault_prefix, tmp_path / "pgdisk", size_mb=8) as disk, \
            PostgresServer(tmp_path / "pg", password="s3cret") as pg:
        rig.pg_disk, rig.postgres = disk, pg
        inj = LocalInjector(rig).inject(DiskFault("postgres", "full"))
        pg.kill()  # as the postmaster ends under the fault
        result = inj.heal()
        assert result["postgres_restarted"] is True and pg.process.is_running()
        with pg.admin_connect() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert "postgres_restarted" not in LocalInjector(rig).inject(DiskFault("postgres", "full")).heal()


# ---- fault windows: the hold asked for is the hold recorded ---------------------------------------------
HOLD_S = 0.5
TOLERANCE_S = 0.05
HEAL_RUN_S = 0.5  # the heal's own run, generous for a loaded machine (see assert_held_as_asked)


def held(rig: Rig, fault: Fault, hold: float = HOLD_S) -> tuple[FaultWindow, LagWatch]:
    """Apply ``fault`` through the nemesis for ``hold`` seconds; the window the history records and this
    process's scheduling lag meanwhile (tests/support/ontime.py)."""
    rec = Recorder()
    with lag_watched() as lag:
        Nemesis(LocalInjector(rig), rec).apply(fault, hold=hold)
    (w,) = rec.history().faults()
    return w, lag


def assert_held_as_asked(w: FaultWindow, lag: LagWatch, hold: float = HOLD_S) -> None:
    """The nemesis heals on time — the heal begins at the recorded t_inject + the hold asked for − its lead
    (the heal's expected run, ≤ 0.1 s), ±50 ms — and the heal itself is quick, so the recorded window
    (t_inject .. t_heal) is the hold give or take the heal run's variation; both the requested and the
    actual hold are in the history.

    Why not assert the whole window within ±50 ms: the heal's own run (an nft transaction in every
    namespace, a proxy flip, a process start) takes 5-20 ms on a quiet machine but 60+ ms on a loaded
    2-core one, and a timed assertion on it flakes (CI met 0.064 s). The part the harness schedules is
    asserted here; the whole-window figures per kind are in docs/faults.md, measured on a quiet machine.
    A late heal start is excused only by as much lag as this process measurably suffered (two CPU burners
    made wake-ups 64-73 ms late)."""
    assert w.t_stop is not None and w.result is not None
    assert w.requested_hold_s == hold and w.result["requested_hold_s"] == hold
    assert w.actual_hold_s == pytest.approx(w.result["actual_hold_s"], abs=1e-6)
    began, lead = w.result["heal_began_at"], w.result["heal_lead_s"]
    assert 0 <= lead <= HEAL_LEAD_CAP_S
    assert_on_time(began - (w.t_start + hold - lead), TOLERANCE_S, lag, f"heal start {w.result}")
    assert w.t_stop - began <= HEAL_RUN_S, (began, w.t_stop, w.result)
    assert w.params["apply_began_at"] <= w.t_start and w.t_start <= began <= w.t_stop


def test_kill_window_is_the_hold(rig: Rig) -> None:
    rig.add("node-0", "node", argv=["sleep", "300"])
    w, lag = held(rig, Kill("node-0", "SIGKILL"))
    assert_held_as_asked(w, lag)
    assert rig.process("node-0").is_running()  # healed: started again
    assert w.result is not None and w.result["restarted"] == ["node-0"] and w.params["how"]


def test_pause_window_is_the_hold(rig: Rig) -> None:
    rig.add("node-0", "node", argv=["sleep", "300"])
    w, lag = held(rig, Pause("node-0"))
    assert_held_as_asked(w, lag)
    assert w.result is not None and w.result["resumed"] == ["node-0"] and w.params["how"].startswith("SIGSTOP")
    assert psutil.Process(rig.process("node-0").pid).status() != psutil.STATUS_STOPPED


@pytest.mark.parametrize("fault", [Latency(("node-0", "postgres"), ms=100), Timeout(("node-0", "postgres")),
                                   Reset(("node-0", "postgres"))], ids=str)
def test_link_fault_window_is_the_hold(rig: Rig, fault: Fault) -> None:
    with proxied_node_postgres(rig) as (fp, listen):
        socket.create_connection(listen, timeout=5).close()  # the link carries the node's traffic
        wait_until(lambda: fp.stats("node-0->postgres").accepted > 0, 5, "the proxy to count the connection")
        assert_held_as_asked(*held(rig, fault))
        assert fp.toxics("node-0->postgres") == []


@pytest.mark.integration
@root_only
@pytest.mark.skipif(not CAPS["fault:partition"][0], reason=CAPS["fault:partition"][1])
def test_partition_window_is_the_hold_and_the_cut_is_verified_outside_it(rig: Rig) -> None:
    hosts = (("node-0", "node"), ("gate-0", "gate"), ("gate-1", "gate"), ("postgres", "postgres"))
    with listening_hosts(rig, hosts) as net:
        w, lag = held(rig, Partition("gates-node", target="node-0"))
        assert_held_as_asked(w, lag)
        v = w.result["verification"]
        assert v["verified_cut"]["dropped"] is True and v["conclusive"] is True, v
        assert w.t_start <= v["started_at"] <= v["ended_at"] <= w.t_stop
        assert connects(net, "gate-0", "node-0")  # healed


@pytest.mark.integration
@root_only
@pytest.mark.skipif(not CAPS["fault:cpu-stress"][0], reason=CAPS["fault:cpu-stress"][1])
def test_cpu_stress_window_is_the_hold(rig: Rig) -> None:
    rig.add("node-0", "node", argv=[sys.executable, "-c", BUSY])
    assert_held_as_asked(*held(rig, CpuStress("node-0", quota=0.1)))
    assert rig.fault_limits == {}


@pytest.mark.integration
@root_only
@pytest.mark.skipif(not CAPS["fault:memory-pressure"][0], reason=CAPS["fault:memory-pressure"][1])
def test_memory_pressure_window_is_the_hold(rig: Rig) -> None:
    rig.add("node-0", "node", argv=["sleep", "300"])
    assert_held_as_asked(*held(rig, MemoryPressure("node-0", limit_mb=32)))
    assert rig.fault_limits == {} and stressors(rig.fault_prefix) == []


@pytest.mark.integration
@root_only
@pytest.mark.skipif(not CAPS["fault:disk-full"][0], reason=CAPS["fault:disk-full"][1])
def test_disk_full_window_is_the_hold(rig: Rig, tmp_path: Path) -> None:
    rig.add("postgres", "postgres")
    with SmallFilesystem(rig.fault_prefix, tmp_path / "pgdisk", size_mb=8) as disk:
        rig.pg_disk = disk
        assert_held_as_asked(*held(rig, DiskFault("postgres", "full")))
