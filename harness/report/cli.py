"""``goverse-harness report RUN [--compare BASELINE]``: show a stored run, rebuild it, compare it.

RUN / BASELINE may be a run directory, its run.json, a run id under ``<artifacts>/runs`` or ``latest``.
Exit codes: 0 — every scenario passed or was skipped (with ``--compare``: no regression); 1 — some
scenario failed or is unknown, or the run has no scenario at all (with ``--compare``: a regression);
2 — the run could not be found or read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from harness.report.compare import (
    compare,
    render_compare_html,
    render_compare_text,
    render_side_by_side_text,
    side_by_side,
)
from harness.report.finalize import finalize
from harness.report.results import RUN_SCHEMA, SCENARIO_VERDICTS
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


def check_run(run: Any, where: Path) -> dict[str, Any]:
    """A run.json this version can read, or RunNotFound saying what is wrong with it (never a traceback
    from deep inside the renderers)."""
    if not isinstance(run, dict):
        raise RunNotFound(f"{where} must hold a JSON object, not {type(run).__name__}")
    if run.get("schema") != RUN_SCHEMA:
        raise RunNotFound(f"{where}: schema is {run.get('schema')!r}; this version reads {RUN_SCHEMA!r}")
    scenarios = run.get("scenarios")
    if not isinstance(scenarios, list) or not all(isinstance(x, dict) for x in scenarios):
        raise RunNotFound(f"{where}: 'scenarios' must be a list of objects")
    for sc in scenarios:
        if sc.get("verdict") not in SCENARIO_VERDICTS:
            raise RunNotFound(f"{where}: scenario {sc.get('id')!r} has verdict {sc.get('verdict')!r}; "
                              f"allowed: {', '.join(SCENARIO_VERDICTS)}")
    return run


def load_run(run: RunDir, rebuild: bool = False) -> dict[str, Any]:
    """run.json, assembling it first from the scenario results if it is missing (or ``rebuild``)."""
    if rebuild or not run.run_json.exists():
        _set_aside_if_corrupt(run.run_json)
        try:
            if not run.scenario_results() and not run.run_json.exists():
                raise RunNotFound(f"{run.path} has neither run.json nor any */result.json")
            return check_run(finalize(run), run.run_json)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # json.JSONDecodeError is a ValueError: a corrupt run.json or result.json
            raise RunNotFound(f"cannot rebuild {run.path}: {type(exc).__name__}: {exc}") from None
    try:
        return check_run(json.loads(run.run_json.read_text(encoding="utf-8")), run.run_json)
    except json.JSONDecodeError as exc:
        raise RunNotFound(f"{run.run_json} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise RunNotFound(f"cannot read {run.run_json}: {exc}") from None


def _set_aside_if_corrupt(path: Path) -> None:
    """A corrupt run.json would stop its own rebuild (finalize keeps its metadata): rename it to
    run.json.corrupt and rebuild from the scenario results."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (ValueError, OSError):
        aside = path.with_name(path.name + ".corrupt")
        path.replace(aside)
        print(f"goverse-harness report: {path} is not valid JSON; kept as {aside.name}, rebuilding", file=sys.stderr)


def _margin(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (a relative worsening, 0.2 = 20%), got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="goverse-harness report", description=__doc__.split("\n")[0])
    p.add_argument("run", nargs="?", default="latest", help="run dir, run.json, run id or 'latest' (default)")
    p.add_argument("--compare", metavar="BASELINE", help="baseline run to compare against")
    p.add_argument("--margin", type=_margin, default=0.2,
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
    try:
        return _show(args, run_dir, run, baseline)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        print(f"goverse-harness report: cannot render {run_dir.path}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def _show(args: argparse.Namespace, run_dir: RunDir, run: dict[str, Any], baseline: dict[str, Any] | None) -> int:
    print(summary_table(run))
    print(f"report: {run_dir.report_html}")
    if baseline is None:
        verdicts = {s.get("verdict") for s in run.get("scenarios", [])}
        return 1 if verdicts & {"fail", "unknown"} or not run.get("scenarios") else 0
    regressions = compare(run, baseline, margin=args.margin)
    print(render_side_by_side_text(side_by_side(run, baseline), run, baseline))
    print(render_compare_text(regressions, run, baseline))
    html_path = args.html or run_dir.path / "compare.html"
    base_dir = resolve_run(args.compare, args.artifacts)
    hrefs = [os.path.relpath(d.report_html, html_path.resolve().parent) for d in (run_dir, base_dir)]
    html_path.write_text(render_compare_html(regressions, run, baseline, *hrefs), encoding="utf-8")
    print(f"comparison: {html_path}")
    return 1 if regressions else 0


if __name__ == "__main__":
    raise SystemExit(report_main())
