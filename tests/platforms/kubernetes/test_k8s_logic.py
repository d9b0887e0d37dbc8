"""Pure logic of the Kubernetes platform: names, gate slots, rollout predicates, fault plans, the
NetworkPolicy partition fallback and the settings mapping — no cluster needed."""

from __future__ import annotations

import copy
import shutil

import pytest

from harness.faults.shapes import grudge_for
from harness.platforms.kubernetes import chaos, conditions, naming, netpol, plan, render, slots
from harness.platforms.kubernetes.platform import options_from

# --- naming -------------------------------------------------------------------------------------------


def test_run_namespace_and_labels() -> None:
    rid = naming.new_run_id()
    assert naming.namespace_for(rid) == f"gvh-{rid}"
    assert naming.run_labels(rid)[naming.RUN_LABEL] == rid
    with pytest.raises(ValueError):
        naming.namespace_for("Bad_ID")


@pytest.mark.parametrize("instance,expected", [
    ("node-2", ("node", "goverse-node-2")), ("etcd-0", ("etcd", "goverse-etcd-0")),
    ("postgres", ("postgres", "goverse-postgres-0")), ("gate-1", ("gate", None)), ("inspector", ("inspector", None)),
])
def test_instance_to_pod(instance: str, expected: tuple) -> None:
    assert naming.pod_for_instance(instance) == expected


def test_pod_to_instance_and_unknown_names() -> None:
    assert naming.instance_for_pod("node", "goverse-node-11") == "node-11"
    assert naming.instance_for_pod("postgres", "goverse-postgres-0") == "postgres"
    assert naming.instance_for_pod("node", "goverse-nodes-1") is None
    assert naming.instance_for_pod("node", "goverse-node-x") is None
    with pytest.raises(ValueError):
        naming.pod_for_instance("frobnicator-1")


# --- gate slots ---------------------------------------------------------------------------------------


def test_slot_keeps_its_pod_and_refills_after_a_restart() -> None:
    table = slots.reassign([], ["a", "b"], 2)
    assert table == ["a", "b"]
    table = slots.reassign(table, ["b"], 2)  # a deleted, replacement not there yet
    assert table == [None, "b"]
    table = slots.reassign(table, ["b", "c"], 2)
    assert table == ["c", "b"]
    assert slots.instance_names("gate", table) == {"gate-0": "c", "gate-1": "b"}


def test_scale_down_frees_the_highest_slots_and_scale_up_fills_them() -> None:
    table = slots.reassign(["a", "b", "c"], ["a", "b", "c"], 2)
    assert table == ["a", "b"]
    assert slots.reassign(table, ["a", "b", "d"], 3) == ["a", "b", "d"]


def test_surplus_pod_of_a_rollout_fills_a_freed_slot() -> None:
    # during a rolling update old pod a is gone and new pods x, y exist (oldest first)
    assert slots.reassign(["a", "b"], ["b", "x", "y"], 2) == ["x", "b"]


# --- rollout predicates -------------------------------------------------------------------------------


def _deploy(gen=2, observed=2, want=2, updated=2, total=2, available=2, reason=None):
    conds = [{"type": "Progressing", "status": "False", "reason": reason, "message": "took too long"}] if reason else []
    return {"kind": "Deployment", "metadata": {"name": "goverse-gate", "generation": gen},
            "spec": {"replicas": want}, "status": {"observedGeneration": observed, "updatedReplicas": updated,
                                                   "replicas": total, "availableReplicas": available,
                                                   "conditions": conds}}


@pytest.mark.parametrize("kw,done", [
    ({}, True), ({"observed": 1}, False), ({"updated": 1}, False), ({"total": 3}, False), ({"available": 1}, False),
])
def test_deployment_progress(kw: dict, done: bool) -> None:
    assert conditions.progress(_deploy(**kw))[0] is done


