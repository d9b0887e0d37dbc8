"""The reference-stack command line on real etcd/PostgreSQL: exit code 2 and one clear line for bad
configuration (with nothing registered in etcd), environment-only configuration, JSON logs, no secrets
in logs."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from harness.ports import free_port
from harness.process import ManagedProcess
from harness.refstack.localcluster import PgAccess, fresh_database
from harness.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="gvh-test-cli-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def pg(postgres) -> PgAccess:  # noqa: ANN001
    return fresh_database(postgres)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOVERSE_", "POD_", "REFSTACK_", "LOG_"))}
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.refstack", *args], capture_output=True, text=True,
                          env=env or clean_env(), timeout=timeout, check=False)


def etcd_keys(etcd_url: str, prefix: str) -> list[str]:
    body = {"key": base64.b64encode(prefix.encode()).decode(),
            "range_end": base64.b64encode((prefix[:-1] + chr(ord(prefix[-1]) + 1)).encode()).decode(),
            "keys_only": True}
    kvs = requests.post(f"{etcd_url}/v3/kv/range", json=body, timeout=5).json().get("kvs", [])
    return [base64.b64decode(kv["key"]).decode() for kv in kvs]


def node_config(etcd_url: str, pg: PgAccess, prefix: str, password: str | None = None) -> dict:
    port = free_port()
    return {
        "version": 1,
        "cluster": {"shards": 8, "provider": "etcd", "etcd": {"endpoints": [etcd_url], "prefix": prefix}},
        "postgres": {"host": pg.host, "port": pg.port, "user": pg.user, "database": pg.database,
                     "password": password if password is not None else pg.password},
        "nodes": [{"id": "node-0", "grpc_addr": f"127.0.0.1:{port}", "advertise_addr": f"127.0.0.1:{port}",
                   "http_addr": f"127.0.0.1:{free_port()}"}],
    }


def write(workdir: Path, doc: dict) -> Path:
    path = workdir / f"cfg-{secrets.token_hex(3)}.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def assert_config_error(res: subprocess.CompletedProcess, setting: str, fragment: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.startswith("refstack:")]
    assert len(lines) == 1, res.stderr
    assert f" {setting}: " in lines[0] and fragment in lines[0], lines[0]


def test_help_and_unknown_role_exit_2() -> None:
    assert run_cli(["--help"]).returncode == 0
    res = run_cli(["broker"])
    assert res.returncode == 2 and "invalid choice: 'broker'" in res.stderr


def test_config_errors_exit_2_and_register_nothing(workdir: Path, etcd, pg: PgAccess) -> None:  # noqa: ANN001
    url = etcd.client_urls[0]
    prefix = f"/cli-{secrets.token_hex(3)}"
    doc = node_config(url, pg, prefix)
    bad = {**doc, "cluster": {**doc["cluster"], "shardz": 3}}
    assert_config_error(run_cli(["node", "--config", str(write(workdir, bad)), "--node-id", "node-0"]),
                        "cluster.shardz", "unknown key")
    assert_config_error(run_cli(["node", "--config", str(write(workdir, doc)), "--node-id", "node-7"]),
                        "--node-id", "no nodes[] entry with id 'node-7'")
    assert_config_error(run_cli(["node", "--config", str(workdir / "missing.yaml"), "--node-id", "node-0"]),
                        "--config", "cannot read")
    assert_config_error(run_cli(["node", "--config", str(write(workdir, doc)), "--node-id", "node-0",
                                 "--bugs", "no-such-bug"]), "--bugs", "unknown seeded bug 'no-such-bug'")
    dead = {**doc, "cluster": {**doc["cluster"], "etcd": {"endpoints": [f"127.0.0.1:{free_port()}"],
                                                          "prefix": prefix}}}
    assert_config_error(run_cli(["node", "--config", str(write(workdir, dead)), "--node-id", "node-0"]),
                        "cluster.etcd.endpoints", "no etcd endpoint reachable")
    wrong_pw = node_config(url, pg, prefix, password="not-the-password")
    res = run_cli(["node", "--config", str(write(workdir, wrong_pw)), "--node-id", "node-0"])
    assert_config_error(res, "postgres", "password authentication failed")
    assert "not-the-password" not in res.stderr
    assert etcd_keys(url, prefix + "/") == [], "a process that failed to start must register nothing"


def test_environment_only_node_registers_under_pod_identity(workdir: Path, etcd, pg: PgAccess) -> None:  # noqa: ANN001
    url = etcd.client_urls[0]
    prefix = f"/cli-{secrets.token_hex(3)}"
    port, ops = free_port(), free_port()
    pw_file = workdir / "pw"
    pw_file.write_text(pg.password)
    env = clean_env(GOVERSE_ETCD_ENDPOINTS=f"127.0.0.1:{free_port()},{url}", GOVERSE_ETCD_PREFIX=prefix,
                    GOVERSE_SHARDS="8", GOVERSE_POSTGRES_HOST=pg.host, GOVERSE_POSTGRES_PORT=str(pg.port),
                    GOVERSE_POSTGRES_USER=pg.user, GOVERSE_POSTGRES_DATABASE=pg.database,
                    GOVERSE_POSTGRES_PASSWORD_FILE=str(pw_file), GOVERSE_GRPC_ADDR=f"0.0.0.0:{port}",
                    GOVERSE_HTTP_ADDR=f"127.0.0.1:{ops}", POD_NAME="goverse-node-0", POD_IP="127.0.0.1",
                    LOG_FORMAT="json", LOG_LEVEL="debug")
    proc = ManagedProcess("envnode", [sys.executable, "-m", "harness.refstack", "node"], workdir / "envnode.log",
                          env=env)
    proc.start()
    try:
        # the first endpoint is dead: the node must fail over to the second one
        wait_until(lambda: f"{prefix}/nodes/127.0.0.1:{port}" in etcd_keys(url, prefix + "/"), 20,
                   "env-configured node registered", describe=lambda: proc.log_path.read_text()[-2000:])
        wait_until(lambda: requests.get(f"http://127.0.0.1:{ops}/ready", timeout=1).status_code == 200, 20,
                   "single node ready (leader, all 8 shards claimed)")
        status = requests.get(f"http://127.0.0.1:{ops}/internal/v1/status", timeout=2).json()
        assert status["node_id"] == "goverse-node-0" and status["advertise_addr"] == f"127.0.0.1:{port}"
        assert len(status["owned_shards"]) == 8 and status["leader"] == f"127.0.0.1:{port}"
        proc.signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        proc.stop(5)
    assert etcd_keys(url, f"{prefix}/nodes/") == [], "graceful stop revokes the lease"
    log_lines = proc.log_path.read_text().splitlines()[1:]
    records = [json.loads(line) for line in log_lines if line.startswith("{")]
    assert records and len(records) == len([line for line in log_lines if line.strip()]), "every line is JSON"
    assert {"ts", "level", "component", "id", "msg"} <= set(records[0])
    assert any(r["level"] == "debug" for r in records) or any(r["level"] == "info" for r in records)
    assert pg.password not in proc.log_path.read_text(), "the PostgreSQL password must never be logged"


def test_seeded_bug_env_ignored_fails_where_env_would_work(workdir: Path, etcd) -> None:  # noqa: ANN001
    env = clean_env(GOVERSE_ETCD_ENDPOINTS=etcd.client_urls[0], GOVERSE_HTTP_ADDR=f"127.0.0.1:{free_port()}")
    res = run_cli(["inspector", "--bugs", "env-ignored"], env=env)
    assert_config_error(res, "cluster.etcd.endpoints", "required")
