"""Seeded bugs: realistic mistakes the reference stack can be told to make, by name.

Why: a harness whose checks never fail proves nothing. Each bug is off by default and switched on with
``--bugs a,b`` or ``REFSTACK_BUGS=a,b``; docs/seeded-bugs.md says what each breaks and which scenario is
expected to catch it. Names are part of the harness's interface (scenario ids, CI matrices): never
rename one.
"""

from __future__ import annotations

from collections.abc import Iterable

BUGS: dict[str, str] = {
    "ack-before-persist": "reply first, persist in ~1 s batches: SIGKILL loses acknowledged writes",
    "no-fencing": "serve without checking the lease and write without the PostgreSQL fence",
    "stale-overwrite-on-rejoin": "on lease/shard loss, flush stale in-memory objects over the new owner's",
    "no-dedup": "reliable calls re-execute when a call_id is repeated",
    "ignore-sigterm": "SIGTERM is logged and ignored",
    "ready-latched": "/ready never drops after it first returned 200",
    "slow-failover": "shards of a crashed node are reassigned only after 30 s",
    "lose-state-on-handover": "a shard received by handover activates objects fresh instead of loading them",
    "env-ignored": "GOVERSE_* and POD_* environment variables are not read",
    "no-secret-reload": "password file changes and SIGHUP are ignored",
    # stale-view bugs: they bite only while a component acts on an old view of etcd
    "no-lease-deadline": "a node cut from etcd keeps serving until etcd itself says its lease expired",
    "gate-watch-not-resumed": "a gate stops refreshing its shard map after its first etcd error",
    "drain-gives-up-early": "SIGTERM drains in-flight calls for a fixed 3 s, then the process exits under them",
    "ready-before-serving": "/ready counts shards claimed in etcd, not the ones still warming up before they serve",
}

SLOW_FAILOVER_SECONDS = 30.0
ACK_BEFORE_PERSIST_FLUSH_SECONDS = 1.0
DRAIN_GIVES_UP_SECONDS = 3.0
READY_WARMUP_SECONDS = 1.25


class UnknownBug(ValueError):
    pass


def parse_bugs(text: str | Iterable[str] | None, setting: str = "--bugs") -> frozenset[str]:
    """``"a,b"`` (or an iterable of names) -> validated set; empty items are ignored."""
    if text is None:
        return frozenset()
    items = text.split(",") if isinstance(text, str) else list(text)
    names = {item.strip() for item in items if item and item.strip()}
    unknown = sorted(names - BUGS.keys())
    if unknown:
        raise UnknownBug(f"{setting}: unknown seeded bug {unknown[0]!r}; known: {', '.join(sorted(BUGS))}")
    return frozenset(names)
