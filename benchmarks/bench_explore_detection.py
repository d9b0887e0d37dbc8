"""How many seeded bugs `goverse-harness explore` finds without being told a scenario (issue 15: at
least 80 % with a 10-minute budget per bug).

    python benchmarks/bench_explore_detection.py --seed 1 --budget 10m            # every bug, then the correct build
    python benchmarks/bench_explore_detection.py --bug slow-failover --bug no-lease-deadline
    python benchmarks/bench_explore_detection.py --no-correct --maxfail 0          # no early stop

Runs one exploration per seeded bug (one after the other: two stacks on two cores starve each other
and turn timing checks unknown), then one on the correct build with the same seed and budget. A bug
counts as **found** only when a failing schedule failed one of the checks that are its signature
(``SIGNATURES``): a failure of another check (a recovery budget missed on a loaded machine) is shown
but not counted. ``--maxfail N`` (default 2) ends an exploration after N failing schedules, which only
saves time: the schedules come in the same order either way (the generator is a pure function of
seed and index), so the first failure is found at the same point. The correct build runs to its
budget (no early stop): any failing schedule there is a false alarm.

Prints a table and writes ``ARTIFACTS/explore-detection-<UTC>/detection.json`` (each exploration
beside it); exit 1 when fewer than ``--require`` of the bugs were found or the correct build failed a
schedule.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.refstack.bugs import BUGS  # noqa: E402

_VALUES = ("no_lost_writes", "persisted_not_behind", "reads_see_acknowledged", "monotonic_reads",
           "linearizable_counters")
# bug -> the checks whose failure is its signature (docs/seeded-bugs.md, "caught by")
SIGNATURES: dict[str, frozenset[str]] = {
    "ack-before-persist": frozenset(_VALUES),
    "no-fencing": frozenset({*_VALUES, "single_ownership", "reliable_calls_once"}),
    "stale-overwrite-on-rejoin": frozenset({*_VALUES, "single_ownership"}),
    "no-dedup": frozenset({"reliable_calls_once"}),
    "ignore-sigterm": frozenset({"sigterm_exit_within_grace"}),
    "ready-latched": frozenset({"ready_drops_on_sigterm"}),
    "slow-failover": frozenset({"failover_while_down"}),
    "lose-state-on-handover": frozenset({*_VALUES, "reliable_calls_once"}),
    "env-ignored": frozenset({"endpoints_honoured"}),
    "no-secret-reload": frozenset({"secret_rotated"}),
    "no-lease-deadline": frozenset({*_VALUES, "single_ownership"}),
    "gate-watch-not-resumed": frozenset({"every_gate_routes"}),
    "drain-gives-up-early": frozenset({"drained_in_flight", "sigterm_exit_within_grace"}),
    "ready-before-serving": frozenset({"ready_means_serving"}),
}


def explore(bug: str | None, seed: int, budget: str, maxfail: int, artifacts: Path, extra: list[str]) -> dict[str, Any]:
    """One exploration as a child process; its explore.json summary (with the wall time)."""
    out = artifacts / (bug or "correct")
    cmd = [sys.executable, "-m", "harness.cli", "explore", "--seed", str(seed), "--budget", budget,
           "--artifacts", str(out), *(["--bug", bug] if bug else []), *extra]
    if maxfail and bug:
        cmd.append(f"--maxfail={maxfail}")
    print("$ " + " ".join(cmd[2:]), flush=True)
    t0 = time.monotonic()
    rc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, check=False).returncode
    wall = time.monotonic() - t0
    runs = sorted((out / "explore").glob("*/explore.json"))
    summary = json.loads(runs[-1].read_text(encoding="utf-8")) if runs else {"segments": []}
    return {**summary, "exit": rc, "wall_s": round(wall, 1)}


def judge(bug: str | None, summary: dict[str, Any]) -> dict[str, Any]:
    """Found: the first failing schedule whose failed checks include the bug's signature."""
    sig = SIGNATURES.get(bug or "", frozenset())
    failing = [s for s in summary.get("segments") or [] if s.get("verdict") == "fail"]
    hit = next((s for s in failing if sig & set(s.get("failed_checks") or [])), None)
    return {"bug": bug, "schedules": len(summary.get("segments") or []), "verdicts": summary.get("verdicts"),
            "failing": [{"schedule": s["schedule"], "checks": s["failed_checks"], "ended_s": s["ended_s"]}
                        for s in failing],
            "found": hit is not None, "found_by": hit and hit["schedule"], "found_after_s": hit and hit["ended_s"],
            "found_checks": hit and sorted(sig & set(hit["failed_checks"])), "wall_s": summary.get("wall_s"),
            "load_end": round(os.getloadavg()[0], 1)}


def row(r: dict[str, Any]) -> str:
    other = [f"{f['schedule']} [{', '.join(f['checks'])}]" for f in r["failing"] if f["schedule"] != r["found_by"]]
    found = (f"found: {r['found_by']} at {r['found_after_s']} s [{', '.join(r['found_checks'])}]" if r["found"]
             else "not found")
    return (f"{r['bug'] or '(correct build)'}: {r['schedules']} schedules, {found}"
            + (f"; other failures: {'; '.join(other)}" if other else "") + f" — {r['wall_s']} s, load {r['load_end']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--budget", default="10m")
    p.add_argument("--bug", action="append", default=[], choices=list(BUGS), help="only these bugs (repeatable)")
    p.add_argument("--no-correct", action="store_true", help="skip the correct build's exploration")
    p.add_argument("--maxfail", type=int, default=2,
                   help="end a bug's exploration after N failing schedules (0: never)")
    p.add_argument("--require", type=float, default=0.8, help="share of the bugs that must be found (default 0.8)")
    p.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    args, extra = p.parse_known_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    where = args.artifacts / f"explore-detection-{stamp}"
    extra = extra or ["--starved-lag-ms", "1500"]
    results = []
    for bug in [*(args.bug or list(BUGS)), *([] if args.no_correct else [None])]:
        r = judge(bug, explore(bug, args.seed, args.budget, args.maxfail, where, extra))
        results.append(r)
        print(row(r), flush=True)
    bugs = [r for r in results if r["bug"]]
    found = sum(r["found"] for r in bugs)
    correct = next((r for r in results if r["bug"] is None), None)
    false_alarms = len(correct["failing"]) if correct else None
    print(f"\nfound {found} of {len(bugs)} seeded bugs ({found / max(1, len(bugs)):.0%}; required "
          f"{args.require:.0%}); correct build: "
          + ("not run" if correct is None else f"{false_alarms} failing of {correct['schedules']} schedules"))
    (where / "detection.json").parent.mkdir(parents=True, exist_ok=True)
    (where / "detection.json").write_text(json.dumps({"seed": args.seed, "budget": args.budget, "results": results},
                                                     indent=2) + "\n", encoding="utf-8")
    print(f"written {where / 'detection.json'}")
    return 0 if found >= args.require * len(bugs) and not false_alarms else 1


if __name__ == "__main__":
    sys.exit(main())
