"""Chaos Mesh experiments: valid against the v2.8.3 CRDs, confined to the run, status read correctly.

The CRD schemas are in this repository (``tests/data/chaos-mesh-crds-v2.8.3``; ``GVH_CHAOS_MESH_CRDS``
overrides); the validator is strict about unknown fields like the API server. Without them these tests
skip locally but fail under ``CI`` (never a silently green CI).
"""

from __future__ import annotations

import copy

import pytest

from harness.platforms.kubernetes import chaos, crdschema, naming
from tests.support.need import need

CRDS = crdschema.default_crd_dir()


@pytest.fixture(autouse=True)
def _crds_present() -> None:
    need(CRDS.is_dir(), f"Chaos Mesh CRDs not found at {CRDS}")


RUN = "abcd1234"
NS = naming.namespace_for(RUN)
EXPERIMENTS = chaos.load_experiments()
NODE = chaos.PodSelector(NS, {naming.NAME_LABEL: "goverse-node"})
NODE0 = chaos.PodSelector(NS, pods=("goverse-node-0",))
ETCD = chaos.PodSelector(NS, {naming.NAME_LABEL: "goverse-etcd"})
PG = chaos.PodSelector(NS, {naming.NAME_LABEL: "goverse-postgres"})


def test_catalogue_covers_every_fault_family_of_the_issue() -> None:
    got = {(cr["kind"], cr["spec"].get("action") or next(iter(cr["spec"].get("stressors", {})), None))
           for cr in EXPERIMENTS.values()}
    assert got >= {("PodChaos", "pod-kill"), ("PodChaos", "pod-failure"), ("PodChaos", "container-kill"),
                   ("NetworkChaos", "partition"), ("NetworkChaos", "delay"), ("NetworkChaos", "loss"),
                   ("StressChaos", "cpu"), ("StressChaos", "memory"), ("IOChaos", "latency"), ("IOChaos", "fault")}


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_catalogue_experiment_validates_against_crd(name: str) -> None:
    cr = EXPERIMENTS[name]
    assert crdschema.errors(cr, CRDS) == []
    assert chaos.semantic_errors(cr) == []


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_catalogue_experiment_scoped_to_a_run_stays_valid_and_confined(name: str) -> None:
    scoped = chaos.scope(chaos.rehome(EXPERIMENTS[name], "goverse", NS), NS, RUN)
    assert crdschema.errors(scoped, CRDS) == []
    assert chaos.check_scoped(scoped, NS, RUN) == []
    assert scoped["spec"]["selector"]["labelSelectors"][naming.RUN_LABEL] == RUN


BUILT = {
    "pod-kill": chaos.pod_chaos("gvh-x-kill", NODE0, grace_period=0),
    "pod-failure": chaos.pod_chaos("gvh-x-fail", NODE, "pod-failure", duration_s=30),
    "container-kill": chaos.pod_chaos("gvh-x-ck", NODE, "container-kill", container_names=["node"]),
    "partition": chaos.network_partition("gvh-x-part", NODE0, ETCD, direction="both"),
    "partition-one-way": chaos.network_partition("gvh-x-part1", NODE0, ETCD, direction="from", duration_s=15),
    "delay": chaos.network_delay("gvh-x-delay", NODE, 200, jitter_ms=20, target=PG),
    "loss": chaos.network_loss("gvh-x-loss", NODE0, 30),
    "cpu": chaos.stress_cpu("gvh-x-cpu", NODE0, workers=2, duration_s=20),
    "memory": chaos.stress_memory("gvh-x-mem", NODE0, size="512MB"),
    "io-latency": chaos.io_chaos("gvh-x-iol", PG, "/var/lib/postgresql/data", delay_ms=100),
    "io-fault": chaos.io_chaos("gvh-x-iof", PG, "/var/lib/postgresql/data", "fault", errno=28, percent=50,
                               methods=["WRITE"], duration_s=10),
    "fixed-mode": chaos.pod_chaos("gvh-x-fixed", NODE, mode="fixed", value="2"),
}


