"""`goverse-harness explore` end to end: bad input is one line naming the option, a short exploration on
a real stack runs the generator's schedule and saves its summary, and Ctrl-C in the middle of a fault
leaves nothing behind (no process, namespace, rule or stack directory)."""

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

from harness.explore.runner import explore_main
from harness.explore.schedule import Timing, generate
from harness.waiting import wait_until
from tests.support.interrupt import ctrl_c, reaped
from tests.support.paths import ROOT

REPO = ROOT
TOPOLOGY = {"node-0": "node", "node-1": "node", "node-2": "node", "gate-0": "gate", "gate-1": "gate",
            "etcd-0": "etcd", "etcd-1": "etcd", "etcd-2": "etcd", "postgres": "postgres", "inspector": "inspector"}


@pytest.mark.parametrize(("argv", "message"), [
    (["--budget", "ten minutes"], "--budget: 'ten minutes' is not a duration"),
    (["--budget", "0s"], "--budget: must be more than 0 seconds"),
    (["--faults", "kill,teleport"], "--faults: unknown fault kind(s) teleport; allowed: kill, pause"),
    (["--bug", "no-such-bug"], "--bug: unknown seeded bug 'no-such-bug'; known: ack-before-persist"),
])
def test_bad_input_is_one_line_naming_the_option(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 argv: list[str], message: str) -> None:
    assert explore_main([*argv, "--artifacts", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("goverse-harness explore: ") and message in err and "\n" not in err, err
    assert not any(tmp_path.iterdir()), "nothing may be started or written on bad input"


def test_replay_of_something_that_is_no_failure_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert explore_main(["--replay", str(tmp_path), "--artifacts", str(tmp_path / "a")]) == 2
    assert "--replay: " in capsys.readouterr().err and not (tmp_path / "a").exists()


def _explore(artifacts: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "explore", *args, "--artifacts", str(artifacts)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "GVH_RUN_DIR": ""},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # see test_chaos_cleanup.start_run
    )


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and cgroups")


@pytest.mark.integration
@pytest.mark.slow
@needs_root
def test_a_short_exploration_runs_the_generated_schedule(tmp_path: Path) -> None:
    proc = _explore(tmp_path, "--seed", "3", "--budget", "1s", "--faults", "kill")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode in (0, 1), out[-3000:]
    summary = json.loads(next(tmp_path.glob("explore/*/explore.json")).read_text())
    assert summary["seed"] == 3 and summary["schedules"] == 1 and summary["kinds"] == ["kill"], summary
    ran = json.loads(next(tmp_path.glob("explore/*/run/runs/*/*segment-000/schedule.json")).read_text())
    assert ran == generate(3, 0, TOPOLOGY, ("kill",), Timing(), ("node-etcd", "gate-etcd")).to_dict()
    history = next(tmp_path.glob("explore/*/run/runs/*/*segment-000/history.jsonl")).read_text()
    assert '"type":"nemesis"' in history.replace(" ", "") and '"kind":"kill"' in history.replace(" ", "")
    assert "explore: 1 schedules" in out and (("no failure found" in out) == (proc.returncode == 0))


def _fault_active(artifacts: Path) -> bool:
    for hist in artifacts.glob("explore/*/run/runs/*/*/history.jsonl"):
        text = hist.read_text(encoding="utf-8").replace(" ", "")
        if text.count('"f":"start"') > text.count('"f":"stop"'):
            return True
    return False


@pytest.mark.integration
@pytest.mark.slow
@needs_root
def test_ctrl_c_mid_fault_leaves_nothing_behind(tmp_path: Path) -> None:
    proc = _explore(tmp_path, "--seed", "4", "--budget", "5m", "--faults", "pause,partition")
    with reaped(proc):
        wait_until(lambda: _fault_active(tmp_path) or proc.poll() is not None, 300, "a fault of the schedule to hold")
        assert proc.poll() is None, f"explore ended before a fault: {proc.stdout.read() if proc.stdout else ''}"
        header = next(iter(tmp_path.glob("explore/*/run/runs/*/stacks/*/logs/node-0.log"))).read_text().splitlines()[0]
        ns = re.search(r"ip netns exec (gvh[0-9a-f]+)-node-0", header)
        stack_dir = re.search(r"--config (\S+)/goverse\.yaml", header)
        assert ns and stack_dir, header
        prefix, sdir = ns.group(1), stack_dir.group(1)
        assert prefix in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        out, _ = ctrl_c(proc, timeout=180)
    assert proc.returncode == 130, out[-3000:]
    assert "goverse-harness explore: interrupted" in out, out[-2000:]
    assert prefix not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    left = [f"{p.info['pid']}: {' '.join(p.info.get('cmdline') or [])[:120]}"
            for p in psutil.process_iter(["pid", "cmdline"])
            if prefix in " ".join(p.info.get("cmdline") or []) or sdir in " ".join(p.info.get("cmdline") or [])]
    assert not left, f"processes left behind: {left}"
    assert not Path(sdir).exists(), f"stack directory {sdir} left behind"
