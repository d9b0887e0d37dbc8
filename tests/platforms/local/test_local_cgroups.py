"""cgroup CPU quota and memory limit: discovery (pure, v1/v2/hybrid) and real effect (integration)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness import random as hrand
from harness.platforms.base import Unsupported
from harness.platforms.local import cgroups
from harness.platforms.local.cgroups import CpuLimit, Hierarchy, MemoryLimit
from harness.waiting import wait_until

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_SELF = "4:memory:/process_api/abc\n1:cpu:/\n0::/\n"


def test_parse_proc_cgroup() -> None:
    got = cgroups.parse_proc_cgroup("5:cpu,cpuacct:/a\n4:memory:/b\n1:name=systemd:/s\n0::/u\n")
    assert got == {"cpu": "/a", "cpuacct": "/a", "memory": "/b", "systemd": "/s", "": "/u"}


def test_find_hierarchy_on_hybrid_prefers_v1_controllers() -> None:
    mem = cgroups.find_hierarchy("memory", HYBRID_MOUNTINFO, HYBRID_SELF)
    assert mem == Hierarchy("memory", "v1", Path("/sys/fs/cgroup/memory"), "/process_api/abc")
    cpu = cgroups.find_hierarchy("cpu", HYBRID_MOUNTINFO, HYBRID_SELF)
    assert cpu.version == "v1" and cpu.own == "/"
    assert cgroups.group_dir(mem, "gvhx-n0") == Path("/sys/fs/cgroup/memory/process_api/abc/gvhx-n0")


def test_find_hierarchy_on_pure_v2(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    info = f"30 23 0:26 / {tmp_path} rw - cgroup2 cgroup2 rw\n"
    h = cgroups.find_hierarchy("memory", info, "0::/user.slice/session-1.scope\n")
    assert h == Hierarchy("memory", "v2", tmp_path, "/user.slice/session-1.scope")
    with pytest.raises(Unsupported, match="hugetlb"):
        cgroups.find_hierarchy("hugetlb", info, "0::/\n")


def test_v2_parent_delegates_from_an_ancestor(tmp_path: Path) -> None:
    """Our own v2 group holds processes, so it cannot delegate; an ancestor that has (or can enable)
    the controller in cgroup.subtree_control is used instead."""
    (tmp_path / "cgroup.subtree_control").write_text("cpu memory\n")
    scope = tmp_path / "user.slice" / "s.scope"
    scope.mkdir(parents=True)
    (tmp_path / "user.slice" / "cgroup.subtree_control").write_text("memory\n")
    h = Hierarchy("cpu", "v2", tmp_path, "/user.slice/s.scope")
    # the parent has memory only; enabling cpu there is attempted (a plain file here accepts it)
    assert cgroups.v2_parent_for(h, ["cpu"]) == tmp_path / "user.slice"
    assert (tmp_path / "user.slice" / "cgroup.subtree_control").read_text() == "+cpu"
    h_mem = Hierarchy("memory", "v2", tmp_path, "/user.slice/s.scope")
    (tmp_path / "user.slice" / "cgroup.subtree_control").write_text("memory\n")
    assert cgroups.group_dir(h_mem, "gvhx-a") == tmp_path / "user.slice" / "gvhx-a"


def test_find_groups_and_cleanup_on_a_fake_tree(tmp_path: Path) -> None:
    (tmp_path / "a" / "gvhdead01-node-0").mkdir(parents=True)
    (tmp_path / "gvhdead01-x").mkdir()
    (tmp_path / "gvhlive99-y").mkdir()
    found = cgroups.find_groups("gvhdead01", [tmp_path])
    assert sorted(p.name for p in found) == ["gvhdead01-node-0", "gvhdead01-x"]


# --- integration -------------------------------------------------------------------------------------

cpu_ok, cpu_why = cgroups.available("cpu")
mem_ok, mem_why = cgroups.available("memory")
BUSY = "import os, sys\nif sys.argv[1] == '2': os.fork()\nwhile True: pass\n"
HOG = ("import sys\nb = []\nprint('go', flush=True)\nsys.stdin.readline()\n"
       "while True: b.append(bytearray(4 << 20))\n")


@pytest.fixture
def prefix() -> Iterator[str]:
    p = hrand.run_prefix()
    yield p
    assert cgroups.find_groups(p) == [], "cgroups left behind"


def tree_cpu(pid: int) -> float:
    total = 0.0
    for q in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        t = q.cpu_times()
        total += t.user + t.system
    return total


def cpu_stat(group: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in (group / "cpu.stat").read_text().splitlines() if line)}


def quota_of(pid: int) -> str:
    """The CFS quota of the cpu cgroup ``pid`` is in (v1 ``cpu.cfs_quota_us``; v2 ``cpu.max``)."""
    h = cgroups.find_hierarchy("cpu")
    d = cgroups.current_group(pid, h)
    assert d is not None
    f = d / ("cpu.cfs_quota_us" if h.version == "v1" else "cpu.max")
    return f.read_text().split()[0] if f.exists() else "max"


@pytest.mark.integration
@pytest.mark.skipif(not cpu_ok, reason=f"cpu cgroup unavailable: {cpu_why}")
def test_cpu_quota_throttles_the_whole_tree_and_heals(prefix: str) -> None:
    """Judged on kernel counters, not wall-clock CPU shares (which a loaded machine distorts): the
    group's throttled periods grow, the tree's CPU time (utime + stime) stays within quota × the
    periods the kernel counted, and after the heal the tree is back in a group without a quota."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY, "2"])  # the process and a forked child
    try:
        wait_until(lambda: len(psutil.Process(proc.pid).children()) == 1, 5, "busy child forked")
        origin = Path(f"/proc/{proc.pid}/cgroup").read_text()
        lim = CpuLimit(prefix, "busy", proc.pid, quota=0.2).apply()
        assert lim.group is not None and lim.group.name == f"{prefix}-busy"
        group = lim.group
        child = psutil.Process(proc.pid).children()[0].pid
        assert set(cgroups.procs(group)) == {proc.pid, child}
        s0, c0 = cpu_stat(group), tree_cpu(proc.pid)
        wait_until(lambda: cpu_stat(group)["nr_throttled"] - s0["nr_throttled"] >= 5, 30,
                   "five throttled CFS periods")
        s1, c1 = cpu_stat(group), tree_cpu(proc.pid)
        periods = s1["nr_periods"] - s0["nr_periods"]
        used = c1 - c0
        # CFS hands the group at most quota per period: 0.2 × 100 ms; +2 periods and 10 ms of tick slack
        assert used <= (periods + 2) * 0.2 * 0.1 + 0.01, (used, periods)
        assert s1["throttled_time"] > s0["throttled_time"]
        periods_, throttled = lim.throttled()
        assert throttled >= 5 and periods_ >= throttled
        lim.heal()
        lim.heal()  # idempotent
        assert Path(f"/proc/{proc.pid}/cgroup").read_text() == origin
        assert quota_of(proc.pid) in ("-1", "max")  # free again: no CFS quota on the group it is back in
    finally:
        for q in psutil.Process(proc.pid).children(recursive=True):
            q.kill()
        proc.kill()
        proc.wait()