@pytest.mark.parametrize("name", sorted(BUILT))
def test_built_experiment_validates_and_is_confined(name: str) -> None:
    cr = chaos.scope(BUILT[name], NS, RUN)
    assert crdschema.errors(cr, CRDS) == []
    assert chaos.semantic_errors(cr) == []
    assert chaos.check_scoped(cr, NS, RUN) == []


@pytest.mark.parametrize("mutate,needle", [
    (lambda cr: cr["spec"].update(action="pod-explode"), "pod-explode"),
    (lambda cr: cr["spec"].update(mode="most"), "most"),
    (lambda cr: cr["spec"].update(gracePeriod="0"), "gracePeriod"),
    (lambda cr: cr["spec"]["selector"].update(labelSelector={"a": "b"}), "labelSelector"),
    (lambda cr: cr["spec"].pop("selector"), "selector"),
], ids=["bad-action", "bad-mode", "wrong-type", "typo-field", "missing-required"])
def test_crd_validation_rejects_broken_experiments(mutate, needle: str) -> None:
    cr = copy.deepcopy(EXPERIMENTS["pod-kill"])
    mutate(cr)
    errs = crdschema.errors(cr, CRDS)
    assert errs and any(needle in e for e in errs), errs


def test_crd_validation_rejects_a_bad_delay_and_an_unknown_kind() -> None:
    cr = copy.deepcopy(EXPERIMENTS["network-delay"])
    cr["spec"]["delay"]["latency"] = "200 millis"
    assert crdschema.errors(cr, CRDS)
    assert crdschema.errors({"apiVersion": chaos.API_VERSION, "kind": "BlockChaos", "spec": {}}, CRDS)


@pytest.mark.parametrize("cr,problem", [
    ({"spec": {"action": "pod-failure", "mode": "one"}, "kind": "PodChaos"}, "duration"),
    ({"spec": {"action": "partition", "mode": "one"}, "kind": "NetworkChaos"}, "target"),
    ({"spec": {"mode": "fixed"}, "kind": "PodChaos"}, "value"),
    ({"spec": {"mode": "one", "duration": "10 s"}, "kind": "PodChaos"}, "Go duration"),
    ({"spec": {"action": "loss", "mode": "one", "loss": {"loss": "lots"}}, "kind": "NetworkChaos"}, "number"),
    ({"spec": {"mode": "one"}, "kind": "StressChaos"}, "stressors"),
])
def test_semantic_rules_the_schema_does_not_express(cr: dict, problem: str) -> None:
    assert any(problem in e for e in chaos.semantic_errors(cr))


# --- selector scoping -------------------------------------------------------------------------------


def test_scope_adds_namespace_and_run_label_to_selector_and_target() -> None:
    cr = {"apiVersion": chaos.API_VERSION, "kind": "NetworkChaos", "metadata": {"name": "p"},
          "spec": {"action": "partition", "mode": "all", "selector": {"labelSelectors": {"a": "node"}},
                   "target": {"mode": "all", "selector": {}}}}
    out = chaos.scope(cr, NS, RUN)
    for sel in (out["spec"]["selector"], out["spec"]["target"]["selector"]):
        assert sel["namespaces"] == [NS]
        assert sel["labelSelectors"][naming.RUN_LABEL] == RUN
    assert out["spec"]["selector"]["labelSelectors"]["a"] == "node"
    assert out["metadata"]["namespace"] == NS and out["metadata"]["labels"][naming.RUN_LABEL] == RUN
    assert "namespaces" not in cr["spec"]["selector"], "scope must not modify its input"


@pytest.mark.parametrize("selector,why", [
    ({"namespaces": ["kube-system"]}, "namespaces"),
    ({"namespaces": [NS, "default"]}, "namespaces"),
    ({"pods": {"default": ["x"]}}, "pods"),
    ({"nodes": ["worker-1"]}, "nodes"),
    ({"nodeSelectors": {"kubernetes.io/hostname": "w"}}, "nodeSelectors"),
    ({"labelSelectors": {naming.RUN_LABEL: "other-run"}}, "contradicts"),
])
def test_scope_refuses_what_could_escape_the_run(selector: dict, why: str) -> None:
    cr = {"apiVersion": chaos.API_VERSION, "kind": "PodChaos", "spec": {"action": "pod-kill", "mode": "one",
                                                                          "selector": selector}}
    with pytest.raises(chaos.ScopeError, match=why):
        chaos.scope(cr, NS, RUN)


