"""`goverse-harness explore`: run random fault schedules against one stack until a time budget is spent,
save every failure with what replays it, and replay a saved failure.

Why in-process pytest over ``scenarios/explore_segments.py``: the segments are scenarios like any
other — the plugin deploys one stack for the module, each segment gets its history, checkers, result
and report, Ctrl-C and SIGTERM unwind through the same fixtures (nothing left behind) — so the
explorer adds only the plan (seed, kinds, deadline) and the bookkeeping of failures.

Layout of one exploration (``ARTIFACTS/explore/<UTC timestamp>/``)::

    plan.json                  what the segments module read (seed, kinds, deadline, or the replay)
    run/runs/<id>/             the run: run.json, report.html, one directory per segment
    failures/<schedule id>/    one per failing segment: explore.json (seed, bugs, options, failed
                               checks, the replay command), schedule.json, history.jsonl, checks.json,
                               result.json
    explore.json               the summary: schedules run, failures, time to the first one
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.explore.schedule import EXPLORABLE, Schedule, check_kinds
from harness.settings import KNOWN_BUGS, parse_duration

SEGMENTS_MODULE = Path(__file__).resolve().parent.parent.parent / "scenarios" / "explore_segments.py"
PLAN_ENV = "GVH_EXPLORE_PLAN"
SUMMARY_SCHEMA = "goverse-harness/explore/v1"
MIN_SEGMENT_S = 10.0  # no segment is shorter (baseline + after phase): bounds how many can fit a budget
COPIED = ("schedule.json", "history.jsonl", "checks.json", "result.json")


class UsageError(ValueError):
    """Bad input: one line naming the option and what is allowed."""


def parse_budget(text: str) -> float:
    """``--budget`` in seconds, with the settings' unit parser (``90s``, ``5m``, ``1m30s``, ``2.5``)."""
    value = parse_duration(text)
    if isinstance(value, str):
        raise UsageError(f"--budget: {text!r} is not a duration; use seconds or a number with a unit "
                         f"(90s, 5m, 1m30s, 1h)")
    if value <= 0:
        raise UsageError(f"--budget: must be more than 0 seconds, got {text!r}")
    return float(value)


def parse_faults(text: str | None) -> tuple[str, ...]:
    """``--faults kill,partition`` validated against the explorable kinds (default: all of them)."""
    if text is None:
        return EXPLORABLE
    try:
        return check_kinds([k.strip() for k in text.split(",") if k.strip()])
    except ValueError as exc:
        raise UsageError(f"--faults: {exc}") from None


def parse_bugs(bugs: list[str]) -> tuple[str, ...]:
    names = [b.strip() for item in bugs for b in item.split(",") if b.strip()]
    bad = [b for b in names if b not in KNOWN_BUGS]
    if bad:
        raise UsageError(f"--bug: unknown seeded bug {bad[0]!r}; known: {', '.join(KNOWN_BUGS)}")
    return tuple(names)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="goverse-harness explore",
        description="Random fault schedules (seeded, overlapping, composed) against one stack, every checker "
                    "on; each failure saved with its schedule. Other options (--platform, --stack, --nodes...) "
                    "go to the run.")
    p.add_argument("--seed", type=int, default=None, help="seed of the schedules (default: drawn, and printed)")
    p.add_argument("--budget", default="10m", help="time to explore: 90s, 5m, 1h (default 10m); a segment "
                                                    "that started is finished")
    p.add_argument("--bug", action="append", default=[], metavar="BUG",
                   help=f"seeded bug of the reference stack (repeatable): {', '.join(KNOWN_BUGS)}")
    p.add_argument("--faults", default=None, metavar="KINDS",
                   help=f"comma-separated fault kinds to draw from (default all): {','.join(EXPLORABLE)}")
    p.add_argument("--replay", type=Path, default=None, metavar="DIR",
                   help="re-run the schedule saved in a failure directory and say whether it reproduces")
    p.add_argument("--without-bugs", action="store_true",
                   help="with --replay: run the schedule against the correct build (no seeded bug)")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="artifacts directory")
    return p


