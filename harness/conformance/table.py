"""The conformance table for a terminal, grouped by seed section (pure: results in, text out).

Why grouped by section like kube-bench's output: an operator reads the seed section by section
("is §2.2 graceful shutdown done?"), so each group has a header with its merged verdict and counts,
then one line per check with its evidence.
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from collections.abc import Iterable

from harness.conformance.model import Result, Verdict, merge

SECTION_TITLES: dict[str, str] = {
    "1.1": "Production Dockerfiles",
    "1.2": "Image optimization",
    "2.1": "Health and readiness probes",
    "2.2": "Graceful shutdown",
    "2.3": "Configuration management",
    "2.4": "Service discovery",
    "2.5": "Metrics",
    "2.6": "Logging",
    "3.1": "Core manifests",
    "3.2": "Advanced resources",
    "4.1": "Prometheus integration",
    "5.1": "Pod security",
    "5.2": "Network security",
    "5.3": "Secrets management",
    "5.4": "RBAC",
}
LABELS = {Verdict.PASS: "PASS", Verdict.FAIL: "FAIL", Verdict.UNKNOWN: "UNKN", Verdict.NOT_APPLICABLE: "N/A "}


def natural_key(text: str) -> list[int | str]:
    """"2.10" sorts after "2.9"."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def group(results: Iterable[Result]) -> list[tuple[str, list[Result]]]:
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(r.section, []).append(r)
    return [(s, sorted(groups[s], key=lambda r: natural_key(r.id))) for s in sorted(groups, key=natural_key)]


def summary_line(results: Iterable[Result]) -> str:
    items = list(results)
    counts = Counter(str(r.verdict) for r in items)
    parts = [f"{counts.get(str(v), 0)} {v}" for v in Verdict]
    return f"conformance: {merge(r.verdict for r in items).upper()} — {len(items)} checks: " + ", ".join(parts)


def render_table(results: Iterable[Result], width: int = 120, evidence_lines: int = 3) -> str:
    """The whole table: a header per seed section, a line per check, evidence wrapped below it (one
    line for a pass, up to ``evidence_lines`` otherwise: what failed is what needs reading)."""
    items = list(results)
    if not items:
        return "conformance: no checks ran"
    id_w = max(len(r.id) for r in items)
    out: list[str] = []
    for section, rows in group(items):
        counts = Counter(str(r.verdict) for r in rows)
        tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        title = SECTION_TITLES.get(section, "")
        out.append(f"§{section} {title} — {merge(r.verdict for r in rows).upper()} ({tally})".replace("  ", " "))
        for r in rows:
            out.append(f"  [{LABELS[r.verdict]}] {r.id:<{id_w}}  {r.kind:7s} {r.title}")
            wrapped = textwrap.wrap(r.evidence or "(no evidence)", width=max(40, width - 10))
            shown = wrapped[:1 if r.verdict is Verdict.PASS else max(1, evidence_lines)]
            if len(wrapped) > len(shown):
                shown[-1] += " …"
            out.extend(f"          {line}" for line in shown)
        out.append("")
    out.append(summary_line(items))
    return "\n".join(out)
