"""A run as GitHub-flavoured Markdown for a CI job summary: scenario | verdict | RTO | p99.

Why a pure function over the run.json dict (and not over the run directory): CI writes the summary
from whatever run.json the job produced — possibly from another machine, an older schema or a run that
died half-way — so the only input is the document itself, and every field may be missing. The numbers
are formatted by the same helpers as the terminal table and report.html (``fmt_rto``, ``fmt_ms``,
``scenario_p99``), so the three views never disagree.

Why the escaping: scenario ids, reasons and conformance evidence quote keys, errors and log lines
verbatim. A ``|`` would split a table cell, a newline would end the table and raw ``<``/``>`` would be
rendered as HTML by GitHub; all three are neutralised in every cell.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from harness.report.results import RUN_SCHEMA, SCENARIO_VERDICTS, overall_verdict, scenario_p99
from harness.report.summary import fmt_ms, fmt_rto

VERDICT_MARKS = {"pass": "✅ pass", "fail": "❌ fail", "unknown": "❓ unknown", "skipped": "⏭️ skipped"}
# GitHub rejects a step summary over 1 MiB; reasons are the only unbounded text, so they are cut.
MAX_REASON_CHARS = 600
MAX_DETAILS = 40


def cell(value: Any, limit: int | None = None) -> str:
    """One table cell: single line, pipes escaped, HTML escaped, optionally shortened."""
    text = " ".join(str(value if value is not None else "").split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return html.escape(text, quote=False).replace("|", "\\|")


def verdict_mark(verdict: Any) -> str:
    v = str(verdict or "unknown").lower()
    return VERDICT_MARKS.get(v, cell(v))


def _counts(verdicts: list[str], names: tuple[str, ...] = SCENARIO_VERDICTS) -> str:
    c = Counter(verdicts)
    parts = [f"{c[v]} {v}" for v in names if c[v]]
    parts += [f"{n} {cell(v)}" for v, n in sorted(c.items()) if v not in names]
    return ", ".join(parts) or "none"


def _header(run: Mapping[str, Any], title: str) -> list[str]:
    scenarios = list(run.get("scenarios") or [])
    verdicts = [str(s.get("verdict")) for s in scenarios]
    summary = run.get("summary") or {}
    overall = str(summary.get("verdict") or overall_verdict(verdicts))
    lines = [f"## {cell(title)}: {verdict_mark(overall).upper()}", ""]
    facts = [("run", run.get("run_id")), ("platform", run.get("platform")), ("stack", run.get("stack")),
             ("started", run.get("started_at")), ("finished", run.get("finished_at"))]
    shown = [f"{k} `{cell(v)}`" for k, v in facts if v]
    if shown:
        lines += [" · ".join(shown), ""]
    lines += [f"**{len(scenarios)} scenarios:** {_counts(verdicts)}", ""]
    schema = run.get("schema")
    if schema != RUN_SCHEMA:
        lines += [f"> ⚠️ run.json schema is `{cell(schema)}`, this summary expects `{RUN_SCHEMA}`; "
                  "fields it does not know are left out.", ""]
    return lines


def scenario_table(run: Mapping[str, Any]) -> list[str]:
    """The table rows (Markdown lines), one per scenario in run.json order."""
    lines = ["| scenario | verdict | RTO | p99 |", "|---|---|---:|---:|"]
    for s in run.get("scenarios") or []:
        lines.append(f"| {cell(s.get('id'))} | {verdict_mark(s.get('verdict'))} | {cell(fmt_rto(s))} | "
                     f"{cell(fmt_ms(scenario_p99(s)))} |")
    return lines


def _reasons(run: Mapping[str, Any]) -> list[str]:
    bad = [s for s in run.get("scenarios") or []
           if s.get("verdict") in ("fail", "unknown", "skipped") and s.get("reason")]
    if not bad:
        return []
    lines = ["", "<details><summary>Why scenarios did not pass</summary>", ""]
    for s in bad[:MAX_DETAILS]:
        lines.append(f"- **{cell(s.get('id'))}** ({cell(s.get('verdict'))}): "
                     f"{cell(s.get('reason'), MAX_REASON_CHARS)}")
    if len(bad) > MAX_DETAILS:
        lines.append(f"- … and {len(bad) - MAX_DETAILS} more (see report.html)")
    lines += ["", "</details>"]
    return lines


def _natural(section: str) -> list[Any]:
    """Sort "2.10" after "2.9" (digit runs compare as numbers), like report.html does."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", section)]


def conformance_table(rows: list[Mapping[str, Any]]) -> list[str]:
    """Conformance (seed requirement checks): counts per seed section, then the rows that did not pass."""
    if not rows:
        return []
    by_section: dict[str, list[str]] = {}
    for r in rows:
        by_section.setdefault(str(r.get("section") or "other"), []).append(str(r.get("verdict")))

    verdicts = [str(r.get("verdict")) for r in rows]
    lines = ["", f"### Conformance: {_counts(verdicts)}", "", "| seed section | checks | result |",
             "|---|---:|---|"]
    for section in sorted(by_section, key=_natural):
        vs = by_section[section]
        lines.append(f"| {cell(section)} | {len(vs)} | {verdict_mark(overall_verdict(vs))} ({_counts(vs)}) |")
    failing = [r for r in rows if str(r.get("verdict")) in ("fail", "unknown")]
    if failing:
        lines += ["", "| check | verdict | evidence |", "|---|---|---|"]
        for r in failing[:MAX_DETAILS]:
            name = f"{r.get('id')} {r.get('title') or ''}".strip()
            lines.append(f"| {cell(name)} | {verdict_mark(r.get('verdict'))} | "
                         f"{cell(r.get('evidence'), MAX_REASON_CHARS)} |")
    return lines


def job_summary(run: Mapping[str, Any], title: str = "goverse-harness") -> str:
    """The whole summary as Markdown (ends with a newline, ready to append to $GITHUB_STEP_SUMMARY)."""
    lines = _header(run, title)
    if run.get("scenarios"):
        lines += scenario_table(run)
        lines += _reasons(run)
    else:
        lines.append("_No scenario result in this run._")
    lines += conformance_table(list(run.get("conformance") or []))
    return "\n".join(lines) + "\n"


def missing_run_summary(path: str, why: str, title: str = "goverse-harness") -> str:
    """What the summary says when there is no readable run.json (the run died before finalizing)."""
    return (f"## {cell(title)}: no run.json\n\n`{cell(path)}`: {cell(why)}.\n\n"
            "The run ended before the report was written; see the job log and the uploaded artifacts.\n")
