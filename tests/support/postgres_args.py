"""What the rendered PostgreSQL container is started with (manifests and Helm chart tests)."""

from __future__ import annotations

DEAD_CLIENT_SETTINGS = {"tcp_keepalives_idle": "2", "tcp_keepalives_interval": "1", "tcp_keepalives_count": "2",
                        "tcp_user_timeout": "4000",
                        "idle_in_transaction_session_timeout": "5s"}


def postgres_settings(docs: tuple[dict, ...] | list[dict]) -> dict[str, str]:
    """The ``-c name=value`` settings the PostgreSQL container starts with."""
    sts = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "goverse-postgres")
    args = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "postgres").get("args", [])
    return dict(a.split("=", 1) for prev, a in zip(args, args[1:], strict=False) if prev == "-c")
