"""The rolling, scaling and config procedures of LocalOperations against a fake deployment: one instance
down at a time, in rolling order, gates out of the endpoint list before they stop and back after they
are ready, the change applied at the restart, the new log level verified from lines written after the
restart only (not the old process's shutdown lines), rollback to the previous version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.checkers import Verdict
from harness.checkers.operations import config_in_effect, one_at_a_time, version_everywhere
from harness.history import Recorder
from harness.operation_kinds import ROLL_KINDS
from harness.platforms.base import Instance, PlatformError, StackSpec, Unsupported
from harness.platforms.kubernetes.platform import KubernetesOptions, KubernetesPlatform
from harness.platforms.local.deploy import LocalPlatform, _Proc
from harness.platforms.local.operations import LocalOperations


class FakeDeployment:
    """Just enough of LocalDeployment: a process table whose 'processes' write JSON log lines the way
    the reference stack does (info lines at start and at shutdown unless LOG_LEVEL=warn)."""

    def __init__(self, tmp: Path, nodes: int = 3, gates: int = 2, honour_log_level: bool = True) -> None:
        self.spec = StackSpec()
        self.network = None
        self.calls: list[tuple[str, str]] = []
        self.honour = honour_log_level
        self._procs: dict[str, _Proc] = {}
        names = [(f"node-{i}", "node") for i in range(nodes)] + [(f"gate-{i}", "gate") for i in range(gates)]
        names.append(("inspector", "inspector"))
        for name, comp in names:
            inst = Instance(name, comp, "127.0.0.1", api_url=f"http://{name}", ops_url=f"http://{name}-ops",
                            running=True, log_path=str(tmp / f"{name}.log"))
            self._procs[name] = _Proc(inst, argv=[], env={}, wrap=None)
            self._write(name, "info", "started")

    def _write(self, name: str, level: str, msg: str) -> None:
        with open(self._procs[name].instance.log_path or "", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"level": level, "msg": msg}) + "\n")

    def instances(self, component: str | None = None) -> list[Instance]:
        """As LocalDeployment's (the contract operations list running instances with)."""
        return sorted((p.instance for p in self._procs.values() if component in (None, p.instance.component)),
                      key=lambda i: i.name)

    def _level(self, name: str) -> str:
        return self._procs[name].env.get("LOG_LEVEL", "info") if self.honour else "info"

    def stop(self, name: str, graceful: bool = True) -> int:
        assert self._procs[name].instance.running, f"{name} stopped twice"
        down = [n for n, p in self._procs.items() if not p.instance.running]
        assert not down, f"{name} stopped while {down} still down"
        if self._level(name) == "info":
            self._write(name, "info", "SIGTERM: shutting down")
        self._procs[name].instance.running = False
        self.calls.append(("stop", name))
        return 0

    def start(self, name: str) -> None:
        p = self._procs[name]
        p.instance.running = True
        p.generation += 1
        self._write(name, "warning", "config: key parsed but not used")
        if self._level(name) == "info":
            self._write(name, "info", "listening")
        self.calls.append(("start", name))

    def gate_urls(self, only_running: bool = False) -> dict[str, str]:
        return {n: p.instance.api_url or "" for n, p in sorted(self._procs.items())
                if p.instance.component == "gate" and (p.instance.running or not only_running)}

    def cluster_state(self) -> Any:
        class St:
            leader = "addr-node-0"
        return St()

    def advertise_names(self) -> dict[str, str]:
        return {"addr-node-0": "node-0"}

    def wait_converged(self, timeout: float, balanced: bool = True) -> float:
        self.calls.append(("converged", ""))
        return 0.0

    def _check_alive(self) -> bool:
        return False


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDeployment:
    dep = FakeDeployment(tmp_path)

    def ready(self: LocalOperations, name: str, timeout: float) -> float:
        assert dep._procs[name].instance.running, f"waited for {name} before it was started"
        dep.calls.append(("ready", name))
        return 0.0

    def versions(self: LocalOperations) -> dict[str, list[str]]:
        return {n: [self.version_of(n)] for n in self.running()}

    monkeypatch.setattr(LocalOperations, "wait_instance_ready", ready)
    monkeypatch.setattr(LocalOperations, "versions", versions)
    return dep


