"""O: single ownership — no object is served by two owners at once.

What the history can show: each ok op may carry ``extra = {"node", "epoch"}``, the node that served it
and its ownership epoch for the key's shard (monotonic per shard across owners). Two observable
violations:

1. *stale owner*: an ok op served under epoch e completed, and an ok op invoked after that completion
   was served under an epoch < e — an owner that had already been superseded still answered (no
   fencing; a paused node that came back).
2. *split brain*: two different nodes served the same key under the same epoch.

Ops without an epoch are ignored. If no op carries one, what the stack declared decides (the history's
meta, harness.capabilities): a stack that declares no epochs (Goverse v0.1.1 has none) makes the check
``not-applicable`` with that reason — there is nothing to observe; a stack that declares them, or a
history with no declaration, makes it ``unknown``: epochs were promised and are missing, a harness or
stack defect that must show, because silence about ownership is not evidence of single ownership.

``Check.data``: ``{"ops_with_epoch": n, "keys": n, "stale": [{key, op_id, t, node, epoch, newer_epoch,
newer_node, newer_op_id, newer_done_t}], "split": [{key, epoch, nodes}]}``
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from typing import Any

from harness.capabilities import Capabilities
from harness.checkers.ops import epoch_of, served_by
from harness.checkers.verdict import Check, Checker, Verdict, checker_factory, examples, named
from harness.history import History, Op

NAME = "single_ownership"


@checker_factory
def single_ownership() -> Checker:
    """O: epochs never go backwards across completed→invoked ops of a key; one node per (key, epoch)."""

    def run(history: History) -> Check:
        by_key: dict[str, list[Op]] = defaultdict(list)
        for op in history.ops():
            if op.type == "ok" and op.key is not None and epoch_of(op) is not None:
                by_key[op.key].append(op)
        n_ops = sum(len(v) for v in by_key.values())
        if not n_ops:
            caps = Capabilities.from_meta(history.meta)
            if caps is not None and not caps.epochs:
                return Check(NAME, Verdict.NOT_APPLICABLE,
                             f"stack {caps.stack} exposes no ownership epochs on call answers (X-Goverse-Node/"
                             "X-Goverse-Epoch headers): which owner served a call cannot be observed",
                             {"ops_with_epoch": 0, "capability": "epochs", "declared": False})
            why = ("no ownership epochs: no ok op carried one (the history declares no capabilities)"
                   if caps is None else f"stack {caps.stack} declares ownership epochs, but no ok op carried one")
            return Check(NAME, Verdict.UNKNOWN, why,
                         {"ops_with_epoch": 0, "capability": "epochs",
                          "declared": None if caps is None else True})
        stale: list[dict[str, Any]] = []
        split: list[dict[str, Any]] = []
        for key, ops in sorted(by_key.items()):
            stale.extend(_stale_owner(key, ops))
            split.extend(_split_brain(key, ops))
        data = {"ops_with_epoch": n_ops, "keys": len(by_key), "stale": stale, "split": split}
        if stale or split:
            msgs = [f"key {s['key']}: op {s['op_id']} at {s['t']:.2f}s served by {s['node']} under epoch "
                    f"{s['epoch']} after op {s['newer_op_id']} had been served by {s['newer_node']} under "
                    f"epoch {s['newer_epoch']} (done {s['newer_done_t']:.2f}s)" for s in stale]
            msgs += [f"key {s['key']}: epoch {s['epoch']} served by {', '.join(s['nodes'])}" for s in split]
            keys = len({s["key"] for s in stale} | {s["key"] for s in split})
            head = f"{len(stale)} ops served by a superseded owner, {len(split)} epochs with two owners"
            return Check(NAME, Verdict.FAIL, f"{head} on {keys} keys: {examples(msgs)}", data)
        return Check(NAME, Verdict.PASS,
                     f"{n_ops} ops on {len(by_key)} keys: epochs never went backwards, one node per epoch",
                     data)

    return named(NAME, run)


def _stale_owner(key: str, ops: list[Op]) -> list[dict[str, object]]:
    done = sorted(ops, key=lambda o: o.t_complete)
    done_t = [o.t_complete for o in done]
    best: list[Op] = []  # best[i]: highest-epoch op among done[: i + 1]
    for o in done:
        best.append(o if not best or (epoch_of(o) or 0) > (epoch_of(best[-1]) or 0) else best[-1])
    out: list[dict[str, object]] = []
    for o in ops:
        n = bisect_left(done_t, o.t_invoke)
        if n == 0:
            continue
        newer = best[n - 1]
        e, ne = epoch_of(o) or 0, epoch_of(newer) or 0
        if e < ne:
            out.append({"key": key, "op_id": o.op_id, "t": round(o.t_invoke, 6), "node": served_by(o),
                        "epoch": e, "newer_epoch": ne, "newer_node": served_by(newer),
                        "newer_op_id": newer.op_id, "newer_done_t": round(newer.t_complete, 6)})
    return out


def _split_brain(key: str, ops: list[Op]) -> list[dict[str, object]]:
    nodes: dict[int, set[str]] = defaultdict(set)
    for o in ops:
        node = served_by(o)
        e = epoch_of(o)
        if node is not None and e is not None:
            nodes[e].add(node)
    return [{"key": key, "epoch": e, "nodes": sorted(ns)} for e, ns in sorted(nodes.items()) if len(ns) > 1]
