"""The alert rules of components/monitoring: valid PromQL, unit-tested with promtool, each alert with a
runbook, and the knobs kube-prometheus-stack needs (selector labels, no hard-coded Prometheus namespace).

promtool is the real one (tests/support/gotools.py builds it from the Go module proxy). Every rule check is also
run on a deliberately broken copy and must fail there.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.gotools import go_tool
from tests.support.paths import ROOT

MONITORING = ROOT / "manifests" / "components" / "monitoring"
RULE_TESTS = ROOT / "tests" / "data" / "alerts" / "goverse_rules_test.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks"
RELEASE_LABEL = ("release", "kube-prometheus-stack")


def prometheus_rule() -> dict[str, Any]:
    docs = list(yaml.safe_load_all((MONITORING / "prometheusrule.yaml").read_text()))
    (rule,) = [d for d in docs if d and d["kind"] == "PrometheusRule"]
    return rule


def alerts(rule: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rule = rule or prometheus_rule()
    return [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]


@pytest.fixture(scope="module")
def promtool() -> str:
    return go_tool("promtool")


def write_rules(tmp: Path, spec: dict[str, Any]) -> Path:
    """The PrometheusRule's spec is a Prometheus rule file; write it with the unit tests beside it."""
    (tmp / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp / "tests.yaml")
    return tmp


def run(exe: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=300, check=False)


# --- promtool ----------------------------------------------------------------------------------------
def test_promtool_check_rules(promtool: str, tmp_path: Path) -> None:
    d = write_rules(tmp_path, prometheus_rule()["spec"])
    res = run(promtool, "check", "rules", "rules.yaml", cwd=d)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in res.stdout + res.stderr


def test_promtool_check_rules_fails_on_bad_promql(promtool: str, tmp_path: Path) -> None:
    spec = copy.deepcopy(prometheus_rule()["spec"])
    spec["groups"][0]["rules"][0]["expr"] = "sum by (namespace (up)"
    res = run(promtool, "check", "rules", "rules.yaml", cwd=write_rules(tmp_path, spec))
    assert res.returncode != 0, res.stdout


def test_promtool_unit_tests_pass(promtool: str, tmp_path: Path) -> None:
    d = write_rules(tmp_path, prometheus_rule()["spec"])
    res = run(promtool, "test", "rules", "tests.yaml", cwd=d)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("alert, change", [
    # the down alert without absent(): silent when every gate target disappears
    ("GoverseGateDown", lambda r: r.update(expr='up{job="goverse-gate"} == 0')),
    # HighObjectCount on the level of the never-decreasing gauge (the old rule)
    ("HighObjectCount", lambda r: r.update(expr="sum by (namespace, pod) (goverse_objects_total) > 10000")),
    # mapping write failures counting lost races too
    ("GoverseShardMappingWriteFailures", lambda r: r.update(
        expr="sum by (namespace) (rate(goverse_shard_mapping_write_failures_total[5m])) > 0")),
    ("GoversePersistentVolumeFillingUp", lambda r: r.update(**{"for": "1h"})),
])
def test_promtool_unit_tests_fail_on_a_broken_rule(promtool: str, tmp_path: Path, alert: str, change: Any) -> None:
    spec = copy.deepcopy(prometheus_rule()["spec"])
    (rule,) = [r for g in spec["groups"] for r in g["rules"] if r.get("alert") == alert]
    change(rule)
    res = run(promtool, "test", "rules", "tests.yaml", cwd=write_rules(tmp_path, spec))
    assert res.returncode != 0, f"the unit tests did not notice a broken {alert}:\n{res.stdout}"
    assert alert in res.stdout + res.stderr


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    cases = [c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    for a in alerts():
        mine = [c for c in cases if c["alertname"] == a["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{a['alert']}: no promtool case where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{a['alert']}: no promtool case where it stays silent"


# --- runbooks ----------------------------------------------------------------------------------------
def runbook_problems(rule: dict[str, Any]) -> list[str]:
    out = []
    for a in alerts(rule):
        name = a["alert"]
        url = a.get("annotations", {}).get("runbook_url", "")
        if url != f"docs/runbooks/{name}.md":
            out.append(f"{name}: runbook_url {url!r}, expected docs/runbooks/{name}.md")
            continue
        page = ROOT / url
        if not page.is_file():
            out.append(f"{name}: {url} does not exist")
            continue
        text = page.read_text()
        for part in ("## Symptom", "## Confirm", "## Act"):
            if part not in text:
                out.append(f"{name}: {url} has no {part!r} section")
        if not re.search(r"```sh\n.*\S", text, re.S):
            out.append(f"{name}: {url} gives no command to confirm")
    return out


def test_every_alert_has_a_runbook_with_symptom_confirm_act() -> None:
    assert runbook_problems(prometheus_rule()) == []
    assert len(alerts()) >= 16


def test_runbook_check_fails_on_a_missing_or_wrong_runbook() -> None:
    rule = copy.deepcopy(prometheus_rule())
    rs = alerts(rule)
    rs[0]["annotations"]["runbook_url"] = "docs/runbooks/Nope.md"
    rs[1]["alert"] = "AlertWithoutPage"
    rs[1]["annotations"]["runbook_url"] = "docs/runbooks/AlertWithoutPage.md"
    problems = runbook_problems(rule)
    assert any("expected docs/runbooks/" in p for p in problems)
    assert any("AlertWithoutPage.md does not exist" in p for p in problems)


def test_no_runbook_page_without_an_alert() -> None:
    names = {a["alert"] for a in alerts()}
    pages = {p.stem for p in RUNBOOKS.glob("*.md")} - {"README", "restore", "operations"}
    assert pages <= names, f"runbooks for alerts that do not exist: {sorted(pages - names)}"


# --- what kube-prometheus-stack needs ----------------------------------------------------------------
def monitoring_objects(component: str = "monitoring") -> list[dict[str, Any]]:
    d = ROOT / "manifests" / "components" / component
    files = yaml.safe_load((d / "kustomization.yaml").read_text())["resources"]
    return [doc for f in files for doc in yaml.safe_load_all((d / f).read_text()) if doc]


@pytest.mark.parametrize("component", ["monitoring", "monitoring-inspector"])
def test_monitors_and_rules_carry_the_release_label(component: str) -> None:
    objs = [o for o in monitoring_objects(component) if o["kind"] in ("ServiceMonitor", "PrometheusRule")]
    assert objs
    for o in objs:
        assert o["metadata"]["labels"].get(RELEASE_LABEL[0]) == RELEASE_LABEL[1], o["metadata"]["name"]


@pytest.mark.parametrize("component", ["monitoring", "monitoring-inspector"])
def test_prometheus_namespace_is_not_hard_coded(component: str) -> None:
    pols = [o for o in monitoring_objects(component) if o["kind"] == "NetworkPolicy"]
    assert pols
    for p in pols:
        for rule in p["spec"]["ingress"]:
            for peer in rule["from"]:
                assert "kubernetes.io/metadata.name" not in yaml.safe_dump(peer), p["metadata"]["name"]
                assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
