"""The backup CronJobs' commands, run for real outside a cluster.

The scripts and commands are taken from the rendered production overlay (components/backup), with
only the in-cluster addresses and mount paths replaced by the local ones, and run against the real etcd
and PostgreSQL of tests/conftest.py with the real etcdctl, pg_dump and pg_restore. This proves what the
pods will execute; running the CronJobs on a cluster is the follow-up (docs/runbooks/restore.md).

`date` is replaced by a stub on PATH that returns a new timestamp per call: the scripts name files by
the second, and a test must not sleep to get distinct names.
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

from harness.platforms.kubernetes import render
from harness.platforms.local.services import EtcdCluster, PostgresServer, free_port
from harness.refstack.localcluster import PgAccess, fresh_database
from harness.waiting import wait_until

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not on PATH")]


@functools.cache
def cronjobs() -> dict[str, dict[str, Any]]:
    docs = render.kustomize_build(render.overlay_dir("production", "reference"))
    return {d["metadata"]["name"]: d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            for d in docs if d["kind"] == "CronJob"}


def container(job: str, name: str) -> dict[str, Any]:
    pod = cronjobs()[job]
    return next(c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == name)


@pytest.fixture
def fake_date(tmp_path: Path) -> Path:
    """A `date` that prints 20260101T0000NNZ with NN counting up per call."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    counter = tmp_path / "date-counter"
    counter.write_text("0")
    (bindir / "date").write_text(f"""#!/bin/sh
n=$(cat {counter}); n=$((n + 1)); echo $n > {counter}
printf '20260101T0000%02dZ\\n' "$n"
""")
    (bindir / "date").chmod(0o755)
    return bindir


def sh(script: str, env: dict[str, str], bindir: Path) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "PATH": f"{bindir}:{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=full, timeout=120, check=False)


# --- PostgreSQL -------------------------------------------------------------------------------------------
def pg_script(pg: PgAccess, backups: Path, password_file: Path) -> str:
    script = container("goverse-postgres-backup", "pg-dump")["args"][0]
    for old, new in (("--host=goverse-postgres", f"--host={pg.host}"), ("--port=5432", f"--port={pg.port}"),
                     ("--dbname=goverse", f"--dbname={pg.database}"), ("/backups", str(backups)),
                     ("/etc/goverse-secrets/postgres-password", str(password_file))):
        assert old in script, f"the CronJob's script no longer contains {old!r}"
        script = script.replace(old, new)
    return script


def _rows(pg: PgAccess) -> list[tuple[Any, ...]]:
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.database) as c:
        return c.execute("SELECT id, value FROM backup_probe ORDER BY id").fetchall()


