"""Every gate routes by the current shard map once the cluster converged.

Why: clients spread their calls over gates, so one gate that still routes with a stale map (its view
of etcd stopped refreshing) costs a share of the calls, which availability measures only as a timing
figure — and a starved harness makes every timing figure unknown. Reading every key through each gate
after convergence (``Workload.reads_through_each_gate``, ``gate-read`` ops, retried for a few
seconds per gate and key) is a plain yes/no per gate and key.
"""

from __future__ import annotations

from collections import defaultdict

from harness.checkers.verdict import Check, Checker, Verdict, examples
from harness.history import History, Op

NAME = "every_gate_routes"
F = "gate-read"


def every_gate_routes() -> Checker:
    """Fail when some (gate, key) never answered ``ok`` to its ``gate-read`` retries; unknown when no
    ``gate-read`` was recorded."""

    def run(history: History) -> Check:
        by: dict[tuple[str, str], list[Op]] = defaultdict(list)
        for op in history.ops(F):
            by[(op.node or "?", op.key or "?")].append(op)
        if not by:
            return Check(NAME, Verdict.UNKNOWN, "no per-gate reads recorded (gate-read): nothing to judge")
        bad: dict[str, list[str]] = defaultdict(list)
        for (gate, key), ops in sorted(by.items()):
            if not any(o.type == "ok" for o in ops):
                last = ops[-1]
                bad[gate].append(f"{key} ({len(ops)} tries, last {last.type}: {(last.error or '')[:120]})")
        gates = sorted({g for g, _ in by})
        data = {"gates": gates, "keys": len({k for _, k in by}),
                "failing": {g: len(v) for g, v in sorted(bad.items())}}
        if bad:
            parts = [f"{g}: {len(v)} keys never served, e.g. {examples(v)}" for g, v in sorted(bad.items())]
            return Check(NAME, Verdict.FAIL, "gates that do not route by the current map: " + "; ".join(parts),
                         data)
        return Check(NAME, Verdict.PASS, f"every gate ({', '.join(gates)}) served every one of "
                     f"{data['keys']} keys", data)
    return run
