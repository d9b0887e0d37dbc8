"""The backup/restore Jobs the Kubernetes operations create, built from the rendered CronJobs (pure),
and the parsers of what those Jobs print.

The CronJobs come from a real render of a run's kustomization (kind overlay + components/backup, as
the platform deploys it); every derived Job must pass the strict Kubernetes schema and the seed policy
checks the platform applies before deploying, keep the CronJob's pod identity (the backup
NetworkPolicies select it), and run what docs/runbooks/restore.md says. The PostgreSQL restore Job's
script is run for real against a local PostgreSQL (tests/conftest.py) with a dump pg_dump made.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from harness.platforms.base import StackSpec
from harness.platforms.kubernetes import backup_jobs, k8sschema, policy, render, stackconfig
from harness.platforms.local.services import PG_SUPERUSER

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not on PATH")


@functools.cache
def run_docs() -> tuple[dict[str, Any], ...]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        opts = render.RunOptions(run_id="b4ck", images={"busybox": render.BACKUP_SHELL_IMAGE})
        out = render.write_run_kustomization(tmp, opts, stackconfig.stack_config(StackSpec()))
        return tuple(render.kustomize_build(out))


def doc(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in run_docs() if d["kind"] == kind and d["metadata"]["name"] == name)


def cronjob(component: str) -> dict[str, Any]:
    cj = dict(doc("CronJob", backup_jobs.CRONJOBS[component]))
    cj["metadata"] = {**cj["metadata"], "uid": "0f0f-uid"}  # as read back from the API server
    return cj


def pod(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    p = pod(job)
    return list(p.get("initContainers") or []) + list(p["containers"])


def test_a_run_carries_the_backup_cronjobs_with_a_shell_image_the_cluster_has() -> None:
    for component in ("etcd", "postgres"):
        cj = doc("CronJob", backup_jobs.CRONJOBS[component])
        assert cj["metadata"]["namespace"] == "gvh-b4ck"
        images = {c["image"] for c in steps({"spec": cj["spec"]["jobTemplate"]["spec"]})}
        assert not any(i.startswith("busybox") for i in images), images
    assert doc("PersistentVolumeClaim", "goverse-backup-etcd")["metadata"]["namespace"] == "gvh-b4ck"
    with_backup = [d for d in run_docs() if d["kind"] == "CronJob"]
    assert len(with_backup) == 2
    assert policy.violations(list(run_docs())) == []


def test_production_overlay_is_not_given_the_component_twice(tmp_path: Path) -> None:
    opts = render.RunOptions(run_id="pr0d", platform="production")
    out = render.write_run_kustomization(tmp_path, opts, stackconfig.stack_config(StackSpec()))
    docs = render.kustomize_build(out)  # a duplicate component is an ID conflict in kustomize
    assert len([d for d in docs if d["kind"] == "CronJob" and "backup" in d["metadata"]["name"]]) == 2


def test_job_from_cronjob_is_what_kubectl_create_job_from_makes() -> None:
    cj = cronjob("postgres")
    job = backup_jobs.job_from_cronjob(cj, "backup-now")
    assert job["spec"] == cj["spec"]["jobTemplate"]["spec"]
    assert job["metadata"]["annotations"][backup_jobs.MANUAL_ANNOTATION] == "manual"
    assert job["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "CronJob",
                                                   "name": "goverse-postgres-backup", "uid": "0f0f-uid",
                                                   "controller": True}]
    assert job["metadata"]["labels"] == (cj["spec"]["jobTemplate"].get("metadata") or {}).get("labels", {})
    job["spec"]["backoffLimit"] = 99  # a copy, not the CronJob's own dict
    assert cj["spec"]["jobTemplate"]["spec"]["backoffLimit"] != 99


def all_derived() -> list[dict[str, Any]]:
    return [backup_jobs.verify_etcd_job(cronjob("etcd"), "v-etcd", "/backups/etcd-snapshot-1.db"),
            backup_jobs.verify_postgres_job(cronjob("postgres"), "v-pg", "/backups/goverse-1.dump"),
            backup_jobs.restore_postgres_job(cronjob("postgres"), "r-pg", "/backups/goverse-1.dump"),
            backup_jobs.restore_etcd_job(cronjob("etcd"), "r-etcd", "/backups/etcd-snapshot-1.db", "gvh-b4ck", 3, 1)]


@pytest.mark.parametrize("index", range(4))
def test_derived_jobs_validate_strictly_and_keep_the_cronjobs_identity(index: int) -> None:
    job = all_derived()[index]
    job["metadata"]["namespace"] = "gvh-b4ck"
    assert k8sschema.errors(job, "1.31", strict=True) == []
    assert policy.violations([*run_docs(), job]) == []
    name = job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
    assert name in ("goverse-etcd-backup", "goverse-postgres-backup")
    assert pod(job)["serviceAccountName"] == name  # the backup NetworkPolicies select this label
    assert job["spec"]["backoffLimit"] == 0 and "ownerReferences" not in job["metadata"]


def test_restore_etcd_job_empties_the_member_volume_then_restores_as_that_member() -> None:
    job = backup_jobs.restore_etcd_job(cronjob("etcd"), "r", "/backups/etcd-snapshot-1.db", "gvh-x", 3, 2)
    first, second = steps(job)
    assert first["command"] == ["rm", "-rf", "/var/lib/etcd/data"] and first["image"] == render.BACKUP_SHELL_IMAGE
    cmd = second["command"]
    assert second["image"].startswith("quay.io/coreos/etcd:")
    assert cmd[:4] == [backup_jobs.ETCDCTL, "snapshot", "restore", "/backups/etcd-snapshot-1.db"]
    args = dict(zip(cmd[4::2], cmd[5::2], strict=True))
    assert args["--name"] == "goverse-etcd-2"
    assert args["--initial-cluster-token"] == "goverse-etcd-gvh-x"  # the StatefulSet's ETCD_INITIAL_CLUSTER_TOKEN
    assert args["--initial-advertise-peer-urls"] == "http://goverse-etcd-2.goverse-etcd-headless.gvh-x.svc:2380"
    assert args["--initial-cluster"].count("=http://") == 3 and args["--data-dir"] == "/var/lib/etcd/data"
    volumes = {v["name"]: v for v in pod(job)["volumes"]}
    assert volumes["etcd-data"]["persistentVolumeClaim"]["claimName"] == "data-goverse-etcd-2"
    assert volumes["backups"]["persistentVolumeClaim"]["claimName"] == "goverse-backup-etcd"
    for c in (first, second):
        assert {"name": "etcd-data", "mountPath": "/var/lib/etcd"} in c["volumeMounts"]
    with pytest.raises(ValueError, match="outside 0..2"):
        backup_jobs.restore_etcd_job(cronjob("etcd"), "r", "/b", "gvh-x", 3, 3)


def test_the_restore_token_and_peer_urls_are_the_statefulsets() -> None:
    """A restored member must start as the cluster its StatefulSet describes: same token, same names."""
    env = {e["name"]: e.get("value") for e in doc("StatefulSet", "goverse-etcd")["spec"]["template"]["spec"]
           ["containers"][0]["env"]}
    assert env["ETCD_INITIAL_CLUSTER_TOKEN"] == "goverse-etcd-$(POD_NAMESPACE)"
    assert env["ETCD_DATA_DIR"] == backup_jobs.ETCD_DATA_DIR
    initial = env["ETCD_INITIAL_CLUSTER"].replace("$(POD_NAMESPACE)", "gvh-x")
    assert initial == backup_jobs.etcd_initial_cluster("gvh-x", 1)


def test_pvc_from_claim_template_is_the_claim_the_statefulset_adopts() -> None:
    sts = doc("StatefulSet", "goverse-etcd")
    pvc = backup_jobs.pvc_from_claim_template(sts, 0)
    assert pvc["metadata"]["name"] == "data-goverse-etcd-0"
    assert pvc["spec"] == sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert pvc["metadata"]["labels"]["app.kubernetes.io/name"] == "goverse-etcd"
    assert k8sschema.errors({**pvc, "metadata": {**pvc["metadata"], "namespace": "x"}}, "1.31", strict=True) == []
    with pytest.raises(ValueError, match="no volumeClaimTemplate 'logs'"):
        backup_jobs.pvc_from_claim_template(sts, 0, "logs")


# --- what the Jobs print ----------------------------------------------------------------------------------
PG_LOG = """postgres-backup: wrote /backups/goverse-20261203T150412Z.dump
total 8
-rw-r--r--    1 70       70            4627 Dec  3 15:04 goverse-20261203T150412Z.dump
"""


def test_written_file_and_its_size_come_from_the_backup_jobs_log() -> None:
    assert backup_jobs.written_file(PG_LOG, "postgres") == "/backups/goverse-20261203T150412Z.dump"
    assert backup_jobs.listed_size(PG_LOG, "/backups/goverse-20261203T150412Z.dump") == 4627
    assert backup_jobs.listed_size(PG_LOG, "/backups/other.dump") is None
    with pytest.raises(ValueError, match="names no written file"):
        backup_jobs.written_file(PG_LOG, "etcd")
    with pytest.raises(ValueError, match="names no written file"):
        backup_jobs.written_file("postgres-backup: wrote /backups/../etc/passwd x\n", "postgres")


def test_snapshot_status_reads_etcdctl_json_and_refuses_an_empty_or_garbled_one() -> None:
    warn = "Deprecated: Use `etcdutl snapshot status` instead.\n\n"
    text = warn + '{"hash":3402133582,"revision":412,"totalKey":75,"totalSize":98304}\n'
    assert backup_jobs.snapshot_status(text) == {"hash": 3402133582, "revision": 412, "totalKey": 75,
                                                 "totalSize": 98304}
    with pytest.raises(ValueError, match="holds no key"):
        backup_jobs.snapshot_status('{"hash":1,"revision":1,"totalKey":0,"totalSize":20480}')
    with pytest.raises(ValueError, match="not an etcdctl snapshot status"):
        backup_jobs.snapshot_status("Error: snapshot file has wrong size")


# --- the restore Job's script, run for real ---------------------------------------------------------------
@pytest.mark.integration
def test_the_restore_jobs_script_restores_a_dump_into_an_empty_and_into_a_used_database(
        postgres: Any, tmp_path: Path) -> None:
    """The pg-restore step's shell script, with only the host replaced by the local socket: it restores
    a pg_dump into an empty database (a lost volume) and over one that holds newer rows (--clean)."""
    bindir = postgres.bindir
    dsn = {"host": str(postgres.socket_dir), "port": postgres.port, "user": PG_SUPERUSER}
    with psycopg.connect(**dsn, dbname="postgres", autocommit=True) as conn:
        for db in ("gvh_src", "gvh_dst"):
            conn.execute(f"DROP DATABASE IF EXISTS {db}")
            conn.execute(f"CREATE DATABASE {db}")
    with psycopg.connect(**dsn, dbname="gvh_src", autocommit=True) as conn:
        conn.execute("CREATE TABLE goverse_objects (object_id text PRIMARY KEY, data jsonb)")
        conn.execute("""INSERT INTO goverse_objects VALUES ('c1', '{"value": 7}')""")
    dump = tmp_path / "goverse-1.dump"
    subprocess.run([str(bindir / "pg_dump"), "-h", dsn["host"], "-p", str(dsn["port"]), "-U", PG_SUPERUSER,
                    "-d", "gvh_src", "--format=custom", "-f", str(dump)], check=True, timeout=60)
    listing = subprocess.run([str(bindir / "pg_restore"), "--list", str(dump)], capture_output=True, text=True,
                             check=True, timeout=60).stdout
    assert backup_jobs.dump_tables(listing) == ["public.goverse_objects"]

    job = backup_jobs.restore_postgres_job(cronjob("postgres"), "r", str(dump), database="gvh_dst",
                                           host=dsn["host"], port=dsn["port"])
    (step,) = steps(job)
    assert step["command"][:2] == ["sh", "-c"] and "--clean --if-exists --single-transaction" in step["command"][2]
    secrets = tmp_path / "etc-goverse-secrets"
    secrets.mkdir()
    (secrets / "postgres-password").write_text("unused-over-the-socket")
    script = step["command"][2].replace("/etc/goverse-secrets", str(secrets))
    env = {**os.environ, "PGUSER": PG_SUPERUSER, "PATH": f"{bindir}:{os.environ['PATH']}"}
    for _ in range(2):  # empty target, then a target that has the table with a newer row
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"postgres-restore: restored {dump}" in out.stdout
        with psycopg.connect(**dsn, dbname="gvh_dst", autocommit=True) as conn:
            assert conn.execute("SELECT object_id, data FROM goverse_objects").fetchall() == [("c1", {"value": 7})]
            conn.execute("""INSERT INTO goverse_objects VALUES ('c2', '{"value": 1}')""")