def test_scope_refuses_external_targets_in_network_chaos() -> None:
    cr = copy.deepcopy(EXPERIMENTS["network-loss"])
    cr["spec"]["externalTargets"] = ["8.8.8.8"]
    with pytest.raises(chaos.ScopeError, match="externalTargets"):
        chaos.scope(chaos.rehome(cr, "goverse", NS), NS, RUN)


def test_scope_refuses_a_target_in_another_namespace() -> None:
    cr = copy.deepcopy(EXPERIMENTS["network-partition"])
    cr["spec"]["target"]["selector"]["namespaces"] = ["kube-system"]
    with pytest.raises(chaos.ScopeError, match="target.selector"):
        chaos.scope(chaos.rehome(cr, "goverse", NS), NS, RUN)


def test_unscoped_catalogue_file_is_reported_by_check_scoped() -> None:
    problems = chaos.check_scoped(EXPERIMENTS["network-partition"], NS, RUN)
    assert any("namespaces" in p for p in problems) and any("target.selector" in p for p in problems)


def test_rehome_only_moves_the_named_namespace() -> None:
    cr = copy.deepcopy(EXPERIMENTS["pod-kill"])
    cr["spec"]["selector"]["namespaces"] = ["goverse", "prod"]
    moved = chaos.rehome(cr, "goverse", NS)
    assert moved["spec"]["selector"]["namespaces"] == [NS, "prod"]
    with pytest.raises(chaos.ScopeError):
        chaos.scope(moved, NS, RUN)


@pytest.mark.parametrize("call", [
    lambda: chaos.pod_chaos("x", NODE, "pod-failure"),
    lambda: chaos.pod_chaos("x", NODE, "container-kill"),
    lambda: chaos.pod_chaos("Bad_Name", NODE),
    lambda: chaos.pod_chaos("x", NODE, mode="fixed"),
    lambda: chaos.network_partition("x", NODE, ETCD, direction="sideways"),
    lambda: chaos.network_loss("x", NODE, 0),
    lambda: chaos.stress_memory("x", NODE, size="lots"),
    lambda: chaos.io_chaos("x", PG, "relative/path"),
    lambda: chaos.duration(0),
])
def test_builders_refuse_invalid_parameters(call) -> None:
    with pytest.raises(ValueError):
        call()


# --- status conditions ------------------------------------------------------------------------------


def _status(**conds: str) -> dict:
    return {"status": {"conditions": [{"type": k, "status": v} for k, v in conds.items()],
                       "experiment": {"desiredPhase": "Run", "containerRecords": [
                           {"id": f"{NS}/goverse-node-0", "selectorKey": ".", "phase": "Injected",
                            "injectedCount": 1, "recoveredCount": 0,
                            "events": [{"type": "Succeeded", "operation": "Apply", "timestamp": "t"}]},
                           {"id": f"{NS}/goverse-node-1", "selectorKey": ".", "phase": "Not Injected",
                            "injectedCount": 0, "recoveredCount": 0,
                            "events": [{"type": "Failed", "operation": "Apply", "timestamp": "t",
                                        "message": "expected docker:// but got container"}]}]}}}


def test_conditions_injected_and_recovered() -> None:
    assert chaos.is_injected(_status(Selected="True", AllInjected="True", AllRecovered="False"))
    assert not chaos.is_injected(_status(Selected="True", AllInjected="False"))
    assert not chaos.is_injected({"status": None}) and not chaos.is_injected(None)
    assert chaos.is_recovered(_status(AllInjected="False", AllRecovered="True"))
    assert not chaos.is_recovered(_status(AllRecovered="False"))


def test_failures_and_counts_come_from_container_records() -> None:
    obj = _status(Selected="True", AllInjected="False")
    assert chaos.failures(obj) == [f"{NS}/goverse-node-1: Apply failed: expected docker:// but got container"]
    assert chaos.counts(obj) == {"targets": 2, "injected": 1, "recovered": 0}
    assert chaos.counts({}) == {"targets": 0, "injected": 0, "recovered": 0}
