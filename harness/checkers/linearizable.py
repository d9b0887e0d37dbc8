"""Linearizability of each counter key: a WGL-style search (Wing & Gong, Lowe; as in Knossos and
Porcupine) over the key's increments and reads.

Why next to L and M: L compares only the final value with the acknowledged sum, and M compares reads
with earlier reads. A read that returns a value older than an increment acknowledged (to another
client) before the read began, while every reader still sees its own values go up, passes both; it is
not linearizable. This checker asks the full question: is there one order of the key's operations,
consistent with real time, in which every answer is what a single counter would have given?

The model (a counter starting at 0):
- ``increment`` by n: the state becomes state + n; an ok increment's result, when recorded, is the
  new value and must match.
- ``read`` / ``probe`` / ``final-read``: the result must equal the state.
- ``ok`` ops must be linearized between their invocation and their completion; ``fail`` ops did not
  happen and are left out; ``info`` (indeterminate) increments may take effect at any point after
  their invocation, or never (their completion is at infinity: Knossos/Porcupine semantics);
  indeterminate reads have no effect and are left out.

First a test by sums alone: every ok increment that completed before an op began must precede it and
only increments invoked before it completed may, so an answer outside those sums is impossible (a
history that lost writes fails here at once, where the search would first refute every subset of its
indeterminate increments). Then the search walks configurations (the set of ops already linearized,
the state), memoised, trying next only ops invoked before the earliest completion still pending, and
of the indeterminate increments of one amount only the earliest-invoked (they have no deadline and the
same effect, so any order using a later one can use the earlier one instead). It
is exponential in the worst case, so each key has a bound on explored configurations: hitting it is
``unknown`` (which key, the bound), never a pass.

Result shape (``Check.data``): ``{"keys": n, "ops": n, "states_explored": n, "max_states_per_key": n,
"bound": n, "total_bound": n, "violations": [{key, op_id, f, t_invoke, t_complete, value, result, possible_states,
bounds, window: [op rows]}], "unknown": [{key, states_explored, ops, bound: key|total}], "skipped_ops": n}``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from harness.checkers.ops import COUNTER_READ_FS, INCREMENT_F, as_int
from harness.checkers.verdict import Check, Checker, checker_factory, decide, examples, named
from harness.history import History, Op

DEFAULT_MAX_STATES = 100_000  # per key; a correct run's key needs about one configuration per op
DEFAULT_MAX_TOTAL_STATES = 1_000_000  # per history: 100k-300k configurations/s (benchmarks/), seconds
MAX_STATES_SHOWN = 8  # possible states named in a violation


@dataclass(frozen=True)
class _Entry:
    """One op of a key as the search sees it: ``delta`` is None for a read."""

    op: Op
    delta: int | None
    want: int | None  # the value the op returned (None: unconstrained)
    t_invoke: float
    t_return: float  # math.inf for an indeterminate increment
    required: bool  # ok ops must be linearized; indeterminate ones may never take effect

    def step(self, state: int) -> int | None:
        """The next state, or None when the op's answer is impossible from ``state``."""
        new = state if self.delta is None else state + self.delta
        return new if self.want is None or self.want == new else None


@dataclass
class KeyResult:
    key: str
    ops: int
    states: int
    ok: bool | None  # None: the bound was hit
    blocking: _Entry | None = None
    possible: tuple[int, ...] = ()  # the values the counter could hold just before the blocking op
    bounds: tuple[int, int] | None = None  # or, from sums alone: it held between these two