class _Interrupts:
    """A pytest plugin object: notes Ctrl-C / SIGTERM, which pytest turns into an exit code."""

    def __init__(self) -> None:
        self.interrupted: BaseException | None = None

    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        import pytest

        if not isinstance(excinfo.value, pytest.Session.Interrupted):  # that is shouldstop: the budget spent
            self.interrupted = excinfo.value


def run_segments(plan: dict[str, Any], out: Path, bugs: tuple[str, ...], extra: list[str]) -> dict[str, Any] | None:
    """Write the plan, run the segments module in this process, return the run.json (None: none was
    written). Ctrl-C/SIGTERM: the run unwinds (stack torn down), then KeyboardInterrupt is raised."""
    import pytest

    (out / "plan.json").write_text(json.dumps(plan, indent=2) + "\n", encoding="utf-8")
    argv = [str(SEGMENTS_MODULE), "-q", "-p", "no:locust", "-p", "no:cacheprovider",
            "--artifacts", str(out / "run"), "--seed", str(plan["seed"]),
            *[a for b in bugs for a in ("--bug", b)], *extra]
    interrupts = _Interrupts()
    previous = {k: os.environ.get(k) for k in (PLAN_ENV, "GVH_RUN_DIR")}
    os.environ[PLAN_ENV] = str(out / "plan.json")
    os.environ.pop("GVH_RUN_DIR", None)  # a run directory of its own, under out/run
    try:
        pytest.main(argv, plugins=[interrupts])
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if interrupts.interrupted is not None:
        raise interrupts.interrupted if isinstance(interrupts.interrupted, KeyboardInterrupt) else KeyboardInterrupt()
    found = sorted((out / "run").glob("runs/*/run.json"))
    return json.loads(found[-1].read_text(encoding="utf-8")) if found else None


def failed_checks(scenario: dict[str, Any]) -> list[str]:
    return [str(c["name"]) for c in scenario.get("checks") or [] if c.get("verdict") == "fail"]


