"""`goverse-harness bugs`: how often each seeded bug is caught by the scenarios meant to catch it, and
how often the correct build raises a false alarm on the same selections.

Why a matrix with rates: a bug shown caught once, by hand, says little — detection that depends on
timing (a write in flight at the kill, a read in the stale window) is a rate, and a harness change can
quietly lower it. Each bug runs against its selections N times, the correct build runs the same
selections N times, and the command exits non-zero when a bug is caught less often than its stated
rate or the correct build fails at all.

Two parts: a pure one (:func:`build_matrix`, :func:`render_markdown`) that reads the ``run.json`` of
each run, and a thin runner (:func:`bugs_main`) that calls ``goverse-harness run`` once per bug,
selection and repeat, each in its own artifacts directory.

Counting: a run *caught* the bug when one of its scenarios has verdict ``fail``; ``unknown`` is shown
but is not a catch (it is not evidence of the bug). For the correct build, any verdict but ``pass``
or ``skipped`` is a false alarm (``unknown`` fails a run too) — except an ``unknown`` because the
harness was starved (``is_starved``: its measurement is invalid, as the run itself says when it does
not fail on it): that result is *invalid*, counted apart, neither a catch nor an alarm nor a pass, and
the runner measures again (``--invalid-retries``, same repeat) so each repeat has a valid run when the
machine allows; ``--strict-unknown`` passed on to the runs makes it an alarm again. A run that wrote no
run.json (a crash before the report) counts as an error, never as a catch.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.childrun import run_child
from harness.refstack.bugs import BUGS
from harness.report.results import is_starved


@dataclass(frozen=True)
class Selection:
    """One `goverse-harness run` selection: a scenario file and a -k expression."""

    file: str
    k: str

    @property
    def label(self) -> str:
        return f"{Path(self.file).stem}[{self.k}]"


def _sel(file: str, k: str) -> Selection:
    return Selection(f"scenarios/{file}", k)


# bug -> the selections docs/seeded-bugs.md says catch it ("scenario expected to catch it")
CATCHERS: dict[str, tuple[Selection, ...]] = {
    "ack-before-persist": (_sel("test_restarts.py", "restart_node_sigkill"),),
    "no-fencing": (_sel("test_chaos.py", "pause-one-node]"), _sel("test_partitions.py", "partition-isolate-node]")),
    "stale-overwrite-on-rejoin": (_sel("test_chaos.py", "pause-one-node]"),
                                  _sel("test_partitions.py", "partition-node-etcd]")),
    "no-dedup": (_sel("test_restarts.py", "restart_node_graceful or restart_node_sigkill"),),
    "ignore-sigterm": (_sel("test_restarts.py", "restart_node_graceful"),
                       _sel("test_conformance.py", "sigterm_exit_within_grace")),
    "ready-latched": (_sel("test_conformance.py", "ready_drops_on_sigterm or ready_drops_on_etcd_loss"),),
    "slow-failover": (_sel("test_restarts.py", "restart_node_sigkill"),),
    "lose-state-on-handover": (_sel("test_scaling.py", "scale_nodes_down"),),
    "env-ignored": (_sel("test_conformance.py", "test_env_"),),
    "no-secret-reload": (_sel("test_config_and_secrets.py", "secret_rotation"),),
    # stale-view bugs (issue 15): a node or a gate acting on an old view of etcd
    "no-lease-deadline": (_sel("test_stale_view.py", "partition-node-gate-etcd"),),
    "gate-watch-not-resumed": (_sel("test_stale_view.py", "partition_gate_etcd_during_kill"),),
    "drain-gives-up-early": (_sel("test_restarts.py", "sigterm_drain_near_grace"),),
    # readiness means serving (issue 15): a node's /ready 200 while its claimed shards still warm up
    "ready-before-serving": (_sel("test_restarts.py", "restart_node_graceful"),),
}

# bug -> the one selection CI runs (`bugs --quick`, scripts/test): the cheapest of CATCHERS[bug] (or a
# narrower -k inside one) that caught the bug in every measured run; docs/seeded-bugs.md gives the
# figures. Each must also be collected by scripts/test's local scenario step (marker e2e), which runs it
# on the correct build — that is why CI may skip the correct build here (--no-correct); a test checks it.
QUICK: dict[str, Selection] = {
    "ack-before-persist": _sel("test_restarts.py", "restart_node_sigkill"),
    "no-fencing": _sel("test_chaos.py", "pause-one-node]"),
    "stale-overwrite-on-rejoin": _sel("test_chaos.py", "pause-one-node]"),
    "no-dedup": _sel("test_restarts.py", "restart_node_sigkill"),
    "ignore-sigterm": _sel("test_conformance.py", "sigterm_exit_within_grace"),
    "ready-latched": _sel("test_conformance.py", "ready_drops_on_sigterm"),
    "slow-failover": _sel("test_restarts.py", "restart_node_sigkill"),
    "lose-state-on-handover": _sel("test_scaling.py", "scale_nodes_down"),
    "env-ignored": _sel("test_conformance.py", "test_env_node_id"),
    "no-secret-reload": _sel("test_config_and_secrets.py", "secret_rotation"),
    "no-lease-deadline": _sel("test_stale_view.py", "partition-node-gate-etcd"),
    "gate-watch-not-resumed": _sel("test_stale_view.py", "partition_gate_etcd_during_kill"),
    "drain-gives-up-early": _sel("test_restarts.py", "sigterm_drain_near_grace"),
    "ready-before-serving": _sel("test_restarts.py", "restart_node_graceful"),
}

# bug -> the share of runs that must catch it (issue 15: at least 9 of 10). A bug is caught in a run
# when any of its selections fails; required catches = ceil(rate * N), so N = 1 requires 1 of 1.
STATED_RATE: dict[str, float] = {bug: 0.9 for bug in BUGS}

CORRECT = "(correct build)"


@dataclass
class Run:
    """One `goverse-harness run` of one selection: ``bug`` None is the correct build."""

    bug: str | None
    selection: Selection
    repeat: int
    run_json: dict[str, Any] | None  # None: the run wrote no run.json
    exit_code: int = 0
    artifacts: str = ""
    wall_s: float | None = None  # the whole `goverse-harness run` process, start to exit
    attempt: int = 0  # > 0: a measurement again after an invalid (starved) run of the same repeat


@dataclass
class Cell:
    runs: int = 0  # valid results (invalid ones are counted apart)
    caught: int = 0  # verdict fail (for the correct build: a false alarm, fail or unknown)
    unknown: int = 0
    errors: int = 0
    invalid: int = 0  # unknown because the harness was starved: no evidence either way
    failed_checks: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def to_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "caught": self.caught, "unknown": self.unknown, "errors": self.errors,
                "invalid": self.invalid, "failed_checks": dict(sorted(self.failed_checks.items()))}


def _strict(run: Run) -> bool:
    return bool(((run.run_json or {}).get("settings") or {}).get("strict_unknown"))


def invalid_run(run: Run) -> bool:
    """The run measured nothing usable: a scenario is unknown because the harness was starved and none
    failed (a fail is evidence as it stands), and the run was not strict about unknowns."""
    scen = _scenarios(run)
    return (not _strict(run) and any(is_starved(s) for s in scen)
            and not any(s.get("verdict") == "fail" for s in scen))


def _scenarios(run: Run) -> list[dict[str, Any]]:
    """The run's scenarios, and its conformance checks as scenarios of one check each: a conformance
    selection (``test_conformance.py -k test_env_``) writes its verdicts as run.json ``conformance``
    rows, not scenarios, and would otherwise read as a run without results (an error, never a catch;
    a false alarm of the correct build). Rows that decided nothing (skipped, not applicable) are left out."""
    data = run.run_json or {}
    rows = [{"id": f"conformance {r.get('id')}", "verdict": r.get("verdict"),
             "checks": [{"name": str(r.get("id")), "verdict": r.get("verdict")}]}
            for r in data.get("conformance") or [] if isinstance(r, dict)
            and r.get("verdict") in ("pass", "fail", "unknown")]
    return list(data.get("scenarios") or []) + rows


def build_matrix(runs: list[Run], rates: dict[str, float] | None = None) -> dict[str, Any]:
    """The matrix from the runs' run.json: per bug and scenario id, caught k of N and which checks
    failed; per bug, the runs (repeats) in which any selection caught it against the stated rate; for
    the correct build, the false-alarm rate."""
    rates = STATED_RATE if rates is None else rates
    cells: dict[str, dict[str, Cell]] = defaultdict(lambda: defaultdict(Cell))
    caught_in: dict[str, set[int]] = defaultdict(set)
    repeats: dict[str, set[int]] = defaultdict(set)
    for run in runs:
        row = run.bug or CORRECT
        repeats[row].add(run.repeat)
        scen = [s for s in _scenarios(run) if s.get("verdict") != "skipped"]
        if not scen:
            cells[row][run.selection.label].runs += 1
            cells[row][run.selection.label].errors += 1
            continue
        strict = _strict(run)
        for s in scen:
            cell = cells[row][str(s.get("id"))]
            if not strict and is_starved(s):
                cell.invalid += 1  # measurement invalid: neither a catch, an alarm nor a pass
                continue
            cell.runs += 1
            verdict = s.get("verdict")
            bad = verdict == "fail" or (run.bug is None and verdict != "pass")
            if verdict == "unknown":
                cell.unknown += 1
            if bad:
                cell.caught += 1
                caught_in[row].add(run.repeat)
                for c in s.get("checks") or []:
                    if c.get("verdict") in ("fail", "unknown"):
                        cell.failed_checks[str(c.get("name"))] += 1
    bugs: dict[str, Any] = {}
    for row in sorted(r for r in cells if r != CORRECT):
        n = len(repeats[row])
        rate = rates.get(row, 1.0)
        need = math.ceil(rate * n - 1e-9)
        k = len(caught_in[row])
        bugs[row] = {"repeats": n, "caught": k, "stated_rate": rate, "required": need, "ok": k >= need,
                     "scenarios": {sid: c.to_dict() for sid, c in sorted(cells[row].items())}}
    correct: dict[str, Any] | None = None
    if CORRECT in cells:
        total = sum(c.runs for c in cells[CORRECT].values())
        alarms = sum(c.caught + c.errors for c in cells[CORRECT].values())
        correct = {"runs": total, "false_alarms": alarms, "invalid": sum(c.invalid for c in cells[CORRECT].values()),
                   "false_alarm_rate": round(alarms / total, 4) if total else None,
                   "scenarios": {sid: c.to_dict() for sid, c in sorted(cells[CORRECT].items())}}
    ok = all(b["ok"] for b in bugs.values()) and (correct is None or correct["false_alarms"] == 0)
    return {"bugs": bugs, "correct_build": correct, "ok": ok}


def render_markdown(matrix: dict[str, Any]) -> str:
    """The matrix as a Markdown table (bug × scenario → caught k/N, failed checks)."""
    lines = ["| bug | scenario | caught | failed checks |", "|---|---|---|---|"]
    for bug, b in matrix["bugs"].items():
        for sid, c in b["scenarios"].items():
            extra = f" ({c['unknown']} unknown)" if c["unknown"] else ""
            extra += f" ({c['errors']} errors)" if c["errors"] else ""
            extra += f" ({c['invalid']} invalid: harness starved)" if c.get("invalid") else ""
            checks = ", ".join(f"{n} {k}/{c['runs']}" for n, k in c["failed_checks"].items()) or "—"
            lines.append(f"| `{bug}` | {sid} | {c['caught']}/{c['runs']}{extra} | {checks} |")
    lines.append("")
    lines.append("| bug | caught in runs | stated rate | verdict |")
    lines.append("|---|---|---|---|")
    for bug, b in matrix["bugs"].items():
        verdict = "ok" if b["ok"] else f"BELOW RATE (needs {b['required']})"
        lines.append(f"| `{bug}` | {b['caught']}/{b['repeats']} | {b['stated_rate']:.0%} | {verdict} |")
    cb = matrix["correct_build"]
    if cb is not None:
        lines.append("")
        invalid = (f"; {cb['invalid']} more invalid (harness starved), not counted"
                   if cb.get("invalid") else "")
        lines.append(f"Correct build: {cb['false_alarms']} false alarms in {cb['runs']} scenario runs "
                     f"(rate {cb['false_alarm_rate']}){invalid}.")
        for sid, c in cb["scenarios"].items():
            if c["caught"] or c["errors"]:
                checks = ", ".join(f"{n} {k}/{c['runs']}" for n, k in c["failed_checks"].items()) or "—"
                lines.append(f"- {sid}: {c['caught'] + c['errors']}/{c['runs']} ({checks})")
    return "\n".join(lines) + "\n"


def run_links(matrix: dict[str, Any], out: Path | None = None) -> list[dict[str, Any]]:
    """``matrix["runs"]`` with each run's report.html (relative to ``out``, the matrix's directory)."""
    runs = []
    for r in matrix.get("runs") or []:
        report = None
        art = Path(str(r.get("artifacts") or ""))
        if r.get("run_id") and art.parts:
            page = art / "runs" / str(r["run_id"]) / "report.html"
            report = str(page.relative_to(out)) if out is not None and page.is_relative_to(out) else str(page)
        runs.append({**r, "report": report})
    return runs


def render_html(matrix: dict[str, Any], out: Path | None = None) -> str:
    """The matrix as an HTML page (``matrix.html``): per bug, bug × scenario, the correct build, and
    each run linked to its own report.html (relative to ``out``, the matrix's directory)."""
    from harness.report.html import template

    return template("bugs.html.j2").render(matrix=matrix, runs=run_links(matrix, out))


def write_outputs(matrix: dict[str, Any], out: Path, started_at: str | None = None) -> dict[str, Any]:
    """matrix.json / .md / .html, and ``out`` as a run directory of its own: run.json carries the matrix
    (``bug_matrix``, each run with its report link) and report.html renders it with the other reports'
    template, so the matrix is read, archived and compared like any run. Returns the run.json dict."""
    from harness.report.finalize import finalize

    matrix = {**matrix, "runs": run_links(matrix, out)}
    (out / "matrix.json").write_text(json.dumps(matrix, indent=2) + "\n", encoding="utf-8")
    (out / "matrix.md").write_text(render_markdown(matrix), encoding="utf-8")
    (out / "matrix.html").write_text(render_html(matrix, out), encoding="utf-8")
    meta: dict[str, Any] = {"command": "bugs", "bug_matrix": matrix}
    if started_at is not None:
        meta["started_at"] = started_at
    return finalize(out, meta)


# ---- the runner ---------------------------------------------------------------------------------------
def _run_once(bug: str | None, sel: Selection, repeat: int, out: Path, extra: list[str], attempt: int = 0) -> Run:
    art = out / "runs" / (bug or "correct") / sel.label.replace("/", "_").replace(" ", "_") / (
        str(repeat) + (f"-again{attempt}" if attempt else ""))
    cmd = [sys.executable, "-m", "harness.cli", "run", sel.file, "-k", sel.k, "-q", "--artifacts", str(art),
           *(["--bug", bug] if bug else []), *extra]
    print(f"== {bug or 'correct build'} × {sel.label} #{repeat + 1}: {' '.join(cmd[2:])}", flush=True)
    t0 = time.monotonic()
    code = run_child(cmd)  # output goes to the terminal: the run's own progress
    wall = round(time.monotonic() - t0, 1)
    found = sorted(art.glob("runs/*/run.json"))
    data = json.loads(found[-1].read_text(encoding="utf-8")) if found else None
    print(f"== {bug or 'correct build'} × {sel.label} #{repeat + 1}: exit {code} in {wall} s", flush=True)
    return Run(bug, sel, repeat, data, code, str(art), wall, attempt)


def _measured(bug: str | None, sel: Selection, repeat: int, out: Path, extra: list[str], retries: int) -> list[Run]:
    """One repeat of one selection, measured again (up to ``retries`` times) while its run is invalid."""
    runs = [_run_once(bug, sel, repeat, out, extra)]
    while invalid_run(runs[-1]) and len(runs) <= retries:
        print(f"== {bug or 'correct build'} × {sel.label} #{repeat + 1}: invalid (harness starved), "
              f"measuring again ({len(runs)} of {retries})", flush=True)
        runs.append(_run_once(bug, sel, repeat, out, extra, attempt=len(runs)))
    return runs


def _in_run_s(data: dict[str, Any] | None) -> float | None:
    """Seconds between the run's started_at and finished_at (run.json): the part of the wall time spent
    inside pytest's session; the rest is process start, collection and the report."""
    try:
        a, b = (datetime.fromisoformat(str((data or {})[k]).replace("Z", "+00:00"))
                for k in ("started_at", "finished_at"))
    except (KeyError, ValueError):
        return None
    return round((b - a).total_seconds(), 1)


def bugs_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="goverse-harness bugs", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=1, help="runs of each selection per bug and for the correct build")
    p.add_argument("--only", action="append", default=[], metavar="BUG",
                   help=f"only this seeded bug (repeatable): {', '.join(CATCHERS)}")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="artifacts directory")
    p.add_argument("--no-correct", action="store_true",
                   help="skip the correct build's runs (CI: its local scenario step already runs every QUICK "
                        "selection on the correct build)")
    p.add_argument("--quick", action="store_true",
                   help="only each bug's one QUICK selection (the cheapest reliable catcher), not all of CATCHERS")
    p.add_argument("--correct-only", action="store_true",
                   help="only the correct build's runs on the bugs' selections: the false-alarm half, e.g. in a "
                        "second process beside a --no-correct one")
    p.add_argument("--invalid-retries", type=int, default=2, metavar="N",
                   help="measure a run again, up to N times, while it is invalid (unknown because the "
                        "harness was starved; default 2)")
    args, extra = p.parse_known_args(argv)
    if args.invalid_retries < 0:
        p.error(f"--invalid-retries: must be 0 or more, got {args.invalid_retries}")
    if args.repeat < 1:
        p.error(f"--repeat: must be a positive number of runs, got {args.repeat}")
    if args.correct_only and args.no_correct:
        p.error("--correct-only and --no-correct: choose one (together they would run nothing)")
    unknown = [b for b in args.only if b not in CATCHERS]
    if unknown:
        p.error(f"--only: unknown seeded bug {unknown[0]!r}; known: {', '.join(CATCHERS)}")
    bugs = args.only or list(CATCHERS)
    now = datetime.now(UTC)
    started_at = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    out = args.artifacts / "bugs" / now.strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    runs: list[Run] = []
    catchers = {b: (QUICK[b],) if args.quick else CATCHERS[b] for b in bugs}
    for i in range(args.repeat):
        for bug in [] if args.correct_only else bugs:
            for sel in catchers[bug]:
                runs += _measured(bug, sel, i, out, extra, args.invalid_retries)
        if not args.no_correct:
            sels = list(dict.fromkeys(s for b in bugs for s in catchers[b]))
            for sel in sels:
                runs += _measured(None, sel, i, out, extra, args.invalid_retries)
    matrix = build_matrix(runs)
    matrix["runs"] = [{"bug": r.bug, "selection": r.selection.label, "repeat": r.repeat, "attempt": r.attempt,
                       "invalid": invalid_run(r), "exit_code": r.exit_code,
                       "artifacts": r.artifacts, "run_id": (r.run_json or {}).get("run_id"), "wall_s": r.wall_s,
                       "in_run_s": _in_run_s(r.run_json)} for r in runs]
    write_outputs(matrix, out, started_at)
    print(render_markdown(matrix))
    print(f"matrix: {out / 'matrix.json'}, {out / 'matrix.md'}, {out / 'matrix.html'}; "
          f"run.json and report.html: {out}")
    return 0 if matrix["ok"] else 1
