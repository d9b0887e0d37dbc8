"""Nothing of a run survives it: Ctrl-C unwinds every fault primitive, and the sweeper removes what a
SIGKILLed run left behind (namespaces, veths, bridge, nft rules, cgroups, mounts, loop devices,
FUSE daemons, proxy listeners)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness import random as hrand
from harness.platforms.local import cgroups, diskfault, netns
from harness.platforms.local.capabilities import detect
from harness.platforms.local.sweep import dead_stack_dirs, sweep_dead_runs
from harness.waiting import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces, cgroups and mounts need root"),
]

CHILD = r"""
import subprocess, sys
from pathlib import Path
from harness.platforms.local.cgroups import CpuLimit, MemoryLimit
from harness.platforms.local.diskfault import FaultFS, SmallFilesystem
from harness.platforms.local.faultproxy import FaultProxy
from harness.platforms.local.firewall import Partitioner
from harness.platforms.local.netns import Network

prefix, tmp, use_fuse = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1"
sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
(tmp / "src").mkdir()
try:
    with Network(prefix) as net, FaultProxy() as fp:
        a, b = net.add_host("a"), net.add_host("b")
        listen = fp.add_link("a->b", (b.ip, 7000), listen=(net.bridge_ip, 0))
        part = Partitioner(net)
        part.apply({"a": {"b"}, "b": {"a"}})
        with CpuLimit(prefix, "s", sleeper.pid, quota=0.5), \
             MemoryLimit(prefix, "s", sleeper.pid, limit_mb=64), \
             SmallFilesystem(prefix, tmp / f"{prefix}-disk", size_mb=8, kind="ext4", workdir=tmp):
            fuse = FaultFS(prefix, tmp / "src", tmp / f"{prefix}-fuse").mount() if use_fuse else None
            try:
                print("ready", listen[0], listen[1], sleeper.pid, flush=True)
                sys.stdin.readline()
            finally:
                if fuse is not None:
                    fuse.unmount()
finally:
    sleeper.kill()
"""


def everything_of(prefix: str) -> list[str]:
    left = netns.leftovers(prefix) + diskfault.leftovers(prefix)
    left += [f"cgroup {g}" for g in cgroups.find_groups(prefix)]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    left += [f"nft {line}" for line in tables.splitlines() if prefix in line]
    return left


def start_child(prefix: str, tmp: Path) -> tuple[subprocess.Popen[str], tuple[str, int], int]:
    use_fuse = "1" if detect()["fuse"][0] else "0"
    child = subprocess.Popen([sys.executable, "-c", CHILD, prefix, str(tmp), use_fuse],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             # a suite started in the background by a non-interactive shell inherits SIGINT
                             # as ignored (and the child with it): give the child a default SIGINT
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert child.stdout is not None
    line = child.stdout.readline().split()
    assert line and line[0] == "ready", f"child failed to set up (rc={child.poll()})"
    found = everything_of(prefix)
    assert any(x.startswith("netns") for x in found) and any(x.startswith("cgroup") for x in found)
    assert any(x.startswith("mount") for x in found)
    return child, (line[1], int(line[2])), int(line[3])


def test_sigint_unwinds_every_primitive(tmp_path: Path) -> None:
    prefix = hrand.run_prefix()
    child, proxy, sleeper = start_child(prefix, tmp_path)
    child.send_signal(signal.SIGINT)  # Ctrl-C
    assert child.wait(30) != 0
    assert everything_of(prefix) == []
    with pytest.raises(OSError):
        socket.create_connection(proxy, timeout=1).close()
    with pytest.raises(ProcessLookupError):
        os.kill(sleeper, 0)


def test_sweeper_removes_what_a_killed_run_left(tmp_path: Path) -> None:
    prefix = hrand.run_prefix()
    child, _, sleeper = start_child(prefix, tmp_path)
    child.kill()  # no chance to clean up
    child.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.kill(sleeper, signal.SIGKILL)  # the stand-in for a stack process; the platform reaps those
    assert everything_of(prefix) != []
    assert prefix in netns.dead_prefixes()  # its owner is gone: safe to sweep
    swept = sweep_dead_runs(tag=prefix)  # what the next run's session start (and `cleanup`) does
    assert any(x.startswith("netns") for x in swept[prefix])
    # a loop device whose file was deleted detaches lazily (autoclear): wait for it, with a deadline
    wait_until(lambda: everything_of(prefix) == [], 30, f"{prefix}'s leftovers to be gone",
               describe=lambda: str(everything_of(prefix)))
    assert prefix not in netns.dead_prefixes()


def test_sweeper_spares_live_runs_and_removes_dead_stack_dirs(tmp_path: Path) -> None:
    prefix = hrand.run_prefix()
    child, _, sleeper = start_child(prefix, tmp_path)
    try:
        assert prefix not in sweep_dead_runs(tag=prefix)
        assert everything_of(prefix) != []  # the run is alive: untouched
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(30)
    assert everything_of(prefix) == []
    dead = subprocess.Popen(["true"])
    dead.wait()
    for name, pid in (("gvh-stack-dead", dead.pid), ("gvh-stack-live", os.getpid())):
        (tmp_path / name).mkdir()
        (tmp_path / name / ".owner").write_text(f"{pid}\n")
    (tmp_path / "gvh-stack-unowned").mkdir()
    assert dead_stack_dirs(tmp_path) == [tmp_path / "gvh-stack-dead"]
