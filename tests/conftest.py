"""Shared fixtures for tests that need real services.

``etcd`` and ``postgres`` are session-scoped real servers (Debian ``etcd-server``, PostgreSQL run as
the ``postgres`` user when we are root) in temporary directories removed at the end of the session;
tests that use them are marked ``integration``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.platforms.local.services import EtcdCluster, PostgresServer, find_etcd, find_pg_bindir


@pytest.fixture(scope="session")
def etcd() -> Iterator[EtcdCluster]:
    """A single-member etcd on a free port of 127.0.0.1."""
    if find_etcd() is None:
        pytest.skip("etcd is not installed (apt-get install etcd-server)")
    workdir = Path(tempfile.mkdtemp(prefix="gvh-test-etcd-"))
    cluster = EtcdCluster(workdir, members=1)
    try:
        cluster.start(timeout=20)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL with role/database ``goverse`` and a random password (scram-sha-256)."""
    if find_pg_bindir() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    workdir = Path(tempfile.mkdtemp(prefix="gvh-test-pg-"))
    server = PostgresServer(workdir)
    try:
        server.start(timeout=30)
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
