"""A newcomer's first hour (issue 16): `pytest -m e2e` from the root, scenario files kept elsewhere,
SIGTERM during deploy, no empty run directories, a concise `run --help`, `--keep-stack` + `down`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from harness.platforms.local import netns
from harness.waiting import wait_until
from tests.support.need import need
from tests.support.paths import ROOT

REPO = ROOT


def _py(*args: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "GVH_RUN_DIR": ""})


def _ids(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if "::" in ln]


def test_pytest_m_e2e_at_the_root_collects_every_scenario() -> None:
    root = _py("-m", "pytest", "-m", "e2e", "--collect-only", "-q")
    assert root.returncode == 0, root.stdout[-2000:] + root.stderr[-2000:]
    every = _py("-m", "pytest", "scenarios", "--collect-only", "-q")
    assert _ids(root.stdout) == _ids(every.stdout) and len(_ids(every.stdout)) > 20
    assert all(i.startswith("scenarios/") for i in _ids(root.stdout))
    families = {m.group(1) for m in re.finditer(r"scenarios/test_(\w+)\.py", root.stdout)}
    assert {"conformance", "load", "chaos", "partitions", "restarts"} <= families
    own = _py("-m", "pytest", "tests", "--collect-only", "-q", "-m", "e2e")
    assert _ids(own.stdout) == []  # `pytest tests` stays the harness's own tests


SCENARIO_ELSEWHERE = '''
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


@pytest.mark.conformance
@pytest.mark.load
@pytest.mark.k8s
def test_uses_the_harness(settings):
    assert settings.platform == "local"
'''


def test_scenario_file_outside_the_repository_has_no_marker_warning(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(SCENARIO_ELSEWHERE)
    res = _py("-m", "pytest", "-W", "error::pytest.PytestUnknownMarkWarning", "-p", "no:cacheprovider",
              "-p", "no:randomly", "test_mine.py", cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "PytestUnknownMarkWarning" not in res.stdout + res.stderr
    assert "1 passed" in res.stdout


def test_run_that_selects_nothing_leaves_no_run_directory(tmp_path: Path) -> None:
    res = _py("-m", "harness.cli", "run", "-k", "zz_no_scenario_has_this_name", "--artifacts", str(tmp_path))
    assert res.returncode == 5
    assert not any((tmp_path / "runs").glob("*")) and not (tmp_path / "latest").exists()


def test_run_help_is_concise_and_ours() -> None:
    res = _py("-m", "harness.cli", "run", "--help")
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    assert lines[0].startswith("usage: goverse-harness run") and len(lines) < 60
    assert lines.index("goverse-harness options:") < lines.index("common pytest options:")
    assert "--bug" in res.stdout and "--keep-stack" in res.stdout and "locust" not in res.stdout
    bad = _py("-m", "harness.cli", "run", "--no-such-flag")
    assert bad.returncode == 4 and "goverse-harness run: error: unrecognized arguments: --no-such-flag" in bad.stderr
    assert "pytest.main()" not in bad.stderr


def _owned_by(pid: int) -> str | None:
    if not netns.OWNERS_DIR.is_dir():
        return None
    for mark in netns.OWNERS_DIR.iterdir():
        if mark.read_text().strip() == str(pid):
            return mark.name
    return None


@pytest.mark.integration
@pytest.mark.slow
def test_sigterm_to_the_process_group_during_deploy_leaves_nothing(tmp_path: Path) -> None:
    """What CI cancellation and `timeout` do: SIGTERM to the whole group, here while the stack deploys."""
    need(os.geteuid() == 0, "needs root for network namespaces")
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "-k", "sigkill and one-node",
                             "-p", "no:randomly", "--artifacts", str(tmp_path)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "GVH_RUN_DIR": ""})
    try:
        wait_until(lambda: _owned_by(proc.pid) is not None or proc.poll() is not None, 120,
                   "the run to create its network namespaces")
        prefix = _owned_by(proc.pid)
        assert prefix and proc.poll() is None
        stack_dirs = [d for d in Path("/tmp").glob("gvh-stack-*")
                      if (d / ".owner").exists() and (d / ".owner").read_text().strip() == str(proc.pid)]
        children = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    assert "Traceback" not in out, out[-3000:]
    assert netns.leftovers(prefix) == [] and _owned_by(proc.pid) is None
    assert [d for d in stack_dirs if d.exists()] == []
    assert [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []


@pytest.mark.integration
@pytest.mark.slow
def test_keep_stack_keeps_a_working_stack_until_down(tmp_path: Path) -> None:
    need(os.geteuid() == 0, "needs root for network namespaces")
    from harness.platforms.local.keep import kept_stacks

    up = _py("-m", "harness.cli", "up", "--keep-stack", "--nodes", "1", "--gates", "1", "--shards", "8",
             "--artifacts", str(tmp_path), timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    prefix = re.search(r"goverse-harness down (gvh[0-9a-f]+)", up.stdout)
    assert prefix, up.stdout
    try:
        kept = next(k for k in kept_stacks() if k["prefix"] == prefix.group(1))
        gate = kept["gates"][0]
        import requests

        from harness.cli import _INCREMENT_5

        def increment() -> int:
            return requests.post(f"{gate}/api/v1/objects/call/Counter/Counter-kept/Increment",
                                 json={"request": _INCREMENT_5}, timeout=10).status_code

        assert increment() == 200  # the stack serves calls after `up` exited
        assert prefix.group(1) not in _py("-m", "harness.cli", "cleanup").stdout  # sweeps spare it
        assert increment() == 200
    finally:
        down = _py("-m", "harness.cli", "down", prefix.group(1))
    assert down.returncode == 0 and "process gate-0" in down.stdout, down.stdout + down.stderr
    assert netns.leftovers(prefix.group(1)) == []
    assert all(not psutil.pid_exists(int(str(p["pid"]))) or psutil.Process(int(str(p["pid"]))).create_time()
               != p["start"] for p in kept["processes"])
    assert not Path(kept["stack_dir"]).exists()


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: kind-a, context: {cluster: c, user: u}}, {name: prod, context: {cluster: c, user: u}}]
current-context: kind-a
"""


