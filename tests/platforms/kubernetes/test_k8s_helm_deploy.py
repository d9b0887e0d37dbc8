"""``deploy_with=helm``: the chart values a run installs, rendered by the real helm (pure, no cluster).

The chart must give the stack the harness asked for: the same Goverse config the kustomize path writes
for the spec (shards, prefix, timers), the replica counts, the image, the backup CronJobs with a shell
image a test cluster has, and a generated password (never in the values file). Bad settings get one
clear error naming the setting.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.platforms.base import PlatformError, StackSpec, Timers
from harness.platforms.kubernetes import helm, policy, render, stackconfig
from harness.platforms.kubernetes.platform import KubernetesOptions
from harness.settings import SettingsError, load_settings
from tests.support.gotools import go_tool

SPEC = StackSpec(nodes=4, gates=1, shards=32, etcd_members=3, inspector=False, prefix="/gvh-x",
                 timers=Timers(lease_ttl=2.0, stability=0.5, tick=0.1, call_timeout=4.0, shutdown_grace=6.0))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    binary = go_tool("helm")
    values = tmp_path_factory.mktemp("helm") / "values.yaml"
    values.write_text(yaml.safe_dump(helm.chart_values(SPEC, "goverse-harness/refstack:dev")))
    return helm.template(binary, values, "gvh-h3lm")


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_the_chart_gets_the_config_the_kustomize_path_writes(rendered: list[dict[str, Any]]) -> None:
    config = yaml.safe_load(find(rendered, "ConfigMap", "goverse-config")["data"]["config.yaml"])
    assert config == stackconfig.reference_config(SPEC)


def test_the_chart_gets_the_specs_shape_and_image(rendered: list[dict[str, Any]]) -> None:
    assert find(rendered, "StatefulSet", "goverse-node")["spec"]["replicas"] == 4
    assert find(rendered, "Deployment", "goverse-gate")["spec"]["replicas"] == 1
    assert find(rendered, "StatefulSet", "goverse-etcd")["spec"]["replicas"] == 3
    assert not [d for d in rendered if d["metadata"]["name"] == "goverse-inspector"]
    node = find(rendered, "StatefulSet", "goverse-node")["spec"]["template"]["spec"]["containers"][0]
    assert node["image"] == "goverse-harness/refstack:dev"
    cron_images = {c["image"] for d in rendered if d["kind"] == "CronJob"
                   for c in d["spec"]["jobTemplate"]["spec"]["template"]["spec"].get("initContainers", [])
                   + d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]}
    assert render.BACKUP_SHELL_IMAGE in cron_images and not any("busybox" in i for i in cron_images)
    assert {d["metadata"]["name"] for d in rendered if d["kind"] == "CronJob"} >= {
        "goverse-etcd-backup", "goverse-postgres-backup"}


def test_the_password_is_generated_in_the_release_not_written_down(rendered: list[dict[str, Any]]) -> None:
    secret = find(rendered, "Secret", "goverse-postgres")
    password = secret["stringData"]["postgres-password"]
    assert len(password) >= 24
    assert password not in yaml.safe_dump(helm.chart_values(SPEC, "goverse-harness/refstack:dev"))


def test_what_the_harness_installs_passes_the_seed_policy(rendered: list[dict[str, Any]]) -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gvh-h3lm", "labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}}
    problems = policy.violations([ns, *rendered])
    # the release's generated password is the one literal credential, flagged as test-cluster-only
    assert any(p.startswith(helm.GENERATED_SECRET_FINDING) for p in problems)
    assert [p for p in problems if not p.startswith(helm.GENERATED_SECRET_FINDING)] == []


@pytest.mark.parametrize("spec, image, words", [
    (StackSpec(stack="goverse"), None, "stack=reference only"),
    (StackSpec(bugs=("no-fencing",)), None, "seeded bugs"),
    (StackSpec(), "goverse-harness/refstack@sha256:" + "a" * 64, "not a digest"),
])
def test_what_the_chart_cannot_do_is_one_clear_error(spec: StackSpec, image: str | None, words: str) -> None:
    with pytest.raises(PlatformError, match=words):
        helm.chart_values(spec, image)


def test_deploy_with_is_checked_where_it_is_set() -> None:
    with pytest.raises(PlatformError, match="deploy_with: 'kubectl' is not one of kustomize, helm"):
        KubernetesOptions(deploy_with="kubectl")
    with pytest.raises(SettingsError, match="deploy_with: Input should be 'kustomize' or 'helm'"):
        load_settings({"deploy_with": "Helm"}, env={})
    with pytest.raises(SettingsError, match="deploy_with: helm deploys on Kubernetes only"):
        load_settings({"deploy_with": "helm"}, env={})
    with pytest.raises(SettingsError, match="seeded bugs"):
        load_settings({"deploy_with": "helm", "platform": "kubernetes", "bugs": "no-fencing"}, env={})
    assert load_settings({"deploy_with": "helm", "platform": "kubernetes"}, env={}).deploy_with == "helm"


def test_helm_binary_names_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GVH_HELM", str(tmp_path / "nope"))
    with pytest.raises(PlatformError, match="GVH_HELM: .* is not a file"):
        helm.helm_binary()
    monkeypatch.delenv("GVH_HELM")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(PlatformError, match="deploy_with=helm needs helm"):
        helm.helm_binary()


def test_a_failing_helm_is_an_error_with_helms_message(tmp_path: Path) -> None:
    binary = go_tool("helm")
    broken = tmp_path / "values.yaml"
    broken.write_text(yaml.safe_dump({"stack": "other"}))
    with pytest.raises(PlatformError, match='helm template failed: .*stack: "other" is not one of'):
        helm.template(binary, broken, "gvh-x")
    assert shutil.which("true") and subprocess.run(["true"], check=False).returncode == 0


def test_settled_waits_for_late_nodes_to_get_their_share() -> None:
    from harness.cluster_state import ClusterState

    def state(owner_of: list[str], nodes: set[str]) -> ClusterState:
        return ClusterState({i: (o, o) for i, o in enumerate(owner_of)}, nodes, set(), "a", len(owner_of))

    late = state(["a"] * 6 + ["b"] * 2 + ["c"] * 2, {"a", "b", "c"})  # converged, not yet rebalanced
    assert late.converged and helm.settled(late, 3) == (False, "owners [2, 2, 6]")
    assert helm.settled(state(["a"] * 4 + ["b"] * 3 + ["c"] * 3, {"a", "b", "c"}), 3) == (True, "owners [3, 3, 4]")
    assert helm.settled(state(["a"] * 5 + ["b"] * 5, {"a", "b", "c"}), 3)[0] is False  # c owns nothing yet
    moving = ClusterState({0: ("b", "a"), 1: ("a", "a")}, {"a", "b"}, set(), "a", 2)
    assert helm.settled(moving, 2) == (False, "1 shards unconverged")


def test_the_first_revision_holds_only_etcd_postgres_and_the_schema(tmp_path: Path) -> None:
    values = helm.chart_values(SPEC, "goverse-harness/refstack:dev")
    infra = helm.infra_values(values)
    assert (infra["node"]["replicas"], infra["gate"]["replicas"], infra["inspector"]["enabled"]) == (0, 0, False)
    assert values["node"]["replicas"] == 4 and infra["etcd"] == values["etcd"]  # the final values untouched
    path = tmp_path / "infra.yaml"
    path.write_text(yaml.safe_dump(infra))
    docs = helm.template(go_tool("helm"), path, "gvh-h3lm")
    replicas = {d["metadata"]["name"]: d["spec"].get("replicas") for d in docs
                if d["kind"] in ("StatefulSet", "Deployment")}
    assert replicas == {"goverse-etcd": 3, "goverse-postgres": 1, "goverse-node": 0, "goverse-gate": 0}


def test_the_charts_postgres_finds_a_silently_dead_client(rendered: list[dict[str, Any]]) -> None:
    from tests.support.postgres_args import DEAD_CLIENT_SETTINGS, postgres_settings

    assert postgres_settings(rendered).items() >= DEAD_CLIENT_SETTINGS.items()
