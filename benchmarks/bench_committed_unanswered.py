"""How many writes were committed but unanswered at each kill, from recorded histories.

Why: retry and duplicate bugs live in "committed, answer lost" — a write PostgreSQL committed whose
reply never reached the client because the node died. Before issue 15 that happened by luck (0-2 writes
in flight at a kill); ``Kill(hold_replies_ms)`` with a burst aimed at the victim makes it certain. This
prints, per kill in each history: the increments and deposits in flight at the kill that ended with an
unknown outcome (``info``), and how much of the unknown increments' amount the final reads show applied
(final − acknowledged sum over the keys they touched: committed although unanswered). For deposits the
"applied" column is only meaningful without ``retry_unknown``: a deposit re-sent with its call_id and
answered ok counts as acknowledged, so a committed-then-retried deposit shows as 0 there.

    python3 benchmarks/bench_committed_unanswered.py artifacts/bugs/<ts>/runs/...   # dirs or history.jsonl
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.history import History


def histories(args: list[str]) -> list[Path]:
    out: list[Path] = []
    for a in args:
        p = Path(a)
        out += sorted(p.rglob("history.jsonl")) if p.is_dir() else [p]
    return out


def per_kill(h: History) -> list[dict[str, Any]]:
    incs = h.ops("increment")
    acked: dict[str, int] = defaultdict(int)
    for o in incs:
        if o.type == "ok":
            acked[o.key or ""] += int(o.value or 0)
    finals = {o.key: int(o.result) for o in h.ops("final-read") if o.type == "ok" and o.result is not None}
    rows = []
    for w in h.faults():
        if w.kind != "kill":
            continue
        t = w.t_start  # the signal was sent just before t_inject
        flying = [o for o in incs + h.ops("deposit") if o.t_invoke <= t <= o.t_complete and o.type == "info"]
        keys = {o.key for o in flying if o.f == "increment"}
        unknown_amount = sum(int(o.value or 0) for o in flying if o.f == "increment")
        applied = sum(finals[k] - acked[k] for k in keys if k in finals)
        # deposits: final balance − distinct acknowledged call_ids, over the wallets of unknown deposits
        wallets = {o.key for o in flying if o.f == "deposit"}
        acked_ids: dict[str, dict[str, int]] = defaultdict(dict)
        for o in h.ops("deposit"):
            if o.type == "ok" and isinstance(o.value, dict):
                acked_ids[o.key or ""][str(o.value.get("call_id"))] = int(o.value.get("amount") or 0)
        balances = {o.key: int(o.result) for o in h.ops("final-balance") if o.type == "ok" and o.result is not None}
        dep_applied = sum(balances[w] - sum(acked_ids[w].values()) for w in wallets if w in balances)
        dep_unknown = sum(int(o.value.get("amount") or 0) for o in flying
                          if o.f == "deposit" and isinstance(o.value, dict))
        rows.append({"unknown_increments": sum(o.f == "increment" for o in flying),
                     "unknown_deposits": sum(o.f == "deposit" for o in flying),
                     "unknown_amount": unknown_amount, "applied_amount": applied,
                     "unknown_dep_amount": dep_unknown, "dep_applied_amount": dep_applied,
                     "held": bool(w.params.get("replies_held_on"))})
    return rows


def main(argv: list[str]) -> int:
    files = histories(argv)
    if not files:
        print("usage: bench_committed_unanswered.py RUN_DIR|history.jsonl ...", file=sys.stderr)
        return 2
    print(f"{'history':60s} {'held':>5s} {'unk.inc':>7s} {'unk.amt':>7s} {'applied':>7s} {'unk.dep':>7s} "
          f"{'dep.amt':>7s} {'applied':>7s}")
    for f in files:
        for r in per_kill(History.load(f)):
            print(f"{str(f.parent)[-60:]:60s} {str(r['held']):>5s} {r['unknown_increments']:7d} "
                  f"{r['unknown_amount']:7d} {r['applied_amount']:7d} {r['unknown_deposits']:7d} "
                  f"{r['unknown_dep_amount']:7d} {r['dep_applied_amount']:7d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
