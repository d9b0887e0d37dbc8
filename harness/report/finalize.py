"""Assemble the run-level files from the scenario results on disk: run.json, junit.xml, report.html.

Called once at the end of a run (by the pytest controller, after every xdist worker finished) and by
``goverse-harness report RUN --rebuild``. It only reads ``*/result.json`` and writes the three run
files, so it is idempotent and can re-render an old run with a newer template.

run.json (schema ``goverse-harness/run/v1``)::

    {"schema", "run_id", "started_at", "finished_at", "platform", "stack", "tool_versions": {...},
     "summary": {"verdict", "total", "pass", "fail", "unknown", "skipped",
                 "starved" (how many of the unknown are "harness starved")},
     "scenarios": [ScenarioResult...], "conformance": [{id, section, title, verdict, evidence}]?,
     "bug_matrix": {...}? (goverse-harness bugs: harness/bugmatrix.py's matrix; ok decides the verdict),
     ...any other meta the caller passes (settings, seed, argv)}
"""

from __future__ import annotations

import json
import platform as _platform
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.report.files import write_json
from harness.report.html import render_report
from harness.report.junit import junit_xml
from harness.report.results import RUN_SCHEMA, is_starved, overall_verdict
from harness.report.store import RunDir

RESERVED = ("schema", "run_id", "summary", "scenarios")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def default_tool_versions() -> dict[str, str]:
    """Provenance every report carries (anchors "What the best do" #18); callers add etcd, postgres…"""
    out = {"python": sys.version.split()[0], "os": _platform.platform()}
    for dist in ("goverse-harness", "matplotlib", "Jinja2", "pytest"):
        try:
            out[dist.lower()] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def build_run_json(run_dir: RunDir, meta: Mapping[str, Any] | None = None,
                   previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run.json dict: ``meta`` wins over ``previous`` (an existing run.json), which wins over defaults."""
    meta = dict(meta or {})
    prev = {k: v for k, v in (previous or {}).items() if k not in RESERVED}
    merged = {**prev, **{k: v for k, v in meta.items() if k not in RESERVED}}
    scenarios = [r.to_dict() for r in run_dir.scenario_results()]
    verdicts = [s["verdict"] for s in scenarios]
    # conformance checks decide the run too: a conformance-only run was "unknown" with 25 decided checks
    conformance = [str(r.get("verdict")) for r in merged.get("conformance") or [] if isinstance(r, dict)]
    # a detection matrix (goverse-harness bugs) decides its run: ok = pass, below rate or false alarms = fail
    bug_matrix = merged.get("bug_matrix")
    matrix_verdict = ([("pass" if bug_matrix.get("ok") else "fail")] if isinstance(bug_matrix, dict) else [])
    run: dict[str, Any] = {
        "schema": RUN_SCHEMA,
        "run_id": run_dir.run_id,
        "started_at": merged.pop("started_at", None) or run_dir.started_at(),
        "finished_at": merged.pop("finished_at", None) or now_iso(),
        "platform": merged.pop("platform", None),
        "stack": merged.pop("stack", None),
        "tool_versions": {**default_tool_versions(), **(merged.pop("tool_versions", None) or {})},
        "summary": {"verdict": overall_verdict(verdicts + conformance + matrix_verdict), "total": len(scenarios),
                    **{v: verdicts.count(v) for v in ("pass", "fail", "unknown", "skipped")},
                    "starved": sum(1 for s in scenarios if is_starved(s))},
    }
    if conformance:
        run["summary"]["conformance"] = {v: conformance.count(v) for v in sorted(set(conformance))}
    run.update(merged)
    run["scenarios"] = scenarios
    return run


def finalize(run_dir: Path | RunDir, meta: Mapping[str, Any] | None = None,
             keep_previous: bool = True) -> dict[str, Any]:
    """Write run.json, junit.xml and report.html for ``run_dir``; returns the run.json dict.

    With ``keep_previous`` the metadata of an existing run.json (platform, stack, conformance…) is kept
    unless ``meta`` overrides it, so re-finalizing never loses provenance."""
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
    previous = rd.load_run_json() if keep_previous else None
    run = build_run_json(rd, with_conformance(rd.path, meta), previous)
    write_json(rd.run_json, run)
    rd.junit_xml.write_text(junit_xml(run), encoding="utf-8")
    rd.report_html.write_text(render_report(run, rd.path), encoding="utf-8")
    return run


# ---- conformance results ------------------------------------------------------------------------------
# Added with the conformance suite (issue #7): harness/conformance writes one file per check into
# <run_dir>/conformance/<id>.json; a run finalized by plain pytest must report them too.
def with_conformance(run_dir: Path, meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """``meta`` plus run.json's ``conformance`` rows read from ``<run_dir>/conformance/`` (kept as given
    when ``meta`` already has them; absent when the run has none)."""
    out = dict(meta or {})
    if "conformance" not in out:
        rows = conformance_rows(run_dir)
        if rows:
            out["conformance"] = rows
    return out


def conformance_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``<run_dir>/conformance/*.json`` as run.json lists them, read as the files' JSON (the
    file is the interface: the report does not import the conformance package, which sits above it).
    Unparseable files and interrupted writes (``.<id>.json.<pid>.tmp``) are skipped."""
    rows = []
    for p in sorted((Path(run_dir) / "conformance").glob("*.json")):
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
            rows.append({"id": str(d["id"]), "section": str(d.get("section") or ""), "title": str(d.get("title", "")),
                         "verdict": str(d.get("verdict", "unknown")), "evidence": str(d.get("evidence", "")),
                         "kind": d.get("kind", "runtime")})
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(rows, key=lambda r: r["id"])


def finalize_run(run_dir: Path | str, **meta: Any) -> str:
    """Assemble run.json, junit.xml and report.html (``meta``: platform, stack, settings, conformance…)
    and return the terminal summary table (for the plugin). Lives here, not in ``store``: the store is
    below the finalizer, and importing upwards made the two modules a cycle."""
    from harness.report.summary import summary_table

    return summary_table(finalize(Path(run_dir), meta))