def _entries(ops: list[Op]) -> tuple[list[_Entry], int]:
    """The key's ops as search entries (ordered by invocation) and how many were left out because
    their recorded value cannot be read (an ok op without an integer answer is unconstrained only
    for increments)."""
    out: list[_Entry] = []
    skipped = 0
    for op in ops:
        if op.type == "fail":
            continue
        if op.f == INCREMENT_F:
            amount = as_int(op.value)
            if amount is None:
                skipped += 1
                continue
            if op.type == "ok":
                out.append(_Entry(op, amount, as_int(op.result), op.t_invoke, op.t_complete, True))
            else:  # info: may take effect at any time after its invocation, or never
                out.append(_Entry(op, amount, None, op.t_invoke, math.inf, False))
        elif op.type == "ok":  # a read: only answered reads say anything
            value = as_int(op.result)
            if value is None:
                skipped += 1
                continue
            out.append(_Entry(op, None, value, op.t_invoke, op.t_complete, True))
    out.sort(key=lambda e: (e.t_invoke, e.op.op_id))
    return out, skipped


def _outside_bounds(key: str, entries: list[_Entry]) -> KeyResult | None:
    """The first op (by completion) whose answer no order can give, by sums alone: every ok increment
    that completed before it began must precede it, and only increments invoked before it completed
    may. Why before the search: a history that lost writes (every later answer impossible) makes the
    search refute 2^k subsets of its k indeterminate increments before it can say fail; this finds
    such an answer in O(n log n)."""
    done = sorted((e.t_return, e.delta) for e in entries if e.required and e.delta is not None)
    done_t = [t for t, _ in done]
    done_sum = [0, *accumulate(d for _, d in done)]
    began = sorted((e.t_invoke, e.delta) for e in entries if e.delta is not None)
    began_t = [t for t, _ in began]
    began_sum = [0, *accumulate(d for _, d in began)]
    bad: list[tuple[float, _Entry, int, int]] = []
    for e in entries:
        if not e.required or e.want is None:
            continue
        lo = done_sum[bisect_left(done_t, e.t_invoke)]
        hi = began_sum[bisect_right(began_t, e.t_return)] - (e.delta or 0)
        before = e.want - (e.delta or 0)  # the value the op found
        if not lo <= before <= hi:
            bad.append((e.t_return, e, lo, hi))
    if not bad:
        return None
    _, e, lo, hi = min(bad, key=lambda b: (b[0], b[1].op.op_id))
    return KeyResult(key, len(entries), 0, False, e, (), (lo, hi))


FIRST_PASS_STATES = 20_000  # the plain search's share of a key's bound before the monotone cut is tried


def check_key(key: str, entries: list[_Entry], max_states: int) -> KeyResult:
    """WGL search over one key's entries: depth-first over (linearized set, state), memoised, after
    the sums-only test (:func:`_outside_bounds`). When the plain search cannot decide within
    ``FIRST_PASS_STATES``, the rest of the bound goes to a search that also cuts every configuration a
    counter that only goes up could never leave (:func:`_overshoots`). Why two passes: the cut decides
    histories the plain search cannot (many answers in flight together after a long cut), but a
    refutation it finds names a less telling blocking op (it stops before the stale read), so small
    histories keep the plain search's diagnosis."""
    quick = _outside_bounds(key, entries)
    if quick is not None:
        return quick
    first = _search(key, entries, min(max_states, FIRST_PASS_STATES), cut_overshoot=False)
    rest = max_states - first.states
    if first.ok is not None or rest < 1 or not all(e.delta is None or e.delta >= 0 for e in entries):
        return first
    second = _search(key, entries, rest, cut_overshoot=True)
    second.states += first.states
    return second