@pytest.mark.integration
@pytest.mark.skipif(not mem_ok, reason=f"memory cgroup unavailable: {mem_why}")
def test_memory_limit_ends_in_an_oom_kill_that_is_detected(prefix: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOG], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline().strip() == "go"
        with MemoryLimit(prefix, "hog", proc.pid, limit_mb=48) as lim:
            assert isinstance(lim, MemoryLimit) and lim.oom_kills() == 0
            proc.stdin.write("\n")
            proc.stdin.flush()
            assert proc.wait(30) == -9  # SIGKILLed by the OOM killer
            assert lim.oom_kills() >= 1
        # the kernel log names the pid too (what the Kubernetes heal reads once the group is gone)
        from harness.platforms.local.memfault import kernel_oom_kills
        if subprocess.run(["dmesg"], capture_output=True, check=False).returncode == 0:
            assert kernel_oom_kills({proc.pid}) == [proc.pid]
            assert kernel_oom_kills({os.getpid()}) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.mark.integration
@pytest.mark.skipif(not mem_ok, reason=f"memory cgroup unavailable: {mem_why}")
def test_a_process_under_the_limit_keeps_running(prefix: str) -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        with MemoryLimit(prefix, "small", proc.pid, limit_mb=32) as lim:
            assert isinstance(lim, MemoryLimit)
            assert lim.usage_bytes() < lim.limit_bytes
            assert proc.poll() is None and lim.oom_kills() == 0
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.integration
@pytest.mark.skipif(not (cpu_ok and mem_ok), reason=f"cgroups unavailable: {cpu_why}; {mem_why}")
def test_cleanup_leftovers_of_a_crashed_run(prefix: str) -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        CpuLimit(prefix, "a", proc.pid, quota=0.5).apply()
        MemoryLimit(prefix, "a", proc.pid, limit_mb=64).apply()
        # crash: nobody heals
        assert len(cgroups.find_groups(prefix)) == 2
        removed = cgroups.cleanup_leftovers(prefix)
        assert len(removed) == 2 and cgroups.find_groups(prefix) == []
        assert proc.poll() is None  # the process survives, moved back up
        assert prefix not in Path(f"/proc/{proc.pid}/cgroup").read_text()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.integration
