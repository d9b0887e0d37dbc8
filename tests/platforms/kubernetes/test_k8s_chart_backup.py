"""Against a real cluster (marker ``k8s``): the stack installed from the Helm chart, its backup CronJobs
run as Jobs, and ``helm uninstall`` + the namespace deletion leaving nothing.

One module-scoped ``helm install`` (``deploy_with=helm``): the chart's own CronJobs (not the kustomize
component's) produce an etcd snapshot and a PostgreSQL dump that ``etcdctl snapshot status`` and
``pg_restore --list`` accept, and the teardown leaves no namespace, no release and no volume of the run.
Same environment as tests/platforms/kubernetes/test_k8s_cluster.py (``GVH_KUBE_CONTEXT``, ``GVH_IMAGE``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.platforms.base import StackSpec
from harness.platforms.kubernetes import apply as k8s
from tests.support.kubecluster import deployed, platform_or_skip

pytestmark = pytest.mark.k8s


def _leftovers(dyn: Any, namespace: str) -> list[str]:
    left = []
    if namespace in {n["metadata"]["name"] for n in k8s.resource(dyn, "v1", "Namespace").get().to_dict()["items"]}:
        left.append(f"namespace {namespace}")
    for pv in k8s.resource(dyn, "v1", "PersistentVolume").get().to_dict()["items"]:
        if ((pv["spec"].get("claimRef") or {}).get("namespace")) == namespace:
            left.append(f"PersistentVolume {pv['metadata']['name']} ({pv['status'].get('phase')})")
    return left


@pytest.fixture(scope="module")
def helm_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from harness.waiting import wait_until

    def nothing_left(dep: Any) -> None:
        # PVs are released when their claims go and deleted by the provisioner right after
        wait_until(lambda: not _leftovers(dep.dyn, dep.namespace), 120, "nothing of the run left",
                   interval=0.5, describe=lambda: str(_leftovers(dep.dyn, dep.namespace)))

    with deployed(platform_or_skip(deploy_with="helm"), StackSpec(nodes=2, gates=1, etcd_members=1, inspector=False),
                  tmp_path_factory.mktemp("k8s-helm"), nothing_left) as dep:
        yield dep


def test_the_chart_installed_the_stack_as_a_helm_release(helm_stack: Any) -> None:
    secrets = helm_stack.core.list_namespaced_secret(helm_stack.namespace, label_selector="owner=helm").items
    # revision 1: etcd, PostgreSQL, the schema; revision 2: the Goverse workloads (helm.infra_values)
    assert sorted((s.metadata.labels["name"], s.metadata.labels["version"]) for s in secrets) == [
        ("goverse", "1"), ("goverse", "2")]
    jobs = k8s.resource(helm_stack.dyn, "batch/v1", "Job").get(namespace=helm_stack.namespace).to_dict()["items"]
    assert "goverse-schema-init-r2" in {j["metadata"]["name"] for j in jobs}  # the chart's, not kustomize's
    pods = helm_stack.core.list_namespaced_pod(helm_stack.namespace, label_selector="app.kubernetes.io/name in "
                                               "(goverse-node,goverse-gate)").items
    restarts = {p.metadata.name: sum(c.restart_count for c in p.status.container_statuses or []) for p in pods}
    assert len(restarts) == 3 and not any(restarts.values()), restarts  # started on a ready database
    assert helm_stack.timings["helm_install_s"] > 0 and helm_stack.wait_converged(30) >= 0


def test_the_charts_backup_cronjobs_produce_a_valid_snapshot_and_dump(helm_stack: Any, tmp_path: Path) -> None:
    from harness.platforms.kubernetes.backup import KubernetesBackupOperations

    ops = KubernetesBackupOperations(helm_stack)
    backup = ops.backup(tmp_path / "b")
    record = json.loads((tmp_path / "b" / "backup.json").read_text())
    assert str(backup.etcd_snapshot).startswith("/backups/etcd-snapshot-")
    assert str(backup.pg_dump).startswith("/backups/goverse-") and str(backup.pg_dump).endswith(".dump")
    assert record["etcd_snapshot"]["status"]["totalKey"] > 0  # the shard map at least
    assert "public.goverse_objects" in record["pg_dump"]["tables"]
    assert backup.sizes["pg_dump"] > 0 and backup.t_start <= backup.t_point <= backup.t_end
    jobs = k8s.resource(helm_stack.dyn, "batch/v1", "Job").get(namespace=helm_stack.namespace).to_dict()["items"]
    manual = [j for j in jobs if (j["metadata"].get("annotations") or {}).get("cronjob.kubernetes.io/instantiate")]
    assert {r["name"] for j in manual for r in j["metadata"]["ownerReferences"]} == {
        "goverse-etcd-backup", "goverse-postgres-backup"}
