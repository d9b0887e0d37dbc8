"""``goverse-harness conformance``: run only the conformance checks and print the table.

Static checks run in this process over the Dockerfile and the rendered overlays; runtime checks run as
pytest over ``scenarios/test_conformance.py`` (every option this command does not know — ``--bug``,
``--platform``, ``--nodes``, ``-x`` … — is passed to pytest). Both write into one run directory; the
table is built from the files there, so a runtime check that produced no result (deselected by a
crash, not by ``--only``) shows as ``unknown`` — Sonobuoy's rule: no result is never a pass. Exit code
0 when every selected check passed or is not applicable, 1 otherwise, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.conformance import catalogue
from harness.conformance.model import Result, Verdict, merge
from harness.conformance.results import load_results, report_rows, write_result
from harness.conformance.table import group, render_table

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "test_conformance.py"
RUN_DIR_ENV = "GVH_RUN_DIR"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="goverse-harness conformance",
        description="Run the seed's requirements as conformance checks and print the table grouped by "
                    "seed section. Options not listed here are passed to pytest (e.g. --bug NAME, -x).")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--static", action="store_true", help="only the static checks (Dockerfile, manifests)")
    kind.add_argument("--runtime", action="store_true", help="only the runtime checks (deploys a stack)")
    p.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="checks whose id contains PATTERN (repeatable), e.g. --only 2.2 --only secrets")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument("--dockerfile", type=Path,
                   help="the system under test's Dockerfile (default: docker/refstack.Dockerfile for the reference "
                        "stack; for --stack goverse the Dockerfile checks are not applicable without it)")
    p.add_argument("--manifests", type=Path, action="append", default=[], metavar="PATH",
                   help="the system under test's Kubernetes manifests: a YAML file or a directory (repeatable); "
                        "default: this repository's overlays for the reference stack, none for --stack goverse")
    p.add_argument("--stack", choices=("reference", "goverse"),
                   help="system under test (also passed to the runtime checks); default: GVH_STACK or reference")
    p.add_argument("--context", type=Path, help="build context of --dockerfile (for .dockerignore)")
    p.add_argument("--overlay", action="append", default=[], metavar="PLATFORM/STACK",
                   help="rendered overlay to check (repeatable; default all six)")
    p.add_argument("--run-dir", type=Path, help="write into this run directory instead of a new one")
    p.add_argument("--artifacts", type=Path, help="artifacts directory for a new run directory (default ./artifacts)")
    p.add_argument("--checkov", nargs="?", const="", metavar="PATH",
                   help="also run checkov (PATH, $GVH_CHECKOV or on PATH; its own venv) and show its findings")
    p.add_argument("--width", type=int, default=120, help="table width")
    return p


def list_checks() -> str:
    rows = [Result(c.id, c.section, c.title, c.kind, Verdict.NOT_APPLICABLE, c.why) for c in catalogue.CHECKS]
    out = []
    for section, items in group(rows):
        out.append(f"§{section}")
        out.extend(f"  {r.id:<34} {r.kind:7s} {r.title}" for r in items)
    return "\n".join(out)


def _run_dir(args: argparse.Namespace) -> Path:
    if args.run_dir:
        args.run_dir.mkdir(parents=True, exist_ok=True)
        return args.run_dir
    from harness.report.store import create_run_dir

    return Path(create_run_dir(args.artifacts or os.environ.get("GVH_ARTIFACTS") or "artifacts"))


def _overlays(values: list[str]) -> list[str] | None:
    from harness.conformance.static import all_overlays

    known = all_overlays()
    bad = [v for v in values if v not in known]
    if bad:
        raise ValueError(f"--overlay {bad[0]!r}: expected one of {', '.join(known)}")
    return values or None


def run_runtime(ids: list[str], run_dir: Path, pytest_args: list[str], select: bool) -> int:
    """pytest over the conformance scenarios; ``-k`` names the selected ids when ``--only`` was used."""
    import pytest

    argv = [str(SCENARIO), "-m", "conformance", "-p", "no:cacheprovider", *pytest_args]
    if select:
        argv += ["-k", " or ".join(ids)]
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return int(pytest.main(argv))


def run_checkov(explicit: str | None, inputs: Any, run_dir: Path) -> str:
    """checkov over the overlays and the Dockerfile just judged; findings also in run_dir/checkov.json."""
    from dataclasses import asdict

    from harness.conformance import checkov

    binary = checkov.find_binary(explicit)
    if binary is None:
        return "checkov: not found (give --checkov PATH or set GVH_CHECKOV; install it in its own venv)"
    findings, error = checkov.run(binary, inputs.overlays, inputs.dockerfile, run_dir / "checkov")
    (run_dir / "checkov.json").write_text(json.dumps({"error": error, "findings": [asdict(f) for f in findings]},
                                                     indent=2) + "\n", encoding="utf-8")
    return checkov.render(findings, error)


def missing_results(wanted: list[str], have: dict[str, Result], why: str) -> list[Result]:
    """An ``unknown`` for every selected check without a result file."""
    return [Result.of(catalogue.get(cid), Verdict.UNKNOWN, why) for cid in wanted if cid not in have]


def merge_into_report(run_dir: Path, results: list[Result]) -> None:
    """run.json["conformance"] and the report's table (existing run.json metadata is kept)."""
    from harness.report.finalize import finalize

    finalize(run_dir, {"conformance": report_rows(results)})


