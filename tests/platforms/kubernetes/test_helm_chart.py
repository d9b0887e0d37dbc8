"""charts/goverse: `helm lint`, `helm template`, and the same workloads as the kustomize tree.

helm is the real one, built from the Go module proxy (tests/support/gotools.py). The comparison renders the
chart with its default values and the kustomize `production/reference` overlay and compares, per
workload (Deployment, StatefulSet, Job, CronJob; kind and name, the schema Job without the chart's
per-revision suffix): init and regular containers in order with their name, image, command and args,
the *set* of env variable names, ports (name, number), the three probes in full, the preStop action,
and the pod's volume names. Not compared: replicas (the HPA or values own them), labels and annotations, resources
(values), the chart's extra `enableServiceLinks`.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.platforms.kubernetes import k8sschema, netpol, policy, render
from tests.support.gotools import go_tool
from tests.support.paths import ROOT

CHART = ROOT / "charts" / "goverse"
KUBE_VERSION = "1.31.0"
WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob")

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not on PATH")


@pytest.fixture(scope="module")
def helm() -> str:
    return go_tool("helm")


def template(helm: str, *sets: str, chart: Path = CHART) -> subprocess.CompletedProcess[str]:
    args = [helm, "template", "goverse", str(chart), "--namespace", "goverse", "--kube-version", KUBE_VERSION]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def rendered(helm: str, *sets: str) -> list[dict[str, Any]]:
    res = template(helm, *sets)
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


ALL_ON = ("monitoring.enabled=true", "autoscaling.enabled=true", "ingress.enabled=true")
GOVERSE = ("stack=goverse",)
GOVERSE_ALL_ON = (*GOVERSE, *ALL_ON, "ingress.grpc.enabled=true")


# --- lint and template ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sets", [(), ALL_ON, GOVERSE_ALL_ON, (
    "etcd.enabled=false", "etcd.external.endpoints={etcd.db:2379}", "postgres.enabled=false",
    "postgres.external.host=pg.db")])
def test_helm_lint_passes(helm: str, sets: tuple[str, ...]) -> None:
    args = [helm, "lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION]
    for s in sets:
        args += ["--set", s]
    res = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_kind_values_render_the_kind_overlay_shape(helm: str) -> None:
    """ci/kind-values.yaml (for installing on a one-machine cluster) lints and gives kind's shape."""
    values = str(CHART / "ci" / "kind-values.yaml")
    res = subprocess.run([helm, "lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, "-f", values],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run(
        [helm, "template", "goverse", str(CHART), "--namespace", "goverse", "--kube-version", KUBE_VERSION,
         "-f", values], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    docs = [d for d in yaml.safe_load_all(res.stdout) if d]
    etcd = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "goverse-etcd")
    env = {e["name"]: e.get("value") for e in etcd["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert etcd["spec"]["replicas"] == 1
    assert env["ETCD_INITIAL_CLUSTER"] == (
        "goverse-etcd-0=http://goverse-etcd-0.goverse-etcd-headless.$(POD_NAMESPACE).svc:2380")
    assert not [d for d in docs if d["kind"] == "CronJob"]
    kustomize = workload_shapes(render.kustomize_build(render.overlay_dir("kind", "reference")))
    chart = workload_shapes(docs)
    assert set(chart) == set(kustomize)
    for k in chart:  # images differ by design (kind side-loads :latest; the chart refuses it)
        strip = [{**c, "image": None} for c in chart[k]["containers"]]
        assert strip == [{**c, "image": None} for c in kustomize[k]["containers"]], k


def test_helm_lint_fails_on_a_broken_chart(helm: str, tmp_path: Path) -> None:
    broken = tmp_path / "goverse"
    shutil.copytree(CHART, broken)
    gate = broken / "templates" / "gate.yaml"
    gate.write_text(gate.read_text().replace("{{ int .Values.gate.replicas }}", "{{ int .Values.gate.replicas "))
    res = subprocess.run([helm, "lint", str(broken), "--kube-version", KUBE_VERSION], capture_output=True,
                         text=True, timeout=120, check=False)
    assert res.returncode != 0 and "gate.yaml" in res.stdout + res.stderr


@pytest.mark.parametrize("sets, words", [
    (("image.tag=latest",), "image.tag: `latest` is not allowed"),
    (("autoscaling.enabled=true", "autoscaling.gate.minReplicas=2"), "autoscaling.*.minReplicas: at least 3"),
    (("etcd.enabled=false",), "etcd.external.endpoints"),
    (("postgres.enabled=false",), "postgres.external.host"),
    (("stack=other",), 'stack: "other" is not one of reference, goverse'),
    (("ingress.enabled=true", "ingress.grpc.enabled=true"), "ingress.grpc.enabled: only stack=goverse"),
    (("stack=goverse", "goverse.images.node=xiaonanln/goverse-node:latest"), "goverse.images.node"),
    (("stack=goverse", "goverse.images.gate=xiaonanln/goverse-gate"), "latest or untagged"),
])
def test_bad_values_get_one_clear_error(helm: str, sets: tuple[str, ...], words: str) -> None:
    res = template(helm, *sets)
    assert res.returncode != 0
    assert words in res.stderr, res.stderr


@pytest.mark.parametrize("sets", [(), ALL_ON, GOVERSE, GOVERSE_ALL_ON])
def test_render_validates_strictly(helm: str, sets: tuple[str, ...]) -> None:
    errs = []
    for d in rendered(helm, *sets):
        try:
            errs += [f"{d['kind']}/{d['metadata']['name']}: {e}" for e in k8sschema.errors(d, "1.31", strict=True)]
        except k8sschema.NoSchema:
            assert d["kind"] in ("ServiceMonitor", "PrometheusRule"), f"no schema for {d['kind']}"
    assert errs == []


@pytest.mark.parametrize("sets", [(), ALL_ON, GOVERSE, GOVERSE_ALL_ON])
def test_render_passes_the_manifest_policy_checks(helm: str, sets: tuple[str, ...]) -> None:
    docs = rendered(helm, *sets)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "goverse", "labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}}  # helm installs into an existing namespace
    assert policy.violations([ns, *docs]) == []


def test_a_created_secret_is_test_cluster_only_and_flagged(helm: str) -> None:
    """postgres.auth.create puts a generated password into the release: the policy names it."""
    docs = rendered(helm, "postgres.auth.create=true")
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert secret["metadata"]["name"] == "goverse-postgres" and len(secret["stringData"]["postgres-password"]) == 32
    assert any("postgres-password is filled" in v for v in policy.check_5_3_no_literal_credentials(docs))
    assert not [d for d in rendered(helm) if d["kind"] == "Secret"], "no Secret by default"


@pytest.mark.parametrize("sets", [(), GOVERSE])
def test_render_allows_exactly_the_seed_network_paths(helm: str, sets: tuple[str, ...]) -> None:
    paths, open_ports = netpol.allowed_paths(rendered(helm, *sets))
    assert paths == set(netpol.EDGES)
    assert open_ports == set(netpol.OPEN_PORTS)


def test_autoscaled_workloads_carry_no_replicas(helm: str) -> None:
    docs = rendered(helm, *ALL_ON)
    for kind, name in (("StatefulSet", "goverse-node"), ("Deployment", "goverse-gate")):
        w = next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
        assert "replicas" not in w["spec"], name


def test_external_etcd_and_postgres_replace_the_in_chart_ones(helm: str) -> None:
    docs = rendered(helm, "etcd.enabled=false", "etcd.external.endpoints={etcd.db:2379}",
                    "postgres.enabled=false", "postgres.external.host=pg.db", "postgres.external.port=6432")
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("StatefulSet", "goverse-etcd") not in names and ("StatefulSet", "goverse-postgres") not in names
    config = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["config.yaml"])
    assert config["cluster"]["etcd"]["endpoints"] == ["etcd.db:2379"]
    assert (config["postgres"]["host"], config["postgres"]["port"]) == ("pg.db", 6432)


def test_a_config_change_rolls_the_pods(helm: str) -> None:
    def checksums(*sets: str) -> set[str]:
        return {d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
                for d in rendered(helm, *sets) if d["kind"] in ("StatefulSet", "Deployment")
                and d["metadata"]["name"] in ("goverse-node", "goverse-gate")}
    before, after = checksums(), checksums("cluster.shards=128")
    assert len(before) == 1 and len(after) == 1 and before != after


def test_monitoring_selector_labels_and_prometheus_selectors_are_values(helm: str) -> None:
    docs = rendered(helm, "monitoring.enabled=true", "monitoring.labels.release=prom",
                    "monitoring.prometheusNamespaceSelector.matchLabels.team=obs")
    monitors = [d for d in docs if d["kind"] in ("ServiceMonitor", "PrometheusRule")]
    assert len(monitors) == 5 and all(d["metadata"]["labels"]["release"] == "prom" for d in monitors)
    scrape = next(d for d in docs
                  if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "allow-prometheus-scrape")
    peer = scrape["spec"]["ingress"][0]["from"][0]
    assert peer == {"namespaceSelector": {"matchLabels": {"team": "obs"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    dashboards = [d for d in docs if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]]
    assert len(dashboards) == 4
    for d in dashboards:
        (text,) = d["data"].values()
        assert json.loads(text)["uid"].startswith("goverse-")


def _alerts(docs: list[dict[str, Any]]) -> set[str]:
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    return {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}


def test_rules_follow_what_the_chart_runs(helm: str) -> None:
    kustomize_rule = next(d for d in yaml.safe_load_all(
        (ROOT / "manifests/components/monitoring/prometheusrule.yaml").read_text()) if d)
    everything = {r["alert"] for g in kustomize_rule["spec"]["groups"] for r in g["rules"]}
    assert _alerts(rendered(helm, "monitoring.enabled=true")) == everything
    external = _alerts(rendered(helm, "monitoring.enabled=true", "etcd.enabled=false",
                                "etcd.external.endpoints={etcd.db:2379}", "postgres.enabled=false",
                                "postgres.external.host=pg.db"))
    # an external etcd would look absent (= down) to GoverseEtcdDown
    assert external == everything - {"GoverseEtcdDown", "GoverseEtcdNoLeader", "GoverseEtcdDatabaseNearQuota",
                                     "GoversePostgresDown"}


def test_chart_rendered_rules_pass_the_promtool_unit_tests(helm: str, tmp_path: Path) -> None:
    """The chart re-serialises the rules (to filter groups): they must stay what promtool tested."""
    promtool = go_tool("promtool")
    rule = next(d for d in rendered(helm, "monitoring.enabled=true") if d["kind"] == "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    shutil.copy(ROOT / "tests/data/alerts/goverse_rules_test.yaml", tmp_path / "tests.yaml")
    res = subprocess.run([promtool, "test", "rules", "tests.yaml"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_chart_copies_of_rules_dashboards_and_scripts_equal_the_kustomize_ones() -> None:
    rule = next(d for d in yaml.safe_load_all(
        (ROOT / "manifests/components/monitoring/prometheusrule.yaml").read_text()) if d)
    assert yaml.safe_load((CHART / "files/prometheusrule-groups.yaml").read_text()) == rule["spec"]
    mine = sorted(p.name for p in (CHART / "files/dashboards").glob("*.json"))
    theirs = sorted(p.name for p in (ROOT / "manifests/components/dashboards").glob("*.json"))
    assert mine == theirs
    for name in mine:
        assert json.loads((CHART / "files/dashboards" / name).read_text()) == json.loads(
            (ROOT / "manifests/components/dashboards" / name).read_text()), name
    # Helm reads no file outside the chart, so the Goverse config renderer is a copy: the same bytes
    script = "render-config.sh"
    assert (CHART / "files" / script).read_bytes() == (ROOT / "manifests/stacks/goverse" / script).read_bytes()


# --- the same workloads as kustomize ------------------------------------------------------------------------
def _container(c: dict[str, Any]) -> dict[str, Any]:
    return {"name": c["name"], "image": c.get("image"), "command": c.get("command"), "args": c.get("args"),
            "env": sorted(e["name"] for e in c.get("env", [])),
            "ports": [(p.get("name"), p["containerPort"]) for p in c.get("ports", [])],
            "probes": {k: c.get(k) for k in ("startupProbe", "livenessProbe", "readinessProbe")},
            "preStop": (c.get("lifecycle") or {}).get("preStop")}


def workload_shapes(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for d in docs:
        if d.get("kind") not in WORKLOADS:
            continue
        spec = d["spec"]["jobTemplate"]["spec"] if d["kind"] == "CronJob" else d["spec"]
        pod = spec["template"]["spec"]
        name = re.sub(r"-r\d+$", "", d["metadata"]["name"]) if d["kind"] == "Job" else d["metadata"]["name"]
        out[(d["kind"], name)] = {
            "init": [_container(c) for c in pod.get("initContainers", [])],
            "containers": [_container(c) for c in pod["containers"]],
            "volumes": sorted(v["name"] for v in pod.get("volumes", [])),
        }
    return out


def shape_differences(a: dict[tuple[str, str], dict[str, Any]], b: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    out = [f"only in the chart: {k}" for k in sorted(set(a) - set(b))]
    out += [f"only in kustomize: {k}" for k in sorted(set(b) - set(a))]
    for k in sorted(set(a) & set(b)):
        for field in ("init", "containers", "volumes"):
            if a[k][field] != b[k][field]:
                out.append(f"{k} {field}:\n  chart     {a[k][field]}\n  kustomize {b[k][field]}")
    return out


@needs_kubectl
@pytest.mark.parametrize("stack", ["reference", "goverse"])
def test_default_render_has_the_workloads_of_the_production_overlay(helm: str, stack: str) -> None:
    chart = workload_shapes(rendered(helm, f"stack={stack}"))
    kustomize = workload_shapes(render.kustomize_build(render.overlay_dir("production", stack)))
    assert len(chart) == 9
    assert shape_differences(chart, kustomize) == []


@needs_kubectl
def test_goverse_stack_services_and_config_match_the_overlay(helm: str) -> None:
    chart = rendered(helm, *GOVERSE, "monitoring.enabled=true")  # production has monitoring (etcd-metrics)
    kustomize = render.kustomize_build(render.overlay_dir("production", "goverse"))

    def ports(ds: list[dict[str, Any]]) -> dict[str, list[Any]]:
        return {d["metadata"]["name"]: sorted((p["name"], p["port"]) for p in d["spec"]["ports"])
                for d in ds if d["kind"] == "Service"}

    def config(ds: list[dict[str, Any]], name: str) -> Any:
        cm = next(d for d in ds if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(name))
        (text,) = cm["data"].values()
        return text if name == "goverse-render" else yaml.safe_load(text)

    assert ports(chart) == ports(kustomize)
    assert config(chart, "goverse-config") == config(kustomize, "goverse-config")
    assert config(chart, "goverse-render") == config(kustomize, "goverse-render")


@needs_kubectl
def test_the_comparison_notices_a_difference(helm: str) -> None:
    docs = rendered(helm)
    kustomize = workload_shapes(render.kustomize_build(render.overlay_dir("production", "reference")))
    for mutate in (
        lambda w: w["spec"]["template"]["spec"]["containers"][0]["readinessProbe"].update(periodSeconds=9),
        lambda w: w["spec"]["template"]["spec"]["containers"][0]["env"].pop(),
        lambda w: w["spec"]["template"]["spec"]["containers"][0].update(image="goverse-harness/refstack:0.0.9"),
    ):
        broken = copy.deepcopy(docs)
        mutate(next(d for d in broken if d["kind"] == "Deployment" and d["metadata"]["name"] == "goverse-gate"))
        assert shape_differences(workload_shapes(broken), kustomize), "a difference went unnoticed"
