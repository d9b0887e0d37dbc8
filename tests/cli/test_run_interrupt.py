"""Ctrl-C in the middle of a scenario leaves nothing behind: no stack process, no network namespace (and
with it no firewall rule), no temporary directory. This is the promise users rely on when they abort a
chaos run on their laptop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from harness.waiting import wait_until
from tests.support.interrupt import ctrl_c, reaped
from tests.support.paths import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = ROOT


def _first_log_line(run_root: Path) -> str:
    logs = sorted(run_root.glob("runs/*/stacks/*/logs/node-0.log"))
    return logs[0].read_text(encoding="utf-8").splitlines()[0] if logs else ""


def _fault_started(run_root: Path) -> bool:
    return any('"type":"nemesis"' in p.read_text(encoding="utf-8")
               for p in run_root.glob("runs/*/*/history.jsonl"))


def _processes_mentioning(needle: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if needle in cmd:
            found.append(f"{proc.info['pid']}: {cmd[:120]}")
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and postgres user switch")
def test_sigint_mid_scenario_leaves_nothing_behind(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", "-m", "e2e", "-k", "sigkill", "--artifacts", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "GVH_RUN_DIR": ""},
        # a suite started in the background by a non-interactive shell inherits SIGINT as ignored: give
        # the run a default SIGINT (as tests/cli/test_chaos_cleanup.py does)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    with reaped(proc):
        wait_until(lambda: _fault_started(tmp_path) or proc.poll() is not None, 120,
                   "the scenario to inject its fault")
        assert proc.poll() is None, f"run ended before the fault: {proc.stdout.read() if proc.stdout else ''}"
        header = _first_log_line(tmp_path)
        stack_dir = re.search(r"--config (\S+)/goverse\.yaml", header)
        netns = re.search(r"ip netns exec (gvh[0-9a-f]+)-node-0", header)
        assert stack_dir, f"cannot find the stack's temp dir in {header!r}"
        out, _ = ctrl_c(proc, timeout=90)
    assert proc.returncode != 0, "an interrupted run must not report success"
    assert not Path(stack_dir.group(1)).exists(), f"temp dir {stack_dir.group(1)} left behind"
    left = _processes_mentioning(stack_dir.group(1))
    assert not left, f"processes left behind: {left}"
    if netns:
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert netns.group(1) not in namespaces, f"namespaces left behind: {namespaces}"
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert netns.group(1) not in links, "bridge or veth left behind"
    assert "KeyboardInterrupt" in out or "Interrupted" in out or "!!!!" in out, out[-2000:]