def test_deployment_progress_deadline_is_a_failure_not_a_wait() -> None:
    with pytest.raises(conditions.RolloutFailed, match="took too long"):
        conditions.progress(_deploy(updated=1, reason="ProgressDeadlineExceeded"))


def _sts(ready=3, replicas=3, current="r1", update="r1"):
    return {"kind": "StatefulSet", "metadata": {"name": "goverse-node", "generation": 1},
            "spec": {"replicas": 3}, "status": {"observedGeneration": 1, "readyReplicas": ready, "replicas": replicas,
                                                "currentRevision": current, "updateRevision": update}}


@pytest.mark.parametrize("kw,done", [({}, True), ({"ready": 2}, False), ({"replicas": 4}, False),
                                     ({"update": "r2"}, False)])
def test_statefulset_progress(kw: dict, done: bool) -> None:
    assert conditions.progress(_sts(**kw))[0] is done


def test_job_progress() -> None:
    job = {"kind": "Job", "metadata": {"name": "goverse-schema-init"}, "status": {"active": 1}}
    assert conditions.progress(job)[0] is False
    job["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
    assert conditions.progress(job)[0] is True
    job["status"]["conditions"] = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
    with pytest.raises(conditions.RolloutFailed, match="BackoffLimitExceeded"):
        conditions.progress(job)


def test_pod_ready_and_problems() -> None:
    pod = {"metadata": {"name": "p"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert conditions.pod_ready(pod)
    terminating = copy.deepcopy(pod)
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not conditions.pod_ready(terminating)
    pod["status"]["containerStatuses"] = [{"name": "node", "state": {"waiting": {"reason": "ImagePullBackOff",
                                                                                 "message": "no such image"}}}]
    assert "ImagePullBackOff" in (conditions.pod_problem(pod) or "")
    assert conditions.pod_problem({"status": {}}) is None


def test_container_termination_matches_the_container_id_through_back_off_and_restart() -> None:
    """The three shapes the kubelet reports after a container dies (CI: node-1 OOM-killed, then in
    CrashLoopBackOff at heal time, with an older SIGKILL's record in the same pod)."""
    old = {"terminated": {"containerID": "containerd://aaa", "exitCode": 137, "reason": "Error"}}
    running = {"status": {"containerStatuses": [{"name": "node", "containerID": "containerd://bbb",
                                                 "state": {"running": {}}, "lastState": old}]}}
    assert conditions.running_container_id(running, "node") == "containerd://bbb"
    assert conditions.container_termination(running, "node", "containerd://bbb") is None  # still runs
    backing_off = {"status": {"containerStatuses": [{"name": "node", "containerID": "containerd://bbb",
                                                     "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                                     "lastState": {"terminated": {
                                                         "containerID": "containerd://bbb", "exitCode": 137,
                                                         "reason": "Error", "finishedAt": "t"}}}]}}
    got = conditions.container_termination(backing_off, "node", "containerd://bbb")
    assert got == {"exit_code": 137, "reason": "Error", "finished_at": "t", "restarted": False}
    restarted = copy.deepcopy(backing_off)
    cs = restarted["status"]["containerStatuses"][0]
    cs.update(containerID="containerd://ccc", state={"running": {}})
    assert (conditions.container_termination(restarted, "node", "containerd://bbb") or {})["restarted"] is True
    ended_now = {"status": {"containerStatuses": [{"name": "node", "containerID": "containerd://bbb",
                                                   "state": {"terminated": {"containerID": "containerd://bbb",
                                                                            "exitCode": 0}}}]}}
    assert (conditions.container_termination(ended_now, "node", "containerd://bbb") or {})["exit_code"] == 0
    assert conditions.container_termination(ended_now, "gate", "containerd://bbb") is None
    assert conditions.running_container_id({"status": {}}, "node") is None


# --- fault plans --------------------------------------------------------------------------------------

TOPO = {"node-0": "node", "node-1": "node", "node-2": "node", "etcd-0": "etcd", "etcd-1": "etcd",
        "etcd-2": "etcd", "gate-0": "gate", "gate-1": "gate", "postgres": "postgres"}
PODS = {h: (naming.pod_for_instance(h)[1] or f"goverse-gate-abc{h[-1]}") for h in TOPO}
NS = "gvh-r1"


@pytest.mark.parametrize("shape", ["isolate-node", "node-etcd", "node-postgres", "gates-node", "halves",
                                   "majorities-ring", "bridge"])
def test_partition_plan_drops_exactly_the_grudge(shape: str) -> None:
    grudge = grudge_for(shape, TOPO, "node-1" if shape in ("isolate-node", "node-etcd", "node-postgres",
                                                           "gates-node") else None)
    crs = plan.partition_crs("gvh-r1-part-0", grudge, PODS, NS)
    assert len(crs) == sum(1 for v in grudge.values() if v)
    seen = {}
    for cr in crs:
        assert cr["spec"]["direction"] == "from" and cr["spec"]["action"] == "partition"
        (holder,) = cr["spec"]["selector"]["pods"][NS]
        seen[holder] = set(cr["spec"]["target"]["selector"]["pods"][NS])
        assert chaos.check_scoped(chaos.scope(cr, NS, "r1"), NS, "r1") == []
    assert seen == {PODS[h]: {PODS[x] for x in v} for h, v in grudge.items() if v}


def test_link_and_resource_plans() -> None:
    d = plan.link_delay_cr("gvh-r1-delay-1", ["goverse-node-0"], ["goverse-postgres-0"], NS, 200, 20)
    assert d["spec"]["delay"] == {"latency": "200ms", "jitter": "20ms"}
    assert d["spec"]["target"]["selector"]["pods"] == {NS: ["goverse-postgres-0"]}
    b = plan.link_blackhole_cr("gvh-r1-bh-1", ["goverse-node-0"], ["goverse-etcd-0"], NS)
    assert b["spec"]["direction"] == "to"
    assert plan.cpu_stress_cr("gvh-r1-cpu-1", "goverse-node-0", NS, 0.1)["spec"]["stressors"]["cpu"]["workers"] == 10
    assert plan.memory_pressure_cr("gvh-r1-m-1", "goverse-node-0", NS, 64, 512)["spec"]["stressors"]["memory"][
        "size"] == "512MB"
    full = plan.disk_fault_cr("gvh-r1-io-1", "goverse-postgres-0", NS, "/var/lib/postgresql/data", "full", 0,
                              "postgres")
    assert full["spec"]["errno"] == 28 and full["spec"]["action"] == "fault"
    with pytest.raises(ValueError):
        plan.disk_fault_cr("gvh-r1-io-2", "p", NS, "/d", "melted", 0)


# --- NetworkPolicy partition fallback -----------------------------------------------------------------


@pytest.fixture(scope="module")
def kind_docs() -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (kustomize) is not on PATH")
    return render.kustomize_build(render.overlay_dir("kind", "reference"))


def _with_quarantined_node(docs: list[dict], pid: str, keep: frozenset[str]) -> list[dict]:
    """The rendered stack plus one node pod labelled quarantined (as a pseudo-component 'victim')."""
    out = copy.deepcopy(docs)
    node = next(d for d in out if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "goverse-node")
    victim = copy.deepcopy(node)
    victim["metadata"]["name"] = "victim"
    victim["spec"]["template"]["metadata"]["labels"].update(
        {naming.QUARANTINE_LABEL: pid, naming.COMPONENT_LABEL: "victim"})
    return out + [victim] + netpol.quarantine_policies("r1", pid, "node", keep)


def _expected_victim_paths(keep: frozenset[str]) -> set[tuple[str, str, str]]:
    """The node edges of EDGES, seen from a quarantined node that keeps only ``keep``."""
    out = set()
    for s, d, p in netpol.EDGES:
        if s == d == "node":
            if "node" in keep:
                out |= {("victim", "node", p), ("node", "victim", p)}
        elif s == "node" and d in keep:
            out.add(("victim", d, p))
        elif d == "node" and s in keep:
            out.add((s, "victim", p))
    return out


@pytest.mark.parametrize("shape", sorted(netpol.FALLBACK_SHAPES))
def test_quarantine_keeps_exactly_the_kept_paths(kind_docs: list[dict], shape: str) -> None:
    keep = netpol.FALLBACK_SHAPES[shape]
    paths, _ = netpol.allowed_paths(_with_quarantined_node(kind_docs, "p1", keep))
    victim = {(s, d, p) for s, d, p in paths if "victim" in (s, d) and not s == d == "victim"}
    assert victim == _expected_victim_paths(keep)
    assert {x for x in paths if "victim" not in x[:2]} == set(netpol.EDGES), "the rest keeps its paths"


def test_isolated_node_reaches_nothing(kind_docs: list[dict]) -> None:
    paths, _ = netpol.allowed_paths(_with_quarantined_node(kind_docs, "p2", frozenset()))
    assert not [x for x in paths if "victim" in x[:2]]


def test_quarantine_policies_are_labelled_for_cleanup() -> None:
    for p in netpol.quarantine_policies("r1", "p3", "node", {"etcd"}):
        assert p["metadata"]["labels"][naming.RUN_LABEL] == "r1"
        assert p["metadata"]["labels"][netpol.PARTITION_LABEL] == "p3"
        assert p["metadata"]["namespace"] == "gvh-r1"


# --- settings -> options -------------------------------------------------------------------------------


def test_options_from_settings() -> None:
    o = options_from("kind", None, None, "gh", True, False, "img:1")
    assert (o.provider, o.overlay, o.cluster_name, o.keep_cluster, o.image) == ("kind", "kind", "gh", True, "img:1")
    o = options_from("kubernetes", "k3d-dev", "prod-a, prod-b", "x", False, True, None)
    assert (o.provider, o.overlay, o.allow_contexts, o.keep_stack) == ("existing", "k3s", ("prod-a", "prod-b"), True)


def test_kind_missing_from_path_is_unsupported_with_a_hint(tmp_path) -> None:
    from harness.platforms.base import Unsupported
    from harness.platforms.kubernetes.kind import KindCluster

    cluster = KindCluster("gvh", kind_bin="kind-does-not-exist-here")
    with pytest.raises(Unsupported, match="not on PATH"):
        cluster.ensure(tmp_path / "kubeconfig")
    cluster.delete()  # created nothing, so deletes nothing (and does not need kind)
    assert cluster.context == "kind-gvh"


def test_the_k8s_tests_deployment_is_torn_down_and_checked_also_when_the_module_fails(tmp_path) -> None:  # noqa: ANN001
    """tests/support/kubecluster.deployed, which every k8s-marked module's fixture uses: teardown, then
    the leftover check, on success and on failure (with a stand-in platform: the real one needs a cluster)."""
    from harness.platforms.base import StackSpec
    from tests.support.kubecluster import deployed

    events: list[str] = []

    class Dep:
        def teardown(self) -> None:
            events.append("teardown")

    class Platform:
        def deploy(self, spec: StackSpec, run_dir: str) -> Dep:
            events.append(f"deploy {spec.nodes} {run_dir == str(tmp_path)}")
            return Dep()

    with deployed(Platform(), StackSpec(nodes=2), tmp_path, lambda d: events.append("checked")) as dep:
        assert isinstance(dep, Dep)
    with pytest.raises(RuntimeError), deployed(Platform(), StackSpec(nodes=3), tmp_path,
                                               lambda d: events.append("checked")):
        raise RuntimeError("a test failed")
    assert events == ["deploy 2 True", "teardown", "checked", "deploy 3 True", "teardown", "checked"]