def _search(key: str, entries: list[_Entry], max_states: int, cut_overshoot: bool) -> KeyResult:
    n = len(entries)
    required_mask = 0
    for i, e in enumerate(entries):
        if e.required:
            required_mask |= 1 << i
    # A counter whose increments are all non-negative never goes down, so a configuration whose state
    # is already past the value some pending ok op found can never linearize that op: with
    # ``cut_overshoot`` it is cut at once (without this, a run with many concurrent ok increments and
    # timed-out ones of several amounts explores millions of overshooting interleavings: Goverse,
    # gates cut from a node for 30 s).
    found = [e.want - (e.delta or 0) if e.required and e.want is not None else None for e in entries]
    start = (0, 0)
    seen: set[tuple[int, int]] = {start}
    stack = [start]
    best_done = -1
    blocking_i = -1
    possible: dict[int, set[int]] = defaultdict(set)  # blocking op index -> states it was stuck at
    while stack:
        mask, state = stack.pop()
        if mask & required_mask == required_mask:
            return KeyResult(key, n, len(seen), True)
        # candidates: not yet linearized, invoked no later than the earliest pending completion
        i = (~mask & (mask + 1)).bit_length() - 1  # the lowest op not yet linearized
        min_ret, min_i = math.inf, -1
        cands: list[int] = []
        while i < n:
            e = entries[i]
            if e.t_invoke > min_ret:
                break
            if not mask >> i & 1:
                cands.append(i)
                if e.t_return < min_ret:
                    min_ret, min_i = e.t_return, i
            i += 1
        done = bin(mask & required_mask).count("1")
        if done > best_done:
            best_done, blocking_i = done, min_i
        if min_i >= 0 and len(possible[min_i]) <= MAX_STATES_SHOWN:
            possible[min_i].add(state)
        # push indeterminate ops first so ok ops (in completion order) are tried first
        cands.sort(key=lambda j: (entries[j].required, -entries[j].t_return))
        tried_deltas: set[int | None] = set()
        for j in cands:
            e = entries[j]
            if e.t_invoke > min_ret:
                continue
            if not e.required:
                # indeterminate increments of the same amount are interchangeable once invoked (no
                # deadline, same effect): trying only the earliest-invoked one loses no order, and
                # keeps 40 timed-out increments from spanning 2^40 subsets (Goverse, gates cut off)
                if e.delta in tried_deltas:
                    continue
                tried_deltas.add(e.delta)
            nxt = e.step(state)
            if nxt is None:
                continue
            conf = (mask | 1 << j, nxt)
            if conf in seen:
                continue
            if cut_overshoot and nxt > state and _overshoots(conf[0], nxt, found):
                continue
            if len(seen) >= max_states:
                return KeyResult(key, n, len(seen), None)
            seen.add(conf)
            stack.append(conf)
    blocking = entries[blocking_i] if blocking_i >= 0 else None
    return KeyResult(key, n, len(seen), False, blocking, tuple(sorted(possible.get(blocking_i, ()))))


def _overshoots(mask: int, state: int, found: list[int | None]) -> bool:
    """Whether an op not in ``mask`` found a value below ``state`` (a monotone counter cannot go back to it)."""
    return any(v is not None and v < state and not mask >> i & 1 for i, v in enumerate(found))


def _row(op: Op) -> dict[str, Any]:
    return {"op_id": op.op_id, "process": op.process, "f": op.f, "type": op.type,
            "t_invoke": round(op.t_invoke, 6), "t_complete": round(op.t_complete, 6),
            "value": op.value, "result": op.result}


def offending_window(entries: list[_Entry], blocking: _Entry) -> list[dict[str, Any]]:
    """The smallest window that shows the violation: the ok ops that completed last before the blocking
    op began (what it should have seen), and every op whose interval overlaps from there to the
    blocking op's completion."""
    before = [e.t_return for e in entries if e.required and e.t_return < blocking.t_invoke]
    t_from = max(before, default=blocking.t_invoke)
    t_to = blocking.t_return
    rows = [e for e in entries if e.t_invoke <= t_to and e.t_return >= t_from]
    return [_row(e.op) for e in rows]


def _describe(op: Op, possible: list[int], bounds: list[int] | None) -> str:
    what = f"increment by {op.value} returned {op.result}" if op.f == INCREMENT_F else \
        f"{op.f} returned {op.result}"
    if bounds is not None:
        held = f"held between {bounds[0]} and {bounds[1]} before it"
    else:
        held = "could only hold {" + (", ".join(str(s) for s in possible) or "nothing") + "} before it"
    return f"op {op.op_id} ({op.process}) {what} at {op.t_invoke:.3f}–{op.t_complete:.3f}s; the counter {held}"