def test_a_missing_kube_context_is_named_as_missing_not_as_unsafe(tmp_path: Path) -> None:
    from harness.platforms.kubernetes import guard
    from harness.platforms.kubernetes.platform import KubernetesOptions, KubernetesPlatform

    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    for ctx, message in (("kind-typo", r"no context 'kind-typo' in the kubeconfig \(it has: kind-a, prod\)"),
                         ("prod", "does not look like a test cluster")):
        platform = KubernetesPlatform(KubernetesOptions(provider="existing", context=ctx,
                                                        kubeconfig=str(tmp_path / "kubeconfig")))
        with pytest.raises(guard.UnsafeContext, match=message):
            platform._connect(tmp_path)


@pytest.mark.integration
@pytest.mark.slow
def test_up_takes_runs_options_prints_addresses_and_ends_on_sigterm(tmp_path: Path) -> None:
    need(os.geteuid() == 0, "needs root for network namespaces")
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "up", "--stack", "reference", "--nodes", "1",
                             "--gates", "1", "--shards", "8", "--seed", "7", "--artifacts", str(tmp_path)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "press Ctrl-C" in line:
                break
        prefix = _owned_by(proc.pid)
        assert prefix, "".join(lines)
        os.killpg(proc.pid, signal.SIGTERM)
        out = "".join(lines) + proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert re.search(r"gate-0 +http://\S+ +ops http://\S+ \(/healthz /ready /metrics\)", out), out
    assert "password in " in out and "pg-password" in out and "password=***" in out
    assert out.rstrip().endswith("done: stack removed") and "Traceback" not in out, out[-2000:]
    assert proc.returncode == 0
    assert netns.leftovers(prefix) == [] and not (tmp_path / "runs").exists()  # `up` is not a run
