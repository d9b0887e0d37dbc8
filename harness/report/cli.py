"""``goverse-harness report RUN [--compare BASELINE]``: show a stored run, rebuild it, compare it.

RUN / BASELINE may be a run directory, its run.json, a run id under ``<artifacts>/runs`` or ``latest``.
Exit codes: 0 — every scenario passed or was skipped (with ``--compare``: no regression); 1 — some
scenario failed or is unknown, or the run has no scenario at all (with ``--compare``: a regression);
2 — the run could not be found or read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.report.compare import compare, render_compare_html, render_compare_text
from harness.report.finalize import finalize
from harness.report.store import RunDir, RunStore
from harness.report.summary import summary_table


class RunNotFound(Exception):
    """The RUN argument names nothing readable; the message says what was tried."""


def resolve_run(arg: str, artifacts: Path) -> RunDir:
    p = Path(arg)
    if p.is_file() and p.name == "run.json":
        return RunDir(p.parent.resolve())
    if p.is_dir():
        return RunDir(p.resolve())
    store = RunStore(artifacts)
    if arg == "latest":
        latest = store.latest()
        if latest is None:
            raise RunNotFound(f"no {artifacts}/latest: no run has been recorded there yet")
        return latest
    candidate = store.runs / arg
    if candidate.is_dir():
        return RunDir(candidate.resolve())
    raise RunNotFound(f"{arg!r} is not a run directory, a run.json, 'latest' or a run id under {store.runs}")


def load_run(run: RunDir, rebuild: bool = False) -> dict[str, Any]:
    """run.json, assembling it first from the scenario results if it is missing (or ``rebuild``)."""
    if rebuild or not run.run_json.exists():
        if not run.scenario_results() and not run.run_json.exists():
            raise RunNotFound(f"{run.path} has neither run.json nor any */result.json")
        return finalize(run)
    try:
        return json.loads(run.run_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunNotFound(f"{run.run_json} is not valid JSON: {exc}") from exc


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="goverse-harness report", description=__doc__.split("\n")[0])
    p.add_argument("run", nargs="?", default="latest", help="run dir, run.json, run id or 'latest' (default)")
    p.add_argument("--compare", metavar="BASELINE", help="baseline run to compare against")
    p.add_argument("--margin", type=float, default=0.2,
                   help="relative worsening of RTO/p99 that counts as a regression (default 0.2 = 20%%)")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="artifacts root (default ./artifacts)")
    p.add_argument("--rebuild", action="store_true", help="re-assemble run.json, junit.xml, report.html")
    p.add_argument("--html", type=Path, help="where to write the comparison page (default <run>/compare.html)")
    return p


def report_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run_dir = resolve_run(args.run, args.artifacts)
        run = load_run(run_dir, rebuild=args.rebuild)
        baseline = load_run(resolve_run(args.compare, args.artifacts)) if args.compare else None
    except RunNotFound as exc:
        print(f"goverse-harness report: {exc}", file=sys.stderr)
        return 2
    print(summary_table(run))
    print(f"report: {run_dir.report_html}")
    if baseline is None:
        verdicts = {s.get("verdict") for s in run.get("scenarios", [])}
        return 1 if verdicts & {"fail", "unknown"} or not run.get("scenarios") else 0
    regressions = compare(run, baseline, margin=args.margin)
    print(render_compare_text(regressions, run, baseline))
    html_path = args.html or run_dir.path / "compare.html"
    html_path.write_text(render_compare_html(regressions, run, baseline), encoding="utf-8")
    print(f"comparison: {html_path}")
    return 1 if regressions else 0


if __name__ == "__main__":
    raise SystemExit(report_main())