@checker_factory
def linearizable_counters(max_states: int = DEFAULT_MAX_STATES,
                          max_total_states: int = DEFAULT_MAX_TOTAL_STATES) -> Checker:
    """Each counter key is linearizable (increments return the new value, reads the value).
    ``max_states`` bounds one key's search, ``max_total_states`` the whole history's (keys left when it
    is spent are unknown), so a pathological run costs seconds, not minutes."""
    for name, v in (("max_states", max_states), ("max_total_states", max_total_states)):
        if v < 1:
            raise ValueError(f"{name} must be a positive number of configurations, got {v}")

    def run(history: History) -> Check:
        by_key: dict[str, list[Op]] = defaultdict(list)
        for op in history.ops({INCREMENT_F, *COUNTER_READ_FS}):
            if op.key is not None:
                by_key[op.key].append(op)
        violations: list[dict[str, Any]] = []
        unknown: list[dict[str, Any]] = []
        total_states = max_key_states = total_ops = skipped = 0
        judged = 0
        for key in sorted(by_key):
            entries, skip = _entries(by_key[key])
            skipped += skip
            if not any(e.required for e in entries):
                continue  # nothing acknowledged on this key: nothing to judge
            judged += 1
            budget = min(max_states, max_total_states - total_states)
            if budget < 1:
                unknown.append({"key": key, "states_explored": 0, "ops": len(entries), "bound": "total"})
                continue
            res = check_key(key, entries, budget)
            total_ops += res.ops
            total_states += res.states
            max_key_states = max(max_key_states, res.states)
            if res.ok is None:
                unknown.append({"key": key, "states_explored": res.states, "ops": res.ops,
                                "bound": "key" if budget == max_states else "total"})
            elif not res.ok and res.blocking is not None:
                b = res.blocking.op
                violations.append({"key": key, "op_id": b.op_id, "f": b.f, "process": b.process,
                                   "t_invoke": round(b.t_invoke, 6), "t_complete": round(b.t_complete, 6),
                                   "value": b.value, "result": b.result,
                                   "possible_states": list(res.possible),
                                   "bounds": list(res.bounds) if res.bounds else None,
                                   "window": offending_window(entries, res.blocking)})
        data: dict[str, Any] = {"keys": judged, "ops": total_ops, "states_explored": total_states,
                                "max_states_per_key": max_key_states, "bound": max_states,
                                "total_bound": max_total_states,
                                "violations": violations, "unknown": unknown, "skipped_ops": skipped}
        msgs = [f"key {v['key']}: {_describe(_op_of(v), v['possible_states'], v['bounds'])} "
                f"(window of {len(v['window'])} ops)" for v in violations]
        unk = [f"key {u['key']} ({u['ops']} ops) hit the bound of {max_states} explored states"
               if u["bound"] == "key" else
               f"key {u['key']} ({u['ops']} ops) not decided: the history's bound of {max_total_states} "
               f"explored states was spent" for u in unknown]
        return decide("linearizable_counters", data,
                      failed=f"{len(violations)} of {judged} keys are not linearizable: {examples(msgs)}"
                      if violations else None,
                      unknown=examples(unk) if unknown else None if judged else
                      "no acknowledged counter operation recorded: nothing to check",
                      passed=f"all {judged} keys linearizable ({total_ops} ops, {total_states} states "
                             f"explored, at most {max_key_states} for one key)")

    return named("linearizable_counters", run)


def _op_of(v: dict[str, Any]) -> Op:
    return Op(op_id=v["op_id"], process=v["process"], f=v["f"], key=v["key"], value=v["value"],
              result=v["result"], type="ok", t_invoke=v["t_invoke"], t_complete=v["t_complete"])
