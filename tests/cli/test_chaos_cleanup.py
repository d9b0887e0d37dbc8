"""A chaos run leaves nothing behind — interrupted with Ctrl-C in the middle of a fault, or failing.

Each test runs real scenarios in a subprocess (``goverse-harness run``), first shows that the fault's
OS objects exist while it holds (so the leftover check below is able to fail), then checks that after
the run no network namespace or veth (and with them no nft/iptables rule), no rule in the root
namespace, no cgroup, no mount (PostgreSQL's small filesystem, the FUSE layer, a stressor's tmpfs),
no FUSE daemon, no fault-proxy socket and no process of the run is left.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

from harness.platforms.local import cgroups, diskfault, netns
from harness.waiting import wait_until
from tests.support.interrupt import ctrl_c, reaped
from tests.support.paths import ROOT

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces, cgroups and mounts need root"),
]
REPO = ROOT


def start_run(artifacts: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", "-m", "e2e", *args, "--artifacts", str(artifacts)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "GVH_RUN_DIR": ""},
        # a suite started in the background by a non-interactive shell inherits SIGINT as ignored,
        # and Python then never turns it into KeyboardInterrupt: give the run a default SIGINT
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def fault_active(artifacts: Path, kind: str) -> bool:
    """A nemesis start of ``kind`` without its stop in some scenario's streamed history."""
    for hist in artifacts.glob("runs/*/*/history.jsonl"):
        text = hist.read_text(encoding="utf-8")
        if f'"kind":"{kind}"' in text.replace(" ", "") and '"f":"stop"' not in text.replace(" ", ""):
            return True
    return False


class Run:
    """What identifies one run's OS objects: its prefix, its stack directory and its bridge address."""

    def __init__(self, artifacts: Path) -> None:
        header = next(iter(sorted(artifacts.glob("runs/*/stacks/*/logs/node-0.log")))).read_text().splitlines()[0]
        ns = re.search(r"ip netns exec (gvh[0-9a-f]+)-node-0", header)
        stack_dir = re.search(r"--config (\S+)/goverse\.yaml", header)
        assert ns and stack_dir, f"cannot read the run's prefix and stack dir from {header!r}"
        self.prefix, self.stack_dir = ns.group(1), stack_dir.group(1)
        config = yaml.safe_load(next(iter(artifacts.glob("runs/*/stacks/*/stack-config.yaml"))).read_text())
        self.bridge_ip = re.sub(r"\.\d+$", ".1", config["postgres"]["host"])

    def leftovers(self) -> list[str]:
        left = netns.leftovers(self.prefix) + diskfault.leftovers(self.prefix)
        left += [f"cgroup {g}" for g in cgroups.find_groups(self.prefix)]
        for tool in (["nft", "list", "ruleset"], ["iptables", "-w", "-S"]):
            out = subprocess.run(tool, capture_output=True, text=True, check=False).stdout
            if self.prefix in out:
                left.append(f"{tool[0]} rule of {self.prefix} in the root namespace")
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = " ".join(p.info.get("cmdline") or [])
            if self.prefix in cmd or self.stack_dir in cmd:
                left.append(f"process {p.info['pid']}: {cmd[:100]}")
        # a socket some process still holds (a proxy listener, a pooled connection); closed ones the
        # kernel keeps in TIME_WAIT for a minute belong to no process and are not leftovers
        left += [f"socket {c.laddr} {c.status} pid {c.pid}" for c in psutil.net_connections("inet")
                 if c.laddr and c.laddr.ip == self.bridge_ip and (c.pid is not None or c.status == "LISTEN")]
        if Path(self.stack_dir).exists():
            left.append(f"directory {self.stack_dir}")
        return left + self.rules_in_namespaces()

    def rules_in_namespaces(self) -> list[str]:
        """nft tables / iptables chains of the run inside its namespaces (a partition's drops)."""
        found = []
        for ns in netns.list_namespaces(self.prefix):
            for tool in (["nft", "list", "tables"], ["iptables", "-w", "-S"]):
                out = subprocess.run(["ip", "netns", "exec", ns, *tool], capture_output=True, text=True,
                                     check=False).stdout
                if self.prefix in out:
                    found.append(f"{tool[0]} rule in {ns}")
        return found


def interrupt_mid_fault(tmp_path: Path, kind: str, selection: list[str], live: str) -> None:
    proc = start_run(tmp_path, *selection)
    with reaped(proc):
        wait_until(lambda: fault_active(tmp_path, kind) or proc.poll() is not None, 180,
                   f"the scenario to inject its {kind} fault")
        assert proc.poll() is None, f"the run ended before the fault: {proc.stdout.read() if proc.stdout else ''}"
        run = Run(tmp_path)
        during = run.leftovers()
        assert any(live in item for item in during), f"no {live} while the {kind} fault held: {during}"
        assert any("LISTEN" in item for item in during), f"no fault-proxy listener seen during the run: {during}"
        assert any(item.startswith("mount") for item in during), f"no PostgreSQL disk mount seen: {during}"
        out, _ = ctrl_c(proc, timeout=120)
    assert proc.returncode != 0, "an interrupted run must not report success"
    assert "KeyboardInterrupt" in out or "Interrupted" in out or "!!!!" in out, out[-2000:]
    assert run.leftovers() == []


def test_sigint_during_memory_pressure_leaves_nothing(tmp_path: Path) -> None:
    """Mid-fault: the node's memory cgroup, the stressor process and its tmpfs exist, the supervisor
    is watching — and all of it goes, with the stack, on Ctrl-C."""
    interrupt_mid_fault(tmp_path, "memory-pressure", ["scenarios/test_chaos.py", "-k", "memory"], "cgroup")


def test_sigint_during_a_partition_leaves_nothing(tmp_path: Path) -> None:
    """Mid-fault: nft drops are installed in the namespaces (the rules go with the namespaces)."""
    interrupt_mid_fault(tmp_path, "partition", ["scenarios/test_partitions.py", "-k", "node-postgres"], "nft rule in")


def test_a_failing_run_leaves_nothing(tmp_path: Path) -> None:
    """A seeded bug makes the scenario fail (its check names the lost writes); the run still cleans up."""
    proc = start_run(tmp_path, "scenarios/test_chaos.py", "-k", "sigkill", "--bug", "ack-before-persist")
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out[-3000:]
    assert "no_lost_writes [fail]" in out or "persisted_not_behind [fail]" in out, out[-3000:]
    assert Run(tmp_path).leftovers() == []