def test_rolling_upgrade_one_at_a_time_in_order_with_endpoints(fake: FakeDeployment) -> None:
    rec = Recorder()
    published: list[list[str]] = []
    ops = LocalOperations(fake, rec, on_endpoints=lambda g: published.append(sorted(g)))
    result = ops.rolling_upgrade("B")
    order = [s.name for s in result.steps]
    assert order == ["node-2", "node-1", "node-0", "gate-1", "gate-0", "inspector"]  # node-0 leads: last node
    # each instance: stop, start, ready (nodes: converged) before the next stop
    stops = [i for i, c in enumerate(fake.calls) if c[0] == "stop"]
    for a, b in zip(stops, stops[1:], strict=False):
        between = [c[0] for c in fake.calls[a:b]]
        assert between[:3] == ["stop", "start", "ready"], between
    assert all(fake._procs[n].version == "B" for n in order)
    # gates leave the endpoint list before they stop and are back once ready
    assert published == [["gate-0"], ["gate-0", "gate-1"], ["gate-1"], ["gate-0", "gate-1"]]
    h = rec.history()
    assert one_at_a_time(ROLL_KINDS)(h).verdict is Verdict.PASS
    assert version_everywhere()(h).verdict is Verdict.PASS
    assert [w.target for w in h.faults()] == order


def test_rollback_returns_to_the_previous_version(fake: FakeDeployment) -> None:
    rec = Recorder()
    ops = LocalOperations(fake, rec)
    ops.rolling_upgrade("B")
    back = ops.rollback()
    assert back.kind == "rollback"
    assert {ops.version_of(n) for n in ops.running()} == {"A"}
    h = rec.history()
    assert [s.value["expected"] for s in h.samples("versions")] == ["B", "A"]
    assert version_everywhere()(h).verdict is Verdict.PASS
    with pytest.raises(PlatformError, match="previous version"):
        ops.rollback()


def test_update_config_verified_from_lines_after_each_restart(fake: FakeDeployment) -> None:
    rec = Recorder()
    ops = LocalOperations(fake, rec)
    roll = ops.update_config("LOG_LEVEL", "warn")
    assert all(fake._procs[n].env["LOG_LEVEL"] == "warn" for n in ops.running())
    assert all(v["ok"] for v in roll.verified.values()), roll.verified  # the shutdown info lines don't count
    assert config_in_effect()(rec.history()).verdict is Verdict.PASS


def test_update_config_not_in_effect_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dep = FakeDeployment(tmp_path, honour_log_level=False)  # processes ignore LOG_LEVEL
    monkeypatch.setattr(LocalOperations, "wait_instance_ready", lambda self, name, timeout: 0.0)
    rec = Recorder()
    roll = LocalOperations(dep, rec).update_config("LOG_LEVEL", "warn")
    assert not any(v["ok"] for v in roll.verified.values())
    c = config_in_effect()(rec.history())
    assert c.verdict is Verdict.FAIL and "6 of 6" in c.detail


def test_update_config_refuses_file_settings(fake: FakeDeployment) -> None:
    with pytest.raises(Unsupported):
        LocalOperations(fake).update_config("cluster.management_tick", "1s")


def test_upgrade_version_must_be_a_plain_tag(fake: FakeDeployment) -> None:
    with pytest.raises(ValueError):
        LocalOperations(fake).rolling_upgrade("B; rm -rf /")


def test_operations_of_another_platforms_deployment_is_unsupported(fake: FakeDeployment) -> None:
    with pytest.raises(Unsupported, match="cannot operate a FakeDeployment"):
        LocalPlatform().operations(fake)  # type: ignore[arg-type]
    with pytest.raises(Unsupported, match="cannot operate a FakeDeployment"):
        LocalPlatform().injector(fake)  # type: ignore[arg-type]


def test_kubernetes_operations_are_an_explained_skip(fake: FakeDeployment) -> None:
    k8s = KubernetesPlatform(KubernetesOptions())
    with pytest.raises(Unsupported, match="no operations for a FakeDeployment"):
        k8s.operations(fake)  # type: ignore[arg-type]
    with pytest.raises(Unsupported, match="cannot inject faults into a FakeDeployment"):
        k8s.injector(fake)  # type: ignore[arg-type]


# ---- the workload follows the endpoint list (harness/workload/runner.py, set_gates) --------------------
def test_gate_picker_follows_a_new_gate_list() -> None:
    from harness.workload.runner import GatePicker

    picker = GatePicker(["gate-0", "gate-1"])
    picker.set_gates(["gate-0", "gate-1", "gate-2"])
    assert {picker.pick() for _ in range(6)} == {"gate-0", "gate-1", "gate-2"}
    picker.set_gates(["gate-0"])
    assert {picker.pick() for _ in range(6)} == {"gate-0"}


def test_workload_set_gates_before_start_and_rejects_empty() -> None:
    from harness.workload.runner import Workload, WorkloadSpec

    wl = Workload(Recorder(), {"gate-0": "http://a", "gate-1": "http://b"}, WorkloadSpec(), run_tag="t")
    wl.set_gates({"gate-0": "http://a"})
    assert wl.gate_urls == {"gate-0": "http://a"}
    with pytest.raises(ValueError):
        wl.set_gates({})
