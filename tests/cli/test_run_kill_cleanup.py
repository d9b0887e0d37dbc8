"""SIGKILL of `goverse-harness run` mid-scenario, then `goverse-harness cleanup`: nothing of that run is
left -- no process, network namespace, veth/bridge, mount, nft table, cgroup, stack directory or record.

Why this test kills the real command and nothing else: a SIGKILLed run cannot run a single hook, so its
etcd, PostgreSQL, nodes, gates and inspector are re-parented to PID 1. Cleanup has to find them from what
the run recorded (harness.pidrecord), whatever state their namespaces are in.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from harness import pidrecord
from harness.platforms.local import cgroups, diskfault, netns
from harness.waiting import wait_until
from tests.support.need import need
from tests.support.paths import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = ROOT


def _header(run_root: Path) -> str:
    logs = sorted(run_root.glob("runs/*/stacks/*/logs/node-0.log"))
    return logs[0].read_text(encoding="utf-8").splitlines()[0] if logs else ""


def _fault_started(run_root: Path) -> bool:
    return any('"type":"nemesis"' in p.read_text(encoding="utf-8")
               for p in run_root.glob("runs/*/*/history.jsonl"))


def _still_there(entries: list[dict[str, object]]) -> list[str]:
    left = []
    for e in entries:
        try:
            p = psutil.Process(int(str(e["pid"])))
            if abs(p.create_time() - float(str(e["start"]))) < 0.05:
                left.append(f"{e['name']} {p.pid}")
        except psutil.NoSuchProcess:
            pass
    return left


def _everything_of(prefix: str, stack_dir: str) -> list[str]:
    left = netns.leftovers(prefix) + diskfault.leftovers(prefix)
    left += [f"cgroup {g}" for g in cgroups.find_groups(prefix)]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    left += [f"nft {line}" for line in tables.splitlines() if prefix in line]
    left += [f"mount {m[1]}" for m in diskfault.mounts() if stack_dir in m[1] or prefix in m[1]]
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if stack_dir in cmd or f"{prefix}-" in cmd:
            left.append(f"process {proc.info['pid']}: {cmd[:100]}")
    if Path(stack_dir).exists():
        left.append(f"dir {stack_dir}")
    return left


def test_sigkill_mid_scenario_then_cleanup_leaves_nothing(tmp_path: Path) -> None:
    need(os.geteuid() == 0, "needs root for network namespaces, cgroups and the postgres user switch")
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", "-m", "e2e", "-k", "sigkill and one-node",
         "-p", "no:randomly", "--artifacts", str(tmp_path)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "GVH_RUN_DIR": ""},
    )
    try:
        wait_until(lambda: _fault_started(tmp_path) or proc.poll() is not None, 180,
                   "the scenario to inject its fault")
        assert proc.poll() is None, "run ended before the fault"
        header = _header(tmp_path)
        stack = re.search(r"--config (\S+)/goverse\.yaml", header)
        ns = re.search(r"ip netns exec (gvh[0-9a-f]+)-node-0", header)
        assert stack and ns, f"cannot find the stack dir / namespace prefix in {header!r}"
        records = list(pidrecord.records_dir().glob(f"{proc.pid}-*.jsonl"))
        assert len(records) == 1, f"the run recorded nothing it started: {records}"
        entries = [json.loads(line) for line in records[0].read_text().splitlines()]
        assert {"etcd-0", "postgres", "node-0"} <= {e["name"] for e in entries}
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    prefix, stack_dir = ns.group(1), stack.group(1)
    orphans = _still_there(entries)
    assert orphans, "nothing survived the SIGKILL: this test would prove nothing"
    done = subprocess.run([sys.executable, "-m", "harness.cli", "cleanup"], cwd=REPO, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "process" in done.stdout and prefix in done.stdout, done.stdout
    assert _still_there(entries) == []
    assert _everything_of(prefix, stack_dir) == []
    assert not records[0].exists()
    again = subprocess.run([sys.executable, "-m", "harness.cli", "cleanup", "--dry-run"], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert prefix not in again.stdout and f"run pid {proc.pid}" not in again.stdout


OWNER = r"""
import os, sys
from harness.platforms.local.process import ManagedProcess
p = ManagedProcess("sleeper", ["sleep", "300"], sys.argv[1])
p.start()
print(p.pid, flush=True)
if sys.argv[2] == "die":
    os._exit(0)  # like SIGKILL: no exit hook runs
sys.stdin.readline()
"""


def test_end_dead_runs_ends_what_a_dead_owner_recorded_and_spares_the_living(tmp_path: Path) -> None:
    env = {**os.environ, "GVH_PROC_RECORDS": str(tmp_path / "records")}
    dead = subprocess.run([sys.executable, "-c", OWNER, str(tmp_path / "a.log"), "die"], env=env,
                          capture_output=True, text=True, check=True, timeout=60)
    orphan = psutil.Process(int(dead.stdout.split()[0]))
    live = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path / "b.log"), "live"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout is not None
        spared = psutil.Process(int(live.stdout.readline().split()[0]))
        assert orphan.is_running()  # SIGKILLed owner: its process lives on, re-parented
        where = tmp_path / "records"
        assert len(pidrecord.dead_runs(where)) == 1
        listed = pidrecord.end_dead_runs(dry_run=True, where=where)
        assert list(listed.values()) == [[f"process sleeper {orphan.pid}"]]
        assert orphan.is_running()  # a dry run ends nothing
        ended = pidrecord.end_dead_runs(where=where)
        assert list(ended.values()) == [[f"process sleeper {orphan.pid}"]]
        assert not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE
        assert spared.is_running() and len(list(where.glob("*.jsonl"))) == 1  # the live run's record stays
    finally:
        live.communicate("\n", timeout=30)
    assert not spared.is_running() or spared.status() == psutil.STATUS_ZOMBIE  # its own exit hook ended it
    assert list((tmp_path / "records").glob("*.jsonl")) == []
