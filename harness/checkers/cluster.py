"""C: the cluster converged after the last heal, within a budget, and is still converged at the end.

The shard-map oracle samples etcd into the history (``sample`` events, ``f="shardmap"``, value
``{"converged", "unconverged", "live_nodes", "owners"}``; converged = every shard's target == current
and its owner alive). Judging from samples keeps C re-checkable offline from ``history.jsonl``.

Reference time: ``since`` if given; else the last t_heal of any nemesis window; with no window, the
first shard-map sample (observation began: with nothing to recover from, ``within_s=0`` means
"already converged when first looked at").

Samples the oracle could not take (``{"error": ...}``, e.g. etcd under fault) are not evidence either
way: they are skipped, and only such samples after the reference time make the verdict ``unknown``.

``Check.data``: ``{"since": t, "converged_at": t | None, "after_s": s | None, "budget_s": s,
"samples": n, "final": {sample value}}``
"""

from __future__ import annotations

from typing import Any

from harness.checkers.verdict import Check, Checker, Verdict, checker_factory, named
from harness.history import History

NAME = "converged"
SHARDMAP_F = "shardmap"


@checker_factory
def converged(within_s: float, since: float | None = None) -> Checker:
    """C: a converged shard-map sample within ``within_s`` of the last heal (or ``since``), and the last
    sample converged."""

    def run(history: History) -> Check:
        faults = history.faults()
        unhealed = [f.id for f in faults if f.t_stop is None]
        if unhealed:
            return Check(NAME, Verdict.UNKNOWN, f"fault(s) {', '.join(unhealed)} never healed: convergence "
                         "after the heal cannot be judged", {"unhealed": unhealed})
        all_samples = [s for s in history.samples(SHARDMAP_F) if isinstance(s.value, dict)]
        if since is not None:
            ref, what = since, f"t={since:.2f}s"
        elif faults:
            ref, what = max(f.t_stop or 0.0 for f in faults), "the last heal"
        else:
            ref = all_samples[0].t if all_samples else 0.0
            what = "the first shard-map sample"
        after = [s for s in all_samples if s.t >= ref]
        samples = [s for s in after if "converged" in s.value]
        data: dict[str, Any] = {"since": ref, "converged_at": None, "after_s": None, "budget_s": within_s,
                                "samples": len(samples), "failed_samples": len(after) - len(samples)}
        if not samples:
            errors = [s.value.get("error") for s in after if "error" in s.value]
            why = f" (oracle errors: {errors[-1]})" if errors else ""
            return Check(NAME, Verdict.UNKNOWN, f"no shard-map samples after {what}{why}", data)
        last = samples[-1]
        data["final"] = last.value
        first_ok = next((s for s in samples if s.value.get("converged") is True), None)
        if first_ok is None:
            return Check(NAME, Verdict.FAIL, f"never converged after {what}: last sample at {last.t:.2f}s has "
                         f"{last.value.get('unconverged')} unconverged shards, live nodes "
                         f"{last.value.get('live_nodes')}", data)
        took = round(first_ok.t - ref, 6)
        data.update(converged_at=first_ok.t, after_s=took)
        if took > within_s:
            return Check(NAME, Verdict.FAIL, f"converged {took:.2f}s after {what} > budget {within_s:g}s "
                         f"(at {first_ok.t:.2f}s)", data)
        if last.value.get("converged") is not True:
            return Check(NAME, Verdict.FAIL, f"converged {took:.2f}s after {what} but the last sample at "
                         f"{last.t:.2f}s has {last.value.get('unconverged')} unconverged shards", data)
        return Check(NAME, Verdict.PASS, f"converged {took:.2f}s after {what} (budget {within_s:g}s) and "
                     f"still converged at {last.t:.2f}s", data)

    return named(NAME, run)