def conformance_main(argv: Sequence[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if args.list:
        print(list_checks())
        return 0
    static = [] if args.runtime else [c.id for c in catalogue.select(args.only, "static")]
    runtime = [] if args.static else [c.id for c in catalogue.select(args.only, "runtime")]
    if not static and not runtime:
        print(f"goverse-harness conformance: no check matches --only {' '.join(args.only)}", file=sys.stderr)
        return 2
    try:
        overlays = _overlays(args.overlay)
    except ValueError as exc:
        print(f"goverse-harness conformance: {exc}", file=sys.stderr)
        return 2
    bad = [str(m) for m in args.manifests if not m.exists()]
    if bad:
        print(f"goverse-harness conformance: --manifests {bad[0]}: no such file or directory", file=sys.stderr)
        return 2
    stack = args.stack or os.environ.get("GVH_STACK") or "reference"
    run_dir = _run_dir(args)
    checkov_text = ""
    if static:
        from harness.conformance.manifests import MANIFEST_CHECKS
        from harness.conformance.static import load_inputs, run_static

        inputs = load_inputs(args.dockerfile, args.context, overlays,
                             render=any(cid in MANIFEST_CHECKS for cid in static), manifests=args.manifests,
                             stack=stack)
        for result in run_static(static, inputs):
            write_result(run_dir, result)
        if args.checkov is not None:
            checkov_text = run_checkov(args.checkov or None, inputs, run_dir)
    code = 0
    if runtime:
        code = run_runtime(runtime, run_dir, (["--stack", args.stack] if args.stack else []) + rest,
                           select=bool(args.only))
        if code == 4:  # pytest usage error: it printed why
            return 2
    elif rest:
        print(f"goverse-harness conformance: unknown options {' '.join(rest)}", file=sys.stderr)
        return 2
    have = {r.id: r for r in load_results(run_dir)}
    why = f"no result: the runtime test did not run or crashed (pytest exit code {code}; see its output)"
    results = sorted([have[c] for c in static + runtime if c in have] + missing_results(runtime, have, why),
                     key=lambda r: r.id)
    for r in results:
        if r.id not in have:
            write_result(run_dir, r)
    try:
        merge_into_report(run_dir, list(load_results(run_dir)))
    except Exception as exc:  # noqa: BLE001 - the table below is still the answer
        print(f"goverse-harness conformance: the report could not be updated: {exc!r}", file=sys.stderr)
    print()
    print(render_table(results, width=args.width))
    if checkov_text:
        print()
        print(checkov_text)
    print(f"run directory: {run_dir}")
    return 0 if merge(r.verdict for r in results) in (Verdict.PASS, Verdict.NOT_APPLICABLE) else 1


def main() -> None:  # pragma: no cover - ``python -m harness.conformance.cli``
    raise SystemExit(conformance_main())


if __name__ == "__main__":  # pragma: no cover
    main()