def test_postgres_backup_dumps_rotates_and_restores(postgres: PostgresServer, tmp_path: Path, fake_date: Path) -> None:
    pg = fresh_database(postgres)
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.database) as c:
        c.execute("CREATE TABLE backup_probe (id int PRIMARY KEY, value text)")
        c.execute("INSERT INTO backup_probe SELECT i, md5(i::text) FROM generate_series(1, 500) i")
    backups, secret = tmp_path / "backups", tmp_path / "postgres-password"
    backups.mkdir()
    secret.write_text(pg.password)
    env = {"PGUSER": pg.user, "KEEP": "2"}
    for _ in range(3):
        res = sh(pg_script(pg, backups, secret), env, fake_date)
        assert res.returncode == 0, res.stderr
        assert pg.password not in res.stdout + res.stderr, "the password reached the job's log"
    dumps = sorted(p.name for p in backups.iterdir())
    assert dumps == ["goverse-20260101T000002Z.dump", "goverse-20260101T000003Z.dump"], "KEEP=2 newest kept"

    # restore.md's pg_restore into an empty database gives the same rows
    target = fresh_database(postgres)
    bindir = Path(shutil.which("pg_restore") or "pg_restore").parent
    res = subprocess.run([str(bindir / "pg_restore"), f"--host={target.host}", f"--port={target.port}",
                          f"--username={target.user}", f"--dbname={target.database}", "--clean", "--if-exists",
                          "--single-transaction", "--no-owner", str(backups / dumps[-1])],
                         capture_output=True, text=True, env={**os.environ, "PGPASSWORD": target.password},
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert _rows(target) == _rows(pg) and len(_rows(target)) == 500


def test_postgres_backup_fails_without_leaving_a_dump(postgres: PostgresServer, tmp_path: Path,
                                                     fake_date: Path) -> None:
    pg = fresh_database(postgres)
    backups, secret = tmp_path / "backups", tmp_path / "postgres-password"
    backups.mkdir()
    secret.write_text("not-the-password")
    res = sh(pg_script(pg, backups, secret), {"PGUSER": pg.user, "KEEP": "7"}, fake_date)
    assert res.returncode != 0
    assert not list(backups.glob("*.dump")), "a failed dump must not look like a backup"


# --- etcd -------------------------------------------------------------------------------------------------
def etcd_argv(name: str, endpoint: str, backups: Path) -> list[str]:
    c = container("goverse-etcd-backup", name)
    argv = [a.replace("$(ETCD_ENDPOINT)", endpoint).replace("/backups", str(backups)) for a in c["command"]]
    if argv[0] == "/usr/local/bin/etcdctl":
        return [shutil.which("etcdctl") or "etcdctl", *argv[1:]]
    return argv


def test_etcd_backup_snapshots_verifies_rotates_and_restores(etcd: EtcdCluster, tmp_path: Path,
                                                            fake_date: Path) -> None:
    etcdctl = shutil.which("etcdctl")
    if etcdctl is None:
        pytest.fail("etcdctl is not on PATH (Debian etcd-client)")
    endpoint = etcd.client_urls[0]
    key = f"/gvh-backup-test/{tmp_path.name}"
    env = {**os.environ, "ETCDCTL_API": "3"}
    subprocess.run([etcdctl, f"--endpoints={endpoint}", "put", key, "kept"], check=True, env=env,
                   capture_output=True, timeout=30)
    backups = tmp_path / "backups"
    backups.mkdir()
    rotate = container("goverse-etcd-backup", "rotate")["args"][0].replace("/backups", str(backups))
    for _ in range(3):
        for step in ("clean", "snapshot", "verify"):
            res = subprocess.run(etcd_argv(step, endpoint, backups), capture_output=True, text=True, env=env,
                                 timeout=60, check=False)
            assert res.returncode == 0, f"{step}: {res.stderr}"
        res = sh(rotate, {"KEEP": "2"}, fake_date)
        assert res.returncode == 0, res.stderr
    snaps = sorted(p.name for p in backups.iterdir())
    assert snaps == ["etcd-snapshot-20260101T000002Z.db", "etcd-snapshot-20260101T000003Z.db"]

    # the verify step fails on a damaged snapshot (so the CronJob fails instead of keeping it)
    subprocess.run(etcd_argv("clean", endpoint, backups), check=True, timeout=30)
    damaged = backups / "incoming.db"
    data = bytearray((backups / snaps[-1]).read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):  # flip bits: a zeroed free page would be no change
        data[i] ^= 0xFF
    damaged.write_bytes(bytes(data))
    res = subprocess.run(etcd_argv("verify", endpoint, backups), capture_output=True, text=True, env=env,
                         timeout=60, check=False)
    assert res.returncode != 0, "the trial restore accepted a damaged snapshot"

    # restore (restore.md) and read the key back from an etcd started on the restored data
    data_dir = tmp_path / "restored"
    cport, pport = free_port(), free_port()
    res = subprocess.run([etcdctl, "snapshot", "restore", str(backups / snaps[-1]), "--data-dir", str(data_dir),
                          "--name", "restored", "--initial-cluster", f"restored=http://127.0.0.1:{pport}",
                          "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}"],
                         capture_output=True, text=True, env=env, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    etcd_bin = shutil.which("etcd") or "/usr/bin/etcd"
    proc = subprocess.Popen([etcd_bin, "--name", "restored", "--data-dir", str(data_dir),
                             "--listen-client-urls", f"http://127.0.0.1:{cport}",
                             "--advertise-client-urls", f"http://127.0.0.1:{cport}",
                             "--listen-peer-urls", f"http://127.0.0.1:{pport}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
                             "--initial-cluster", f"restored=http://127.0.0.1:{pport}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def read() -> str | None:
            r = subprocess.run([etcdctl, f"--endpoints=http://127.0.0.1:{cport}", "get", key, "--print-value-only"],
                               capture_output=True, text=True, env=env, timeout=10, check=False)
            return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None
        assert wait_until(read, timeout=30, what="the restored etcd serving the key") == "kept"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
