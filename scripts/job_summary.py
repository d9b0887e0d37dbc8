#!/usr/bin/env python3
"""Write a run's summary (scenario | verdict | RTO | p99, plus conformance) as Markdown for a CI job.

Usage: scripts/job_summary.py [RUN_JSON_OR_RUN_DIR] [--title TITLE] [--output FILE]

Default input is ``artifacts/latest/run.json``. The Markdown is appended to ``--output``, else to
``$GITHUB_STEP_SUMMARY`` when GitHub Actions sets it, else printed to stdout.

Why a script beside the harness rather than a CLI subcommand: workflows run it in an ``if: always()``
step, also after a run that crashed or never got as far as installing the package's entry point, so it
needs nothing but the checkout (it puts the repository root on ``sys.path`` itself). All formatting
lives in :mod:`harness.report.job_summary`, which the tests exercise. Exit codes: 0 — summary written
(also when there is no run.json: the summary says so, the failing step already failed the job);
2 — run.json exists but is not a readable JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.report.job_summary import job_summary, missing_run_summary  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/job_summary.py", description=__doc__.split("\n")[0])
    p.add_argument("run", nargs="?", default="artifacts/latest/run.json",
                   help="run.json or run directory (default artifacts/latest/run.json)")
    p.add_argument("--title", default="goverse-harness", help="heading of the summary (e.g. the matrix entry)")
    p.add_argument("--output", type=Path,
                   help="file to append to (default $GITHUB_STEP_SUMMARY, else stdout)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = Path(args.run)
    if path.is_dir():
        path = path / "run.json"
    code = 0
    if not path.is_file():
        text = missing_run_summary(str(path), "not found", args.title)
    else:
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(run, dict):
                raise ValueError("top level is not a JSON object")
            text = job_summary(run, args.title)
        except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
            text = missing_run_summary(str(path), f"unreadable ({exc})", args.title)
            code = 2
    target = args.output or (Path(os.environ["GITHUB_STEP_SUMMARY"]) if os.environ.get("GITHUB_STEP_SUMMARY")
                             else None)
    if target is None:
        sys.stdout.write(text)
    else:
        with target.open("a", encoding="utf-8") as fh:
            fh.write(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
