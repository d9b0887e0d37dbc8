"""Every instance talks to PostgreSQL and etcd through the endpoints it was given.

Why: a deployment hands an instance its endpoints through its environment (``GOVERSE_POSTGRES_HOST``,
``GOVERSE_ETCD_ENDPOINTS``, seed §2.3); an instance that ignores them and falls back to its config
file still works — against the wrong endpoints. On the local platform the harness gives every
instance its fault proxy links that way (each link ``<instance>-><destination>``), so the proxy sees
whether the instance used what it was given: an instance under load whose links to a destination
carried no byte over a whole segment did not. Conformance 2.3 shows this on an ad-hoc instance; this
check shows it on the stack's own, in any scenario that records the sample.

Data: the sample ``f = "proxy-traffic"`` (recorded by ``scenarios/explore_segments.py`` at the end of
a segment), value ``{"bytes": {link: bytes both ways during the segment}, "running": [instances
running at its start and its end]}``.
"""

from __future__ import annotations

from typing import Any

from harness.checkers.verdict import Check, Checker, Verdict, checker_factory, named
from harness.history import History

NAME = "endpoints_honoured"
TRAFFIC_F = "proxy-traffic"


def destination_kind(dst: str) -> str:
    """``etcd-2`` → ``etcd``, ``postgres`` → ``postgres``: an etcd client uses one member at a time, so
    its links to the members are judged together."""
    head, _, tail = dst.rpartition("-")
    return head if tail.isdigit() and head else dst


@checker_factory
def endpoints_honoured() -> Checker:
    """For every instance running through a segment, each kind of destination it has proxy links to
    (PostgreSQL, etcd) carried traffic over them; none did: the instance ignored the endpoints it was
    given. No sample, or no running instance with links, is unknown."""

    def run(history: History) -> Check:
        samples = [e.value for e in history.samples(TRAFFIC_F) if isinstance(e.value, dict)]
        if not samples:
            return Check(NAME, Verdict.UNKNOWN, "no proxy traffic recorded (no fault proxy on this platform)")
        groups: dict[tuple[str, str], int] = {}
        for v in samples:
            running = set(v.get("running") or [])
            for link, n in (v.get("bytes") or {}).items():
                src, sep, dst = str(link).partition("->")
                if sep and src in running:
                    key = (src, destination_kind(dst))
                    groups[key] = groups.get(key, 0) + int(n)
        data: dict[str, Any] = {"groups": {f"{s}->{d}": n for (s, d), n in sorted(groups.items())}}
        if not groups:
            return Check(NAME, Verdict.UNKNOWN, "no running instance had a proxy link", data)
        silent = sorted(f"{s}->{d}" for (s, d), n in groups.items() if n <= 0)
        if silent:
            return Check(NAME, Verdict.FAIL, f"{len(silent)} of {len(groups)} instance→destination links given to "
                         f"running instances carried no traffic (the instance used other endpoints than the "
                         f"ones it was given): {', '.join(silent)}", data)
        return Check(NAME, Verdict.PASS, f"all {len(groups)} instance→destination links given to running instances "
                     f"carried traffic", data)

    return named(NAME, run)
