"""Shared fixtures for tests that need real services.

``etcd`` and ``postgres`` are session-scoped real servers (Debian ``etcd-server``, PostgreSQL run as
the ``postgres`` user when we are root) in temporary directories removed at the end of the session;
tests that use them are marked ``integration``.

Under ``CI`` a test that skips because something it needs is missing fails instead (tests/support/need.py): a
CI job that silently skips a family of tests proves nothing. What a CI job deliberately does not provide
(a Kubernetes cluster, kubectl, checkov, a Go toolchain) stays a skip: ``CI_MAY_SKIP`` below, extended
by the ``GVH_CI_MAY_SKIP`` regular expression.

promtool and helm (tests/support/gotools.py) are built from the Go module proxy; without Go they skip with a
reason saying "go toolchain", which CI_MAY_SKIP deliberately does not match: outside CI that is a skip,
under CI a failure (the CI jobs running them must provide Go).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.platforms.local.services import EtcdCluster, PostgresServer, find_etcd, find_pg_bindir
from tests.support.need import in_ci

CI_MAY_SKIP = re.compile(r"Kubernetes|kubectl|kube context|Chaos Mesh (is not installed|present)|GVH_CHECKOV|"
                         r"go is not on PATH|actionlint|not in harness/cli.py yet|"
                         # the binaries cluster's up/down tests run in the Kubernetes tier (scripts/test-kubernetes)
                         r"scripts/test-kubernetes sets GVH_TEST_BINARIES_CLUSTER")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        extra = os.environ.get("GVH_CI_MAY_SKIP")
        if not (CI_MAY_SKIP.search(reason) or (extra and re.search(extra, reason))):
            report.outcome = "failed"
            report.longrepr = f"CI is set and this test skipped: {reason} (see tests/conftest.py CI_MAY_SKIP)"
    return report


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
