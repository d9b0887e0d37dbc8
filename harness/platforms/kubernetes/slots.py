"""Stable instance names (``gate-0``, ``gate-1``) for the pods of a Deployment, whose names are random.

Why: scenarios name instances (``Restart(gate(0))``) and the history records them; on Kubernetes a
restarted gate is a *new* pod with a new name. A slot keeps its pod while that pod lives; when it is
gone, the slot takes the oldest unclaimed live pod. So ``gate-0`` stays ``gate-0`` across a restart,
and a scale-down frees the highest slots first.
"""

from __future__ import annotations

from collections.abc import Sequence


def reassign(slots: Sequence[str | None], live: Sequence[str], size: int) -> list[str | None]:
    """New slot table of ``size`` entries. ``live`` is the live pod names, oldest first."""
    alive = set(live)
    table: list[str | None] = [p if p in alive else None for p in list(slots)[:size]]
    table += [None] * (size - len(table))
    # pods that held a slot beyond the new size come back into the pool, oldest first
    claimed = {p for p in table if p}
    pool = [p for p in live if p not in claimed]
    for i, pod in enumerate(table):
        if pod is None and pool:
            table[i] = pool.pop(0)
    return table


def instance_names(component: str, table: Sequence[str | None]) -> dict[str, str]:
    """``{"gate-0": pod, ...}`` for filled slots."""
    return {f"{component}-{i}": pod for i, pod in enumerate(table) if pod}
