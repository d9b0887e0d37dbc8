"""The node pods' PostgreSQL fault proxy on Kubernetes: the manifest change a run renders (kustomize,
the seed policy, strict schemas) and the sidecar itself, run as the real process the pod runs
(``python -m harness.platforms.kubernetes.pgproxy``) in front of a real TCP server, controlled over
its HTTP port as the injector controls it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.platforms.base import PlatformError, StackSpec
from harness.platforms.kubernetes import k8sschema, pgproxy, pgproxy_wiring, policy, render, stackconfig
from harness.ports import free_port
from harness.waiting import wait_until
from tests.support.echo import EchoServer

RUN_IMAGE = "goverse-harness/refstack:some-branch"
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not on PATH")


def _render(tmp_path: Path, pg_proxy: bool, stack: str = "reference") -> list[dict]:
    opts = render.RunOptions(run_id="abc123", platform="kind", stack=stack, pg_proxy=pg_proxy,
                             images={render.REFSTACK_IMAGE: RUN_IMAGE} if stack == "reference" else {})
    config = stackconfig.stack_config(StackSpec(stack=stack))  # type: ignore[arg-type]
    return render.kustomize_build(render.write_run_kustomization(tmp_path, opts, config))


def _node_pod(docs: list[dict]) -> dict:
    sts = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "goverse-node")
    return sts["spec"]["template"]["spec"]


# ---- the manifest change -------------------------------------------------------------------------------

@needs_kubectl
def test_wired_run_puts_every_node_session_through_the_sidecar(tmp_path: Path) -> None:
    docs = _render(tmp_path, pg_proxy=True)
    pod = _node_pod(docs)
    (sidecar,) = [c for c in pod["initContainers"] if c["name"] == pgproxy_wiring.CONTAINER]
    assert sidecar["restartPolicy"] == "Always"  # a native sidecar: started and probed before the node
    assert sidecar["image"] == RUN_IMAGE  # the run's refstack image, as the node's
    assert sidecar["imagePullPolicy"] == "IfNotPresent"  # side-loaded, never pulled
    assert sidecar["command"] == ["python", "-m", "harness.platforms.kubernetes.pgproxy"]
    assert "goverse-postgres:5432" in sidecar["args"]
    assert sidecar["startupProbe"]["httpGet"]["port"] == pgproxy.CONTROL_PORT
    node = next(c for c in pod["containers"] if c["name"] == "node")
    env = {e["name"]: e.get("value") for e in node["env"]}
    assert env["GOVERSE_POSTGRES_HOST"] == "127.0.0.1"
    assert env["GOVERSE_POSTGRES_PORT"] == str(pgproxy.LISTEN_PORT)
    assert "GOVERSE_POSTGRES_USER" in env  # merged into the stack's env, not replacing it
    assert pgproxy_wiring.wired({"spec": {"template": {"spec": pod}}})


@needs_kubectl
def test_wired_run_meets_the_seed_policy_and_validates_strictly(tmp_path: Path) -> None:
    docs = _render(tmp_path, pg_proxy=True)
    assert policy.violations(docs) == []
    sts = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "goverse-node")
    problems = {v: k8sschema.errors(sts, v, strict=True) for v in k8sschema.SUPPORTED_VERSIONS}
    assert not any(problems.values()), problems


@needs_kubectl
def test_unwired_run_has_no_sidecar_and_the_config_file_address(tmp_path: Path) -> None:
    pod = _node_pod(_render(tmp_path, pg_proxy=False))
    assert not any(c["name"] == pgproxy_wiring.CONTAINER for c in pod.get("initContainers") or [])
    node = next(c for c in pod["containers"] if c["name"] == "node")
    assert "GOVERSE_POSTGRES_HOST" not in {e["name"] for e in node["env"]}
    assert not pgproxy_wiring.wired({"spec": {"template": {"spec": pod}}})


def test_the_goverse_stack_is_never_wired() -> None:
    with pytest.raises(ValueError, match="reference stack only"):
        render.run_kustomization(render.RunOptions(run_id="abc123", stack="goverse", pg_proxy=True), "../x")


# ---- the toxic codec (pure) ------------------------------------------------------------------------------

@pytest.mark.parametrize("doc,field", [
    ({"kind": "latency"}, "'ms'"),
    ({"kind": "latency", "ms": -1}, "'ms'"),
    ({"kind": "latency", "ms": True}, "'ms'"),
    ({"kind": "latency", "ms": 10, "jitter_ms": "x"}, "'jitter_ms'"),
    ({"kind": "latency", "ms": 10, "direction": "sideways"}, "'direction'"),
    ({"kind": "bandwidth"}, "'kind'"),
    ([1], "JSON object"),
])
def test_bad_toxic_is_one_clear_error(doc: object, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        pgproxy.toxic_from_json(doc)


def test_toxic_round_trip() -> None:
    t = pgproxy.toxic_from_json({"kind": "latency", "ms": 200, "jitter_ms": 5, "direction": "both"})
    assert pgproxy.toxic_to_json(t) == {"kind": "latency", "ms": 200.0, "jitter_ms": 5.0, "direction": "both"}
    assert pgproxy.toxic_to_json(pgproxy.toxic_from_json({"kind": "timeout"}))["kind"] == "timeout"
    assert pgproxy.toxic_to_json(pgproxy.toxic_from_json({"kind": "reset"}))["kind"] == "reset"


# ---- the sidecar as a real process -----------------------------------------------------------------------

class Sidecar:
    def __init__(self, proc: subprocess.Popen[str], listen: tuple[str, int], control: int) -> None:
        self.proc, self.listen = proc, listen
        self.ctl = pgproxy_wiring.SidecarLink("node-0", f"http://127.0.0.1:{control}", timeout=5)


@pytest.fixture
def sidecar() -> Iterator[Sidecar]:
    echo = EchoServer()
    listen, control = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    proc = subprocess.Popen([sys.executable, "-m", "harness.platforms.kubernetes.pgproxy",
                             "--listen", f"127.0.0.1:{listen}", "--upstream", f"{echo.addr[0]}:{echo.addr[1]}",
                             "--control", f"127.0.0.1:{control}"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    side = Sidecar(proc, ("127.0.0.1", listen), control)

    def up() -> bool:
        try:
            return side.ctl.state() is not None
        except PlatformError:
            return False
    try:
        wait_until(up, 30, "the pg-proxy sidecar's control port", interval=0.05)
        yield side
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        echo.close()


def _round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    t0 = time.monotonic()
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        got += chunk
    assert got == payload
    return time.monotonic() - t0


def test_sidecar_delays_an_open_pooled_connection_and_heals(sidecar: Sidecar) -> None:
    with socket.create_connection(sidecar.listen, timeout=5) as s:
        idle = _round_trip(s)  # the connection is open before the fault: a pooled session
        state = sidecar.ctl.set_toxic({"kind": "latency", "ms": 200, "direction": "upstream"})
        assert state["toxics"] == [{"kind": "latency", "ms": 200.0, "jitter_ms": 0.0, "direction": "upstream"}]
        slow = _round_trip(s)
        cleared = sidecar.ctl.clear()
        fast = _round_trip(s)
    assert slow >= 0.19, f"the toxic did not delay the open connection: {slow:.3f} s"
    assert idle < 0.15 and fast < 0.15, (idle, fast)
    assert cleared["toxics"] == [] and cleared["stats"]["accepted"] == 1
    assert cleared["stats"]["bytes_up"] == 8 and cleared["stats"]["bytes_down"] == 8  # two round trips before


def test_sidecar_timeout_holds_then_delivers(sidecar: Sidecar) -> None:
    with socket.create_connection(sidecar.listen, timeout=5) as s:
        _round_trip(s)
        sidecar.ctl.set_toxic({"kind": "timeout"})
        s.settimeout(0.5)
        s.sendall(b"held")
        with pytest.raises(TimeoutError):
            s.recv(16)
        sidecar.ctl.clear()
        s.settimeout(5)
        assert s.recv(16) == b"held"  # kept, as TCP retransmission delivers after a healed cut


def test_sidecar_reset_aborts_open_connections(sidecar: Sidecar) -> None:
    with socket.create_connection(sidecar.listen, timeout=5) as s:
        _round_trip(s)
        state = sidecar.ctl.set_toxic({"kind": "reset"})
        with pytest.raises((ConnectionResetError, ConnectionError)):
            _round_trip(s)
    assert state["stats"]["resets"] == 1
    sidecar.ctl.clear()
    with socket.create_connection(sidecar.listen, timeout=5) as s2:
        _round_trip(s2)


def test_sidecar_refuses_a_bad_toxic_by_name(sidecar: Sidecar) -> None:
    with pytest.raises(PlatformError, match="400.*'direction'"):
        sidecar.ctl.set_toxic({"kind": "latency", "ms": 5, "direction": "sideways"})
    assert sidecar.ctl.state()["toxics"] == []


def test_sidecar_exits_cleanly_on_sigterm_and_frees_its_ports(sidecar: Sidecar) -> None:
    sidecar.proc.send_signal(signal.SIGTERM)
    assert sidecar.proc.wait(10) == 0
    with pytest.raises(OSError):
        socket.create_connection(sidecar.listen, timeout=1).close()
    with pytest.raises(PlatformError, match="unreachable"):
        sidecar.ctl.state()
