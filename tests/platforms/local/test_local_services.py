"""The local service building blocks with real processes: ManagedProcess, EtcdCluster, PostgresServer."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import requests

from harness.platforms.local.process import ManagedProcess
from harness.platforms.local.services import EtcdCluster, PostgresServer, find_etcd, find_pg_bindir, free_port
from harness.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="gvh-test-services-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# a child that forks a grandchild, reports readiness in its log, ignores nothing
FORKER = """
import os, signal, sys, time
child = os.fork()
if child == 0:
    signal.pause()
    os._exit(0)
print("R" * 3, child, flush=True)
signal.pause()
"""
# a process that exits 7 on SIGTERM
TERMINATES = """
import signal, sys
signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))
print("R" * 3, flush=True)
signal.pause()
"""
IGNORES_TERM = """
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("R" * 3, flush=True)
while True:
    signal.pause()
"""


def _started(proc: ManagedProcess) -> str:
    return wait_until(lambda: "\nRRR" in proc.log_path.read_text() and proc.log_path.read_text(), 10,
                      f"{proc.name} ready")


def test_managed_process_logs_env_and_exit_code(workdir: Path) -> None:
    proc = ManagedProcess("echo", [sys.executable, "-c", "import os,sys; print('hi', os.environ['X_T']); "
                                   "print('err', file=sys.stderr); sys.exit(3)"], workdir / "echo.log",
                          env={"X_T": "42", "HOME": None})
    proc.start()
    assert proc.wait(10) == 3 and proc.returncode == 3 and not proc.is_running()
    text = (workdir / "echo.log").read_text()
    assert "hi 42" in text and "err" in text and text.startswith("--- echo: ")


def test_stop_sends_sigterm_and_returns_its_exit_code(workdir: Path) -> None:
    proc = ManagedProcess("term", [sys.executable, "-c", TERMINATES], workdir / "term.log")
    proc.start()
    _started(proc)
    assert proc.stop(grace=5) == 7


def test_stop_kills_a_process_that_ignores_sigterm_and_its_whole_group(workdir: Path) -> None:
    proc = ManagedProcess("stubborn", [sys.executable, "-c", IGNORES_TERM], workdir / "s.log")
    proc.start()
    _started(proc)
    assert proc.stop(grace=0.5) == -signal.SIGKILL
    forker = ManagedProcess("forker", [sys.executable, "-c", FORKER], workdir / "f.log")
    forker.start()
    grandchild = int(_started(forker).split("\nRRR")[1].split()[0])
    assert psutil.pid_exists(grandchild)
    forker.kill()
    wait_until(lambda: not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == "zombie", 5,
               "grandchild killed with the group")


def test_signal_stop_and_continue_and_wrap(workdir: Path) -> None:
    proc = ManagedProcess("paused", [sys.executable, "-c", TERMINATES], workdir / "p.log", wrap=["env", "A=1"])
    proc.start()
    _started(proc)
    proc.signal(signal.SIGSTOP)
    wait_until(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_STOPPED, 5, "stopped")
    assert proc.stop(grace=5) == 7, "stop() continues a stopped process so it can handle SIGTERM"
    with pytest.raises(ProcessLookupError):
        proc.signal(signal.SIGTERM)


@pytest.mark.skipif(os.geteuid() != 0, reason="running as another user needs root")
def test_runs_as_another_user(workdir: Path) -> None:
    proc = ManagedProcess("who", ["/bin/sh", "-c", "id -u"], workdir / "who.log", user="postgres")
    proc.start()
    assert proc.wait(10) == 0
    import pwd
    assert str(pwd.getpwnam("postgres").pw_uid) in (workdir / "who.log").read_text()


def test_free_port_is_bindable() -> None:
    port = free_port()
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


@pytest.mark.skipif(find_etcd() is None, reason="etcd not installed")
def test_three_member_etcd_survives_a_member_kill_and_cleans_up(workdir: Path) -> None:
    cluster = EtcdCluster(workdir / "etcd", members=3)
    with cluster:
        urls = cluster.client_urls
        assert len(set(urls)) == 3 and all(u.startswith("http://127.0.0.1:") for u in urls)
        cluster.members[0].kill()
        assert not cluster.members[0].process.is_running()
        key = "L2sx"  # base64 of "/k1"
        # a write proposed during the election may be dropped: like any etcd client, retry it
        wait_until(lambda: requests.post(f"{urls[1]}/v3/kv/put", json={"key": key, "value": "dg=="},
                                         timeout=2).status_code == 200, 15, "a write after a member was killed")
        cluster.members[0].start()
        wait_until(cluster.members[0].healthy, 15, "etcd-0 rejoined")
        data_dirs = [m.data_dir for m in cluster.members]
        assert all(d.exists() for d in data_dirs)
    assert not any(m.process.is_running() for m in cluster.members)
    assert not any(d.exists() for d in data_dirs), "data directories are removed on stop"


@pytest.mark.skipif(find_pg_bindir() is None, reason="PostgreSQL not installed")
def test_postgres_password_auth_rotation_and_cleanup(workdir: Path) -> None:
    server = PostgresServer(workdir / "pg", password="first-secret")
    with server:
        with psycopg.connect(server.dsn()) as conn:
            assert conn.execute("SELECT current_user, current_database()").fetchone() == ("goverse", "goverse")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(server.dsn(password="wrong"))
        assert "first-secret" not in server.dsn_redacted() and "password=***" in server.dsn_redacted()
        old = server.dsn()
        server.set_password("second-secret")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(old)
        with psycopg.connect(server.dsn()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with server.admin_connect() as conn:
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
        data_dir = server.data_dir
        if os.geteuid() == 0:
            import pwd
            assert data_dir.stat().st_uid == pwd.getpwnam("postgres").pw_uid, "never runs as root"
        server.kill()
        assert not server.process.is_running()
        server.start()  # crash recovery on the same data
        with psycopg.connect(server.dsn()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert not data_dir.exists()
    assert not server.process.is_running()


@pytest.mark.skipif(find_pg_bindir() is None, reason="PostgreSQL not installed")
def test_postgres_that_exited_is_started_again_on_its_data(workdir: Path) -> None:
    """ensure_running: what the local platform does at a disk-full heal when PostgreSQL exited under
    the fault (a PANIC on its WAL): a restart on the same data, nothing when it runs."""
    with PostgresServer(workdir / "pg", password="s3cret") as server:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        assert server.ensure_running() is False
        pid = server.process.pid
        server.kill()
        assert not server.process.is_running()
        assert server.ensure_running() is True
        assert server.process.is_running() and server.process.pid != pid
        with psycopg.connect(server.dsn()) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == (42,)
