"""The decision behind ``run --platform kubernetes`` with no cluster (pure: no cluster is started here)."""

from __future__ import annotations

import pytest

from harness.platforms.base import PlatformError
from harness.platforms.kubernetes import autocluster
from harness.platforms.kubernetes.autocluster import binaries_state, is_named_elsewhere, plan

OWN = "/var/lib/goverse-harness-cluster/conf/admin.kubeconfig"
PROCS_DOWN = {"etcd": None, "kube-apiserver": None, "kubelet": None}


def test_a_cluster_that_answers_is_used_and_never_taken_down() -> None:
    for keep in (False, True):
        p = plan(True, "gvh-binaries: v1.34.4", named_elsewhere=False, state="absent", keep_cluster=keep)
        assert (p.action, p.take_down_at_end) == ("use", False)


def test_nothing_answers_and_nothing_here_brings_binaries_up_and_down_unless_kept() -> None:
    p = plan(False, "connection refused", named_elsewhere=False, state="absent", keep_cluster=False)
    assert (p.action, p.take_down_at_end) == ("up", True)
    p = plan(False, "connection refused", named_elsewhere=False, state="absent", keep_cluster=True)
    assert (p.action, p.take_down_at_end) == ("up", False) and "--keep-cluster" in p.reason


@pytest.mark.parametrize("named, state, words", [
    (True, "absent", "pointed at"),          # a named cluster that is down is not replaced
    (False, "running", "cluster status"),    # the shared binaries cluster, API slow: never up twice, never down
    (False, "leftovers", "cluster down"),    # a crashed one: cleaned by `cluster down` first
])
def test_refusals_name_the_cause_and_never_touch_a_cluster(named: bool, state: str, words: str) -> None:
    p = plan(False, "timed out", named_elsewhere=named, state=state, keep_cluster=False)  # type: ignore[arg-type]
    assert (p.action, p.take_down_at_end) == ("refuse", False) and words in p.reason


def test_binaries_state_from_status_dicts() -> None:
    assert binaries_state({"processes": PROCS_DOWN, "kubeconfig": None, "leftovers": []}) == "absent"
    assert binaries_state({"processes": {**PROCS_DOWN, "kubelet": 4242}, "kubeconfig": OWN}) == "running"
    assert binaries_state({"processes": PROCS_DOWN, "kubeconfig": OWN, "leftovers": []}) == "leftovers"
    assert binaries_state({"processes": PROCS_DOWN, "kubeconfig": None, "leftovers": ["route 10.96.0.0/16"]}) \
        == "leftovers"


def test_named_elsewhere_is_another_context_or_another_kubeconfig() -> None:
    assert not is_named_elsewhere(None, None, OWN, "gvh-binaries")
    assert not is_named_elsewhere("gvh-binaries", OWN, OWN, "gvh-binaries")
    assert is_named_elsewhere("kind-gvh", None, OWN, "gvh-binaries")
    assert is_named_elsewhere(None, "/root/.kube/config", OWN, "gvh-binaries")


def test_ensure_refuses_before_starting_anything_when_the_plan_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """The carrying-out half: a refusal raises one clear error and calls no provider action."""
    from harness.platforms.kubernetes import client
    from harness.platforms.kubernetes.cluster import binaries

    calls: list[str] = []
    monkeypatch.setattr(client, "reachable", lambda *_a: (False, "connection refused"))
    monkeypatch.setattr(binaries.BinariesCluster, "status", lambda self: {"processes": {"kubelet": 1}})
    monkeypatch.setattr(binaries.BinariesCluster, "up", lambda self: calls.append("up"))
    monkeypatch.setattr(binaries.BinariesCluster, "down", lambda self, *a: calls.append("down"))
    monkeypatch.setattr(autocluster, "_started", None)
    with pytest.raises(PlatformError, match="cluster status"):
        autocluster.ensure(None, None, keep_cluster=False)
    with pytest.raises(PlatformError, match="pointed at"):
        autocluster.ensure("kind-elsewhere", None, keep_cluster=False)
    assert calls == []
