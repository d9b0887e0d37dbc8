"""Every metric a dashboard or an alert names exists where it is scraped from.

Goverse names (``goverse_*``) are checked against a live reference stack's /metrics (real etcd, real
PostgreSQL, real node and gate processes, as in tests/refstack/test_refstack_cluster.py); etcd names against the
real etcd's /metrics. The few that only real Goverse exposes are listed with the contract section that
names them; Kubernetes-level names (kube-state-metrics, kubelet/cAdvisor) cannot be scraped without a
cluster and are listed with their source. An unlisted name that is not on a live scrape fails: a typo in
a dashboard or a rule cannot pass.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from harness.platforms.local.services import EtcdCluster, PostgresServer
from harness.refstack.localcluster import LocalCluster, fresh_database
from tests.support.paths import ROOT

DASHBOARDS = sorted((ROOT / "manifests" / "components" / "dashboards").glob("*.json"))
RULES = ROOT / "manifests" / "components" / "monitoring" / "prometheusrule.yaml"

#: names only real Goverse exposes -> where the contract (docs' goverse-contract.md) names them
GOVERSE_ONLY = {"goverse_objects_total": "contract §3.1 (gauge, never decremented)"}
#: names from outside the stack -> who exports them (kube-prometheus-stack scrapes both by default)
KUBERNETES = {
    "kube_statefulset_status_replicas_ready": "kube-state-metrics",
    "kube_pod_container_resource_limits": "kube-state-metrics",
    "kube_pod_container_status_waiting_reason": "kube-state-metrics",
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
    "kube_cronjob_status_last_successful_time": "kube-state-metrics",
    "container_memory_working_set_bytes": "kubelet (cAdvisor)",
    "container_cpu_usage_seconds_total": "kubelet (cAdvisor)",
    "kubelet_volume_stats_available_bytes": "kubelet (volume stats)",
    "kubelet_volume_stats_capacity_bytes": "kubelet (volume stats)",
}
#: made by Prometheus itself for every target
SYNTHETIC = {"up": "Prometheus (per scrape target)"}

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
             "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords, label names
    (inside {} or by/on/... lists), durations or Grafana variables."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # string literals
    e = re.sub(r"\$\{?\w+\}?", "", e)                         # Grafana variables
    e = re.sub(r"\{[^}]*\}", "", e)                           # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                          # range selectors
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or m.group().lower() in _KEYWORDS:
            continue
        names.add(m.group())
    return names


def named_metrics() -> dict[str, set[str]]:
    """metric name -> where it is named (dashboard file / alert)."""
    out: dict[str, set[str]] = {}
    for f in DASHBOARDS:
        d = json.loads(f.read_text())
        for p in d["panels"]:
            for t in p["targets"]:
                for n in metric_names(t["expr"]):
                    out.setdefault(n, set()).add(f"{f.name}: {p['title']}")
    rule = next(d for d in yaml.safe_load_all(RULES.read_text()) if d)
    for g in rule["spec"]["groups"]:
        for r in g["rules"]:
            for n in metric_names(r["expr"]):
                out.setdefault(n, set()).add(f"alert {r.get('alert')}")
    return out


def exposed(text: str) -> set[str]:
    """Sample names a Prometheus text exposition offers, from its # TYPE lines (a labelled family with no
    children yet still has one) and its samples; histograms with their _bucket/_sum/_count series."""
    out = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            out.add(name)
            if kind == "histogram":
                out.update(f"{name}{s}" for s in ("_bucket", "_sum", "_count"))
        elif line and not line.startswith("#"):
            out.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return out


def missing(names: dict[str, set[str]], goverse: set[str], etcd: set[str]) -> list[str]:
    out = []
    for n, where in sorted(names.items()):
        if n in GOVERSE_ONLY or n in KUBERNETES or n in SYNTHETIC:
            continue
        source = etcd if n.startswith("etcd_") else goverse
        if n not in source:
            out.append(f"{n} (named by {', '.join(sorted(where))}) is on no live /metrics and is not listed")
    return out


# --- pure ---------------------------------------------------------------------------------------------
def test_metric_names_are_parsed_from_promql() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, pod) (rate(goverse_operation_duration_seconds_bucket'
            '{job="goverse-gate", namespace="$namespace", status!="success"}[5m]))) / on (pod) group_left '
            'max by (pod) (kube_pod_container_resource_limits{resource="memory"}) or absent(up{job="x"}) > 0.9')
    assert metric_names(expr) == {"goverse_operation_duration_seconds_bucket", "kube_pod_container_resource_limits",
                                  "up"}


def test_every_dashboard_and_alert_names_metrics() -> None:
    names = named_metrics()
    assert len(DASHBOARDS) == 4
    for f in DASHBOARDS:
        assert any(any(w.startswith(f.name) for w in where) for where in names.values()), f.name
    assert "goverse_method_calls_total" in names and "etcd_server_has_leader" in names


def dashboard_problems(d: dict[str, Any]) -> list[str]:
    """What would make Grafana show a broken dashboard: duplicate panel ids, overlapping panels, a panel
    without queries or not on the dashboard's data source variable, an undefined variable."""
    out: list[str] = []
    variables = {v["name"] for v in d.get("templating", {}).get("list", [])}
    if not {"datasource", "namespace"} <= variables:
        out.append(f"variables {sorted(variables)} lack datasource/namespace")
    ids = [p["id"] for p in d["panels"]]
    if len(ids) != len(set(ids)):
        out.append("duplicate panel ids")
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        if mine & cells:
            out.append(f"panel {p['title']!r} overlaps another")
        cells |= mine
        if not p.get("targets") or any(not t.get("expr") for t in p["targets"]):
            out.append(f"panel {p['title']!r} has no query")
        if p["datasource"]["uid"] != "${datasource}":
            out.append(f"panel {p['title']!r} is not on the datasource variable")
        for var in re.findall(r"\$\{?(\w+)", " ".join(t["expr"] for t in p["targets"])):
            if var not in variables:
                out.append(f"panel {p['title']!r} uses undefined variable ${var}")
    return out