@pytest.mark.skipif(not cpu_ok, reason=f"cpu cgroup unavailable: {cpu_why}")
def test_cpu_weight_puts_the_tree_first_and_heals(prefix: str) -> None:
    """``--observer-priority``: the process and its children go into a group of the largest weight
    the kernel accepts, and come back out (the group gone) on heal."""
    proc = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; "
                             "subprocess.run(['sleep', '60']); sys.exit(0)"])
    try:
        wait_until(lambda: len(psutil.Process(proc.pid).children()) == 1, 5, "sleep child started")
        origin = Path(f"/proc/{proc.pid}/cgroup").read_text()
        w = cgroups.CpuWeight(prefix, "observer", proc.pid).apply()
        assert w.group is not None and w.group.name == f"{prefix}-observer"
        group = w.group
        child = psutil.Process(proc.pid).children()[0].pid
        assert set(cgroups.procs(group)) == {proc.pid, child}
        h = cgroups.find_hierarchy("cpu")
        assert w.weight() == cgroups.MAX_CPU_WEIGHT[h.version]
        w.heal()
        w.heal()  # idempotent
        assert Path(f"/proc/{proc.pid}/cgroup").read_text() == origin
        assert not group.exists() and cgroups.find_groups(prefix) == []
        assert w.weight() < cgroups.MAX_CPU_WEIGHT[h.version]
    finally:
        for q in psutil.Process(proc.pid).children(recursive=True):
            q.kill()
        proc.kill()
        proc.wait()


def test_sweep_dead_observers_removes_only_groups_of_dead_harnesses(tmp_path: Path) -> None:
    alive = tmp_path / "cpu" / f"{cgroups.OBSERVER_PREFIX}-{os.getpid()}"
    dead = tmp_path / "cpu" / "user.slice" / f"{cgroups.OBSERVER_PREFIX}-999999999"
    other = tmp_path / "cpu" / "gvh1234-node-0"
    for d in (alive, dead, other):
        d.mkdir(parents=True)
    assert cgroups.sweep_dead_observers([tmp_path / "cpu"]) == [f"cgroup {dead}"]
    assert alive.exists() and other.exists() and not dead.exists()


def test_needs_a_live_pid() -> None:
    if os.geteuid() != 0 or not cpu_ok:
        pytest.skip(f"cpu cgroup unavailable: {cpu_why}")
    p = hrand.run_prefix()
    with pytest.raises(Exception, match="not running"):
        CpuLimit(p, "ghost", 999_999_999, quota=0.5).apply()
    assert cgroups.find_groups(p) == []


def test_parse_oom_kills_reads_the_memory_cgroup_killer_lines() -> None:
    from harness.platforms.local.memfault import parse_oom_kills

    log = ("[23804.615616] Memory cgroup out of memory: Killed process 25119 (python) total-vm:222724kB, "
           "anon-rss:38016kB, UID:65532 pgtables:196kB oom_score_adj:1000\n"
           "[23804.62] gvh0 (unregistering): left promiscuous mode\n"
           "[23804.621016] Memory cgroup out of memory: Killed process 26281 (python3) total-vm:17624kB\n"
           "[23805.1] Out of memory: Killed process 999 (x)\n")  # a global OOM kill: not ours
    assert parse_oom_kills(log) == [25119, 26281]
    assert parse_oom_kills("") == []


class _Recorded:
    """A limit whose apply/heal only record (or fail): the bookkeeping of apply_limits/heal_limits is
    pure and shared by both interpreters; the real limits are exercised by the tests above."""

    def __init__(self, name: str, log: list[str], fail_apply: bool = False, fail_heal: bool = False) -> None:
        self.name, self.log, self.fail_apply, self.fail_heal = name, log, fail_apply, fail_heal

    def apply(self) -> _Recorded:
        if self.fail_apply:
            raise OSError(f"cannot limit {self.name}")
        self.log.append(f"apply {self.name}")
        return self

    def heal(self) -> None:
        self.log.append(f"heal {self.name}")
        if self.fail_heal:
            raise OSError(f"cannot heal {self.name}")


def test_apply_limits_registers_each_and_heals_the_applied_ones_when_one_fails() -> None:
    log: list[str] = []
    registry: dict[str, object] = {"other": 1}
    ok = cgroups.apply_limits("cpu", ["a", "b"], lambda key, t: _Recorded(key, log),  # type: ignore[arg-type]
                              registry)
    assert list(ok) == ["a", "b"] and set(registry) == {"other", "cpu-a", "cpu-b"}
    log.clear()
    registry = {}
    with pytest.raises(OSError, match="cannot limit memory-b"):
        cgroups.apply_limits("memory", ["a", "b", "c"],  # type: ignore[arg-type, type-var]
                             lambda key, t: _Recorded(key, log, fail_apply=t == "b"), registry)
    assert log == ["apply memory-a", "heal memory-a"]
    assert set(registry) == {"memory-b"}  # registered before its apply failed: the teardown's heal of it is a no-op


def test_heal_limits_heals_every_one_and_names_each_that_failed() -> None:
    log: list[str] = []
    limits = {t: _Recorded(f"cpu-{t}", log, fail_heal=t in ("a", "c")) for t in ("a", "b", "c")}
    registry: dict[str, object] = {f"cpu-{t}": lim for t, lim in limits.items()}
    with pytest.raises(Exception, match=r"healing cpu limits failed: a: OSError\('cannot heal cpu-a'\); c: ") as exc:
        cgroups.heal_limits("cpu", limits, registry)  # type: ignore[arg-type]
    assert type(exc.value).__name__ == "PlatformError"
    assert log == ["heal cpu-a", "heal cpu-b", "heal cpu-c"] and registry == {}
