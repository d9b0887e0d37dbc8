"""Against a real cluster whose node the harness runs on (marker ``k8s``; the binaries provider): the
node-access faults and the runtime-conformance plumbing of the Kubernetes platform.

Skipped with the reason when no cluster answers, the context is not a test cluster, or the pods'
processes are not on this machine. ``GVH_KUBE_CONTEXT`` / ``GVH_ALLOW_CONTEXT`` / ``GVH_IMAGE`` as in
tests/platforms/kubernetes/test_k8s_cluster.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness.faults.spec import CpuStress, Kill
from harness.platforms.base import StackSpec
from harness.platforms.kubernetes import nodeaccess
from harness.waiting import wait_until
from tests.support.kubecluster import deployed, platform_or_skip

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with deployed(platform_or_skip(), StackSpec(nodes=2, gates=1, etcd_members=1),
                  tmp_path_factory.mktemp("k8s-nodeaccess")) as d:
        if not d.node_access():
            pytest.skip("the pods' processes are not on this machine (no node access)")
        yield d


def dep_injector(dep):  # noqa: ANN001, ANN201 - test helper
    from harness.platforms.kubernetes.injector import KubernetesInjector

    return KubernetesInjector(dep)


def test_ops_urls_answer_through_the_pod_network(dep) -> None:
    serving = [i for i in dep.instances() if i.component in ("node", "gate", "inspector")]
    assert serving and all(i.ops_url for i in serving)
    for i in serving:
        assert requests.get(f"{i.ops_url}/healthz", timeout=10).status_code == 200, i


def test_cpu_limit_nests_in_the_container_group_throttles_and_heals_to_nothing(dep) -> None:
    injected = dep_injector(dep).inject(CpuStress("node-0", quota=0.02))
    lim = dep.limits["cpu-node-0"]
    assert lim.group is not None and lim.group.parent == lim.hierarchy.path(lim.hierarchy.own)
    group = lim.group
    pid = nodeaccess.container_pid(dep.pod_uid("node-0"), dep.container_id("node-0"))  # not the pg-proxy sidecar
    assert pid in [int(x) for x in (group / "cgroup.procs").read_text().split()]
    wait_until(lambda: lim.throttled()[1] > 0, 30, "the 2 % quota throttles the node")
    result = injected.heal()
    assert result["throttled"]["node-0"]["throttled"] > 0
    assert not group.exists() and "cpu-node-0" not in dep.limits
    assert str(group.parent.relative_to(lim.hierarchy.mount)) in Path(f"/proc/{pid}/cgroup").read_text()


def test_sigkill_keeps_the_node_down_until_heal_then_it_serves_again(dep) -> None:
    t = dep.spec.timers
    uid = dep.pod_uid("node-1")
    injected = dep_injector(dep).inject(Kill("node-1", "SIGKILL"))
    try:
        # the lease expires (TTL) and the restarted container, cut off, cannot register again
        wait_until(lambda: "node-1" not in dep.live_nodes(), t.lease_ttl + 20, "node-1's lease expired")
        wait_until(lambda: dep.cluster_state().converged, t.failover_budget() + 30, "shards moved to node-0")
        assert "node-1" not in dep.live_nodes()
    finally:
        result = injected.heal()
    how = result["how_back"]["node-1"]
    # back in place under the same pod (and IP), or — if the kubelet's back-off took too long — a new pod
    assert (how.startswith("restarted in place") and dep.pod_uid("node-1") == uid) or (
        how.startswith("pod replaced") and dep.pod_uid("node-1") != uid), how
    wait_until(lambda: "node-1" in dep.live_nodes(), t.failover_budget() + 30, "node-1 registered again")


def test_terminate_is_sigterm_by_pod_deletion_with_the_exit_code(dep) -> None:
    term = dep.terminate("node-1")
    assert term.code == 0 and term.t_exit > term.t_sigterm
    dep.start("node-1")
    dep.wait_converged(dep.spec.timers.failover_budget() + 30)


def test_the_password_comes_from_the_secret_and_the_logs_from_the_pods(dep) -> None:
    assert len(dep.postgres_password()) >= 16
    log = dep.instance_log("node-0")
    assert log and dep.postgres_password() not in log


# ---- node -> PostgreSQL link faults through the pg-proxy sidecar ------------------------------------------

PG_RTT = """
import socket, struct, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=float(sys.argv[2]))
t0 = time.monotonic()
s.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest: PostgreSQL answers one byte
assert s.recv(1) in (b"N", b"S")
print(time.monotonic() - t0)
"""


def _pg_rtt_from_pod(dep, name: str, timeout_s: float = 10.0) -> float:  # noqa: ANN001 - test helper
    """One PostgreSQL round trip from inside ``name``'s pod network namespace through its sidecar
    (what the node's own sessions go through), in seconds."""
    import subprocess
    import sys

    from harness.platforms.kubernetes.pgproxy import LISTEN_PORT

    pid = nodeaccess.netns_pid(dep.pod_uid(name))
    out = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c", PG_RTT, str(LISTEN_PORT),
                          str(timeout_s)],
                         capture_output=True, text=True, check=True, timeout=30)
    return float(out.stdout.strip())


def test_latency_on_node_postgres_is_the_sidecars_toxic_and_heals(dep) -> None:
    import subprocess

    from harness.faults.spec import Latency, Reset, Timeout

    assert dep.pg_proxied() and dep.capabilities()["latency"] is None and dep.capabilities()["reset"] is None
    before = min(_pg_rtt_from_pod(dep, "node-0") for _ in range(3))
    injected = dep_injector(dep).inject(Latency(("node-0", "postgres"), ms=200))
    try:
        state = dep.pg_proxy("node-0").state()
        assert state["toxics"] == [{"kind": "latency", "ms": 200.0, "jitter_ms": 0.0, "direction": "upstream"}]
        assert state["stats"]["accepted"] >= 1  # the node's own sessions came through it
        during = _pg_rtt_from_pod(dep, "node-0")
        assert dep.pg_proxy("node-1").state()["toxics"] == []  # one node's link only
    finally:
        healed = injected.heal()
    after = min(_pg_rtt_from_pod(dep, "node-0") for _ in range(3))
    print(f"PostgreSQL round trip through node-0's pg-proxy: before {before * 1000:.1f} ms, during "
          f"{during * 1000:.1f} ms, after {after * 1000:.1f} ms")
    assert injected.targets == ["node-0"] and injected.detail["links"] == ["node-0->postgres"]
    assert during >= 0.19 and before < 0.15 and after < 0.15, (before, during, after)
    assert healed["cleared"] == ["node-0->postgres"] and healed["bytes_during"]["node-0->postgres"] > 0
    hole = dep_injector(dep).inject(Timeout(("node-0", "postgres")))
    try:
        assert [t["kind"] for t in dep.pg_proxy("node-0").state()["toxics"]] == ["timeout"]
        with pytest.raises(subprocess.CalledProcessError) as err:
            _pg_rtt_from_pod(dep, "node-0", timeout_s=1.0)  # accepted, never answered: a black hole
        assert "timed out" in err.value.stderr, err.value.stderr
    finally:
        assert hole.heal()["cleared"] == ["node-0->postgres"]
    assert _pg_rtt_from_pod(dep, "node-0") < 0.15
    reset = dep_injector(dep).inject(Reset(("node-0", "postgres")))
    assert dep.pg_proxy("node-0").state()["stats"]["resets"] >= 1
    reset.heal()
    assert dep.pg_proxy("node-0").state()["toxics"] == []
    dep.wait_converged(dep.spec.timers.failover_budget() + 30)