def save_failure(scenario: dict[str, Any], run_dir: Path, out: Path, meta: dict[str, Any]) -> Path:
    """Copy a failing segment's files (``run_dir``/its dir) into ``out/failures/<schedule id>/`` with
    explore.json."""
    src = run_dir / str(scenario.get("dir") or "")
    sched = json.loads((src / "schedule.json").read_text(encoding="utf-8"))
    dest = out / "failures" / str(sched["id"])
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        if (src / name).exists():
            shutil.copy2(src / name, dest / name)
    info = {**meta, "schedule_id": sched["id"], "scenario": scenario.get("id"), "verdict": scenario.get("verdict"),
            "reason": scenario.get("reason"), "failed_checks": failed_checks(scenario), "segment_dir": str(src),
            "found_after_s": ((scenario.get("extra") or {}).get("explore") or {}).get("ended_s"),
            "replay": f"goverse-harness explore --replay {dest}"}
    (dest / "explore.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return dest


def summarize(run: dict[str, Any] | None, out: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The exploration's summary (explore.json), failures saved on the way."""
    segments = [s for s in (run or {}).get("scenarios") or [] if "explore_segment" in str(s.get("id"))]
    run_dir = out / "run" / "runs" / str((run or {}).get("run_id"))
    rows, failures = [], []
    for s in segments:
        ex = (s.get("extra") or {}).get("explore") or {}
        rows.append({"schedule": ex.get("schedule"), "faults": ex.get("faults"), "verdict": s.get("verdict"),
                     "failed_checks": failed_checks(s), "ended_s": ex.get("ended_s")})
        if s.get("verdict") == "fail":
            failures.append(str(save_failure(s, run_dir, out, meta)))
    firsts = [r["ended_s"] for r in rows if r["verdict"] == "fail" and r["ended_s"] is not None]
    return {"schema": SUMMARY_SCHEMA, **meta, "schedules": len(rows),
            "verdicts": {v: sum(1 for r in rows if r["verdict"] == v) for v in ("pass", "fail", "unknown", "skipped")},
            "failures": failures, "first_failure_after_s": min(firsts) if firsts else None,
            "run_dir": str(out / "run"), "run_id": (run or {}).get("run_id"), "segments": rows}


def explore(args: argparse.Namespace, extra: list[str]) -> int:
    if args.without_bugs:
        raise UsageError("--without-bugs: only with --replay DIR (a new exploration takes --bug or not)")
    budget = parse_budget(args.budget)
    kinds = parse_faults(args.faults)
    bugs = parse_bugs(args.bug)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    out = args.artifacts / "explore" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    plan = {"seed": seed, "kinds": list(kinds), "started": started, "deadline": started + budget,
            "segments": max(1, math.ceil(budget / MIN_SEGMENT_S))}
    print(f"goverse-harness explore: seed {seed}, budget {budget:g}s, faults {','.join(kinds)}"
          f"{', bugs ' + ','.join(bugs) if bugs else ''}; in {out}", flush=True)
    run = run_segments(plan, out, bugs, extra)
    meta = {"seed": seed, "budget_s": budget, "kinds": list(kinds), "bugs": list(bugs), "run_args": extra,
            "elapsed_s": round(time.time() - started, 1)}
    summary = summarize(run, out, meta)
    (out / "explore.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(render_summary(summary))
    if run is None:
        print("goverse-harness explore: the run wrote no run.json (see the output above)", file=sys.stderr)
        return 2
    return 1 if summary["failures"] else 0


def render_summary(summary: dict[str, Any]) -> str:
    lines = [f"explore: {summary['schedules']} schedules in {summary['elapsed_s']}s (seed {summary['seed']}): "
             + ", ".join(f"{n} {v}" for v, n in summary["verdicts"].items() if n)]
    for r in summary["segments"]:
        checks = f" [{', '.join(r['failed_checks'])}]" if r["failed_checks"] else ""
        lines.append(f"  {r['schedule']}: {r['verdict']}{checks} — {r['faults']}")
    if summary["failures"]:
        lines.append(f"first failure after {summary['first_failure_after_s']}s; saved:")
        lines += [f"  {f}  (replay: goverse-harness explore --replay {f})" for f in summary["failures"]]
    else:
        lines.append("no failure found")
    return "\n".join(lines)


def replay(args: argparse.Namespace, extra: list[str]) -> int:
    """Re-run a saved failure's schedule with its seed, bugs and run options; exit 0 if it fails again
    (reproduced), 1 if not."""
    src: Path = args.replay
    try:
        info = json.loads((src / "explore.json").read_text(encoding="utf-8"))
        schedule = Schedule.from_dict(json.loads((src / "schedule.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"--replay: {src} is not a saved explore failure (explore.json and schedule.json): "
                         f"{exc}") from None
    out = args.artifacts / "explore" / (datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-replay")
    out.mkdir(parents=True, exist_ok=True)
    bugs = () if args.without_bugs else tuple(info.get("bugs") or ())
    run_args = [*(info.get("run_args") or []), *extra]
    print(f"goverse-harness explore --replay {src}: schedule {schedule.id} ({schedule.describe()}), "
          f"bugs {','.join(bugs) or 'none'}; in {out}", flush=True)
    plan = {"seed": schedule.seed, "replay": [schedule.to_dict()], "started": time.time()}
    run = run_segments(plan, out, bugs, run_args)
    seg = next((s for s in (run or {}).get("scenarios") or [] if "explore_segment" in str(s.get("id"))), None)
    verdict = (seg or {}).get("verdict", "no result")
    now_failed = failed_checks(seg or {})
    before = list(info.get("failed_checks") or [])
    reproduced = verdict == "fail"
    same = sorted(now_failed) == sorted(before)
    result = {"replayed": str(src), "schedule_id": schedule.id, "bugs": list(bugs), "verdict": verdict,
              "reproduced": reproduced,
              "failed_checks": now_failed, "originally_failed": before, "same_checks": same,
              "run_dir": str(out / "run")}
    (out / "replay.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if reproduced:
        print(f"reproduced: {verdict}, failed checks {', '.join(now_failed)}"
              + ("" if same else f" (originally {', '.join(before)})"))
    else:
        print(f"not reproduced: the segment's verdict is {verdict} (originally failed {', '.join(before)})")
    return 0 if reproduced else 1


def explore_main(argv: list[str]) -> int:
    p = build_parser()
    args, extra = p.parse_known_args(argv)
    try:
        return replay(args, extra) if args.replay is not None else explore(args, extra)
    except UsageError as exc:
        print(f"goverse-harness explore: {exc}", file=sys.stderr)
        return 2
