"""Ad-hoc pods, pure: built from the real rendered pod templates, read by the reference stack's own
config loader, and held to the same security policies as the stack's pods (no cluster needed)."""

from __future__ import annotations

import shutil

import pytest
import yaml

from harness.platforms.base import GateAddr, InspectorAddr, NodeAddr, StackSpec
from harness.platforms.kubernetes import adhocspec, naming, policy, render
from harness.refstack.config import ConfigError, Flags, load_settings

RUN = "r20261203t1800z-ab12cd"
NS = "gvh-r20261203t1800z-ab12cd"
PASSWORD = "s3cret-pw-123"


@pytest.fixture(scope="module")
def templates() -> dict[str, dict]:
    """The node, gate and inspector pod templates of the kind/reference overlay, with a seeded bug set
    the way the platform sets it (REFSTACK_BUGS on nodes and gates)."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (kustomize) is not on PATH")
    docs = render.kustomize_build(render.overlay_dir("kind", "reference"))
    out = {}
    for component in ("node", "gate", "inspector"):
        kind, name = naming.WORKLOADS[component]
        doc = next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
        tpl = doc["spec"]["template"]
        if component != "inspector":
            bug = {"name": "REFSTACK_BUGS", "value": "ready-latched"}
            tpl["spec"]["containers"][0].setdefault("env", []).append(bug)
        out[component] = tpl
    return out


def _env(pod: dict) -> dict[str, dict]:
    return {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}


def test_pod_is_the_stack_pod_with_its_own_config_and_no_kubelet_interference(templates) -> None:
    args = ["--config", adhocspec.config_path("gvh-adhoc-life-node"), "--node-id", "life-node"]
    pod = adhocspec.adhoc_pod(templates["node"], "node", "cf-life-node", NS, RUN, args,
                              {"LOG_LEVEL": "warn", "GOVERSE_POSTGRES_PASSWORD": PASSWORD}, 15,
                              {PASSWORD: ("goverse-postgres", "postgres-password")})
    c = pod["spec"]["containers"][0]
    assert pod["metadata"] == {"name": "cf-life-node", "namespace": NS, "labels": {
        naming.RUN_LABEL: RUN, naming.MANAGED_BY_LABEL: naming.MANAGED_BY, naming.NAME_LABEL: "goverse-adhoc",
        "app.kubernetes.io/part-of": "goverse", "app.kubernetes.io/component": "adhoc-node",
        adhocspec.ADHOC_LABEL: "cf-life-node"}}
    assert c["args"] == ["node", *args]
    assert pod["spec"]["restartPolicy"] == "Never" and pod["spec"]["terminationGracePeriodSeconds"] == 15
    assert not {"livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "ports"} & set(c)
    env = _env(pod)
    # the stack's GOVERSE_* stay out (the checks set exactly what they test); identity, format, bugs stay
    assert not [n for n in env if n.startswith("GOVERSE_") and n != "GOVERSE_POSTGRES_PASSWORD"]
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["LOG_LEVEL"] == {"name": "LOG_LEVEL", "value": "warn"}
    assert env["REFSTACK_BUGS"]["value"] == "ready-latched" and env["LOG_FORMAT"]["value"] == "json"
    # the password reaches the pod from the Secret, never as a literal in the pod object
    assert env["GOVERSE_POSTGRES_PASSWORD"] == {"name": "GOVERSE_POSTGRES_PASSWORD", "valueFrom": {
        "secretKeyRef": {"name": "goverse-postgres", "key": "postgres-password"}}}
    assert PASSWORD not in yaml.safe_dump(pod)
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert mounts["adhoc-config"] == adhocspec.CONFIG_DIR and mounts["secrets"] == adhocspec.SECRETS_DIR
    assert vols["adhoc-config"]["configMap"] == {"name": "gvh-adhoc-life-node", "items": [
        {"key": "config.yaml", "path": "gvh-adhoc-life-node.yaml"}]}
    assert "config" not in vols  # the stack's shared ConfigMap is not mounted


def test_env_none_removes_a_variable_and_overrides_replace_downward_values(templates) -> None:
    pod = adhocspec.adhoc_pod(templates["gate"], "gate", "g1", NS, RUN, [], {"POD_IP": "127.0.0.2",
                                                                            "LOG_FORMAT": None}, 5)
    env = _env(pod)
    assert env["POD_IP"] == {"name": "POD_IP", "value": "127.0.0.2"} and "LOG_FORMAT" not in env
    assert "adhoc-config" not in {v["name"] for v in pod["spec"]["volumes"]}  # no --config given


def test_pods_keep_the_stacks_security_policies(templates) -> None:
    pods = [adhocspec.adhoc_pod(templates[c], c, f"cf-{c}", NS, RUN, [], {"GOVERSE_POSTGRES_PASSWORD": PASSWORD}, 5,
                                {PASSWORD: ("goverse-postgres", "postgres-password")})
            for c in ("node", "gate", "inspector")]
    as_workloads = [{"kind": "Deployment", "metadata": {"name": p["metadata"]["name"]},
                     "spec": {"template": {"metadata": p["metadata"], "spec": p["spec"]}}} for p in pods]
    for check in (policy.check_5_1_run_as_non_root, policy.check_5_1_drop_all_capabilities,
                  policy.check_5_1_seccomp_runtime_default, policy.check_5_1_read_only_root_filesystem,
                  policy.check_5_1_no_host_access, policy.check_5_3_no_literal_credentials,
                  policy.check_3_1_resources):
        assert check(as_workloads) == [], check.__name__
    # and the checks do see a literal password (so the pass above means something)
    bad = adhocspec.adhoc_pod(templates["node"], "node", "cf-bad", NS, RUN, [],
                              {"GOVERSE_POSTGRES_PASSWORD": PASSWORD}, 5)
    assert policy.check_5_3_no_literal_credentials([{"kind": "Deployment", "metadata": {"name": "cf-bad"},
                                                     "spec": {"template": {"spec": bad["spec"]}}}])


def test_names_and_config_paths() -> None:
    assert adhocspec.config_map_of(["node", "--config", adhocspec.config_path("gvh-adhoc-x")]) == "gvh-adhoc-x"
    assert adhocspec.config_map_of(["--config", "/etc/goverse/config.yaml"]) is None
    assert adhocspec.config_map_of(["--config"]) is None
    for bad in ("Cf-Node", "cf_node", "-x", "x" * 53, ""):
        with pytest.raises(ValueError, match="DNS label"):
            adhocspec.pod_name(bad)


def _load(role: str, doc: dict, env: dict[str, str], **flags: str):
    return load_settings(role, Flags(config_text=yaml.safe_dump(doc), **flags), env)


def test_config_is_read_by_the_reference_stack_as_a_pod_would(tmp_path) -> None:
    spec = StackSpec(nodes=2, gates=1)
    doc = adhocspec.adhoc_config(spec, "/gvh-conformance/life-ab", "gvh_cf_life_ab", "goverse",
                                 [NodeAddr("life-node", "127.0.0.1", 7301, 9301)],
                                 [GateAddr("life-gate", "127.0.0.1", 8301, 9302, 6301)],
                                 InspectorAddr("127.0.0.1", 8311, 8312), etcd=["http://10.200.0.1:40001"],
                                 pg=("10.200.0.1", 40002))
    assert doc["postgres"] == {"host": "10.200.0.1", "port": 40002, "database": "gvh_cf_life_ab", "sslmode": "disable",
                               "user": "goverse", "password_file": adhocspec.PASSWORD_FILE}
    mounted = tmp_path / "postgres-password"  # where the pod has the Secret's file
    mounted.write_text(PASSWORD)
    doc["postgres"]["password_file"] = str(mounted)
    pod_env = {"POD_NAME": "cf-life-node", "POD_IP": "10.244.0.9"}
    node = _load("node", doc, pod_env, node_id="life-node")
    assert node.cluster.etcd_endpoints == ("http://10.200.0.1:40001",)
    assert node.cluster.prefix == "/gvh-conformance/life-ab" and node.postgres.database == "gvh_cf_life_ab"
    assert node.instance.advertise_addr == "10.244.0.9:7301" and node.instance.listen_addr == "0.0.0.0:7301"
    gate = _load("gate", doc, pod_env, gate_id="life-gate")
    assert gate.instance.advertise_addr == "10.244.0.9:6301" and gate.instance.http_addr == "0.0.0.0:8301"
    assert _load("inspector", doc, pod_env).instance.http_addr == "0.0.0.0:8311"
    # without POD_IP (a pod whose downward API was dropped) the node cannot advertise: refused at start
    with pytest.raises(ConfigError, match="advertise_addr"):
        _load("node", doc, {}, node_id="life-node")