def test_dashboards_are_well_formed() -> None:
    uids = []
    for f in DASHBOARDS:
        d = json.loads(f.read_text())
        uids.append(d["uid"])
        assert dashboard_problems(d) == [], f.name
    assert len(set(uids)) == len(uids)


def test_dashboard_check_fails_on_a_broken_dashboard() -> None:
    d = json.loads(DASHBOARDS[0].read_text())
    d["panels"][1]["id"] = d["panels"][0]["id"]
    d["panels"][1]["gridPos"] = dict(d["panels"][0]["gridPos"])
    d["panels"][2]["targets"][0]["expr"] += ' * on() group_left() vector($nope)'
    problems = dashboard_problems(d)
    assert any("duplicate" in p for p in problems) and any("overlaps" in p for p in problems)
    assert any("$nope" in p for p in problems)


def test_listed_names_are_still_used() -> None:
    names = named_metrics()
    for listed in (GOVERSE_ONLY, KUBERNETES, SYNTHETIC):
        assert set(listed) <= set(names), f"listed but named nowhere: {sorted(set(listed) - set(names))}"


def test_an_unlisted_unknown_name_is_reported() -> None:
    problems = missing({"goverse_method_cals_total": {"alert X"}, "etcd_nope": {"d.json: p"}},
                       {"goverse_method_calls_total"}, {"etcd_server_has_leader"})
    assert len(problems) == 2 and "goverse_method_cals_total" in problems[1] and "etcd_nope" in problems[0]


# --- against a live stack -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stack(etcd: EtcdCluster, postgres: PostgresServer) -> Iterator[LocalCluster]:
    workdir = Path(tempfile.mkdtemp(prefix="gvh-monitoring-metrics-"))
    c = LocalCluster(workdir, etcd.client_urls, fresh_database(postgres), nodes=2, gates=1, shards=16)
    try:
        c.start(timeout=60)
        yield c
    finally:
        c.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.integration
def test_every_named_metric_exists_on_a_live_stack(stack: LocalCluster, etcd: EtcdCluster) -> None:
    goverse: set[str] = set()
    for name, member in stack.members.items():
        if name.startswith(("node-", "gate-")):
            goverse |= exposed(requests.get(f"{member.ops}/metrics", timeout=5).text)
    etcd_names = exposed(requests.get(f"{etcd.client_urls[0]}/metrics", timeout=5).text)
    assert "goverse_shards_total" in goverse and "etcd_server_has_leader" in etcd_names, "scrapes look wrong"
    assert missing(named_metrics(), goverse, etcd_names) == []
    # the Goverse-only names really are absent from the reference stack (else they belong to the check)
    assert not set(GOVERSE_ONLY) & goverse
