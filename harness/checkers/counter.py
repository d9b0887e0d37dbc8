"""Counter invariants L (no lost writes), stale reads and M (monotonic reads).

The counter workload only ever adds positive amounts to keys that start at 0, so every read has a
lower bound (what was acknowledged before it started) and reads of one key can never go down.
Indeterminate (``info``) increments may or may not have happened: they widen the upper bound of L and
are never counted as acknowledged. ``fail`` increments definitely did not happen and are excluded.

Result shapes (``Check.data``):
- no_lost_writes: ``{"keys": n, "lost": [{key, final, acked, info, missing}], "phantom": [...],
  "no_final_read": [keys]}``
- reads_see_acknowledged: ``{"reads_checked": n, "stale": [{key, op_id, t, read, acked, missing}]}``
- monotonic_reads: ``{"pairs_checked": n, "violations": [{key, op_id, t, read, earlier_read,
  earlier_op_id, earlier_t}]}``
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from itertools import accumulate
from typing import Any

from harness.checkers.bounds import final_reads, increment_bounds
from harness.checkers.ops import COUNTER_READ_FS, INCREMENT_F, as_int
from harness.checkers.verdict import Check, Checker, Verdict, checker_factory, decide, examples, named
from harness.history import History, Op


@checker_factory
def no_lost_writes() -> Checker:
    """L: per key, acked ≤ final read ≤ acked + info (sums of increment amounts)."""

    def run(history: History) -> Check:
        bounds = increment_bounds(history)
        finals = final_reads(history)  # the last ok final read wins
        keys = sorted(bounds)
        if not keys:
            return Check("no_lost_writes", Verdict.UNKNOWN, "no increments recorded: nothing to check")
        lost, phantom, missing_final = [], [], []
        for k in keys:
            if k not in finals:
                missing_final.append(k)
                continue
            lo, hi, v = bounds[k].lo, bounds[k].hi, finals[k]
            row = {"key": k, "final": v, "acked": lo, "info": hi - lo}
            if v < lo:
                lost.append({**row, "missing": lo - v})
            elif v > hi:
                phantom.append({**row, "excess": v - hi})
        data: dict[str, Any] = {"keys": len(keys), "lost": lost, "phantom": phantom,
                                "no_final_read": missing_final}
        if lost or phantom:
            msgs = [f"key {r['key']}: final {r['final']} < acknowledged {r['acked']} (lost {r['missing']})"
                    for r in lost]
            msgs += [f"key {r['key']}: final {r['final']} > acknowledged {r['acked']} + indeterminate "
                     f"{r['info']} (excess {r['excess']})" for r in phantom]
            head = f"{len(lost)} of {len(keys)} keys lost acknowledged increments"
            if phantom:
                head += f", {len(phantom)} hold increments that never happened"
            return Check("no_lost_writes", Verdict.FAIL, f"{head}: {examples(msgs)}", data)
        if missing_final:
            return Check("no_lost_writes", Verdict.UNKNOWN,
                         f"{len(missing_final)} of {len(keys)} keys have no final read: "
                         f"{examples(missing_final)}", data)
        return Check("no_lost_writes", Verdict.PASS,
                     f"all {len(keys)} keys: acknowledged ≤ final ≤ acknowledged + indeterminate", data)

    return named("no_lost_writes", run)


def _reads_by_key(history: History) -> dict[str, list[Op]]:
    out: dict[str, list[Op]] = defaultdict(list)
    for op in history.ops(COUNTER_READ_FS):
        if op.type == "ok" and op.key is not None and as_int(op.result) is not None:
            out[op.key].append(op)
    return out


@checker_factory
def reads_see_acknowledged() -> Checker:
    """A read invoked after increments were acknowledged returns at least their sum (else stale or lost)."""

    def run(history: History) -> Check:
        incs: dict[str, list[tuple[float, int]]] = defaultdict(list)
        for op in history.ops(INCREMENT_F):
            amount = as_int(op.value)
            if op.type == "ok" and op.key is not None and amount is not None:
                incs[op.key].append((op.t_complete, amount))
        checked, stale = 0, []
        for key, reads in _reads_by_key(history).items():
            acks = sorted(incs.get(key, []))
            ack_t = [t for t, _ in acks]
            sums = [0, *accumulate(a for _, a in acks)]
            for r in reads:
                n = bisect_left(ack_t, r.t_invoke)  # acks that completed strictly before the read began
                if n == 0:
                    continue
                checked += 1
                v = as_int(r.result) or 0
                if v < sums[n]:
                    stale.append({"key": key, "op_id": r.op_id, "f": r.f, "t": round(r.t_invoke, 6),
                                  "read": v, "acked": sums[n], "missing": sums[n] - v})
        msgs = [f"key {s['key']}: {s['f']} op {s['op_id']} at {s['t']:.2f}s read {s['read']} but "
                f"{s['acked']} was acknowledged before it began" for s in stale]
        return decide("reads_see_acknowledged", {"reads_checked": checked, "stale": stale},
                      failed=f"{len(stale)} stale reads on {len({s['key'] for s in stale})} keys: {examples(msgs)}"
                      if stale else None,
                      unknown=None if checked else "no read began after an acknowledged increment: nothing to check",
                      passed=f"{checked} reads all saw every increment acknowledged before they began")

    return named("reads_see_acknowledged", run)


@checker_factory
def monotonic_reads() -> Checker:
    """M: per key, a read invoked after another read completed does not return less."""

    def run(history: History) -> Check:
        checked, violations = 0, []
        for key, reads in _reads_by_key(history).items():
            done = sorted(reads, key=lambda o: o.t_complete)
            done_t = [o.t_complete for o in done]
            best: list[Op] = []  # best[i]: the op with the largest value among done[: i + 1]
            for o in done:
                if not best or (as_int(o.result) or 0) > (as_int(best[-1].result) or 0):
                    best.append(o)
                else:
                    best.append(best[-1])
            for r in reads:
                n = bisect_left(done_t, r.t_invoke)
                if n == 0:
                    continue
                checked += 1
                prev = best[n - 1]
                v, pv = as_int(r.result) or 0, as_int(prev.result) or 0
                if v < pv:
                    violations.append({"key": key, "op_id": r.op_id, "t": round(r.t_invoke, 6), "read": v,
                                       "earlier_read": pv, "earlier_op_id": prev.op_id,
                                       "earlier_t": round(prev.t_complete, 6)})
        msgs = [f"key {v['key']}: op {v['op_id']} at {v['t']:.2f}s read {v['read']} after op "
                f"{v['earlier_op_id']} had read {v['earlier_read']} (done {v['earlier_t']:.2f}s)" for v in violations]
        keys = len({v["key"] for v in violations})
        return decide("monotonic_reads", {"pairs_checked": checked, "violations": violations},
                      failed=f"{len(violations)} reads went backwards on {keys} keys: {examples(msgs)}"
                      if violations else None,
                      unknown=None if checked else "no read began after another read of the same key completed",
                      passed=f"{checked} sequential reads never went backwards")

    return named("monotonic_reads", run)
