"""Compact the reference stack's tables before a disk-full fault, on any platform.

Why: PostgreSQL only needs new disk blocks when its files have no room left; after enough updates they
do have room (pruned and vacuumed pages), and a "disk full" then goes unnoticed for minutes. Compacting
first (``VACUUM FULL``) makes the next writes need the disk the fault took away. The connection is the
platform's business (a unix socket locally, a port-forward on Kubernetes); the statements are shared.
"""

from __future__ import annotations

from typing import Any

TABLES = ("goverse_objects", "goverse_reliable_calls", "refstack_shard_fences")


def vacuum_full(conn: Any) -> dict[str, int]:
    """``VACUUM FULL`` each of the stack's tables that exists (``conn`` in autocommit: VACUUM cannot run
    in a transaction) and return each one's size in bytes afterwards."""
    present = [r[0] for r in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY(%s)",
        (list(TABLES),)).fetchall()]
    sizes = {}
    for table in present:
        conn.execute(f"VACUUM FULL {table}")  # names from the fixed tuple above
        row = conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()
        sizes[table] = int(row[0]) if row is not None else 0
    return sizes
