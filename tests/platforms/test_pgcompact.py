"""VACUUM FULL of the stack's tables (both platforms' compact_storage) on a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from harness.platforms.local.services import PostgresServer, find_pg_bindir
from harness.platforms.pgcompact import TABLES, vacuum_full

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(find_pg_bindir() is None, reason="PostgreSQL not installed")]


def test_vacuum_full_gives_the_dead_rows_space_back_and_skips_missing_tables(tmp_path: Path) -> None:
    with PostgresServer(tmp_path / "pg") as server, psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE goverse_objects (object_id text PRIMARY KEY, data bytea)")
        conn.execute("INSERT INTO goverse_objects SELECT 'o' || i, repeat('x', 2000)::bytea "
                     "FROM generate_series(1, 2000) i")
        conn.execute("DELETE FROM goverse_objects WHERE object_id <> 'o1'")
        before = conn.execute("SELECT pg_total_relation_size('goverse_objects')").fetchone()
        sizes = vacuum_full(conn)
        assert set(sizes) == {"goverse_objects"} and set(sizes) < set(TABLES)  # the others do not exist here
        assert before is not None and sizes["goverse_objects"] < before[0] / 10
