"""report.html: one self-contained page per run (summary, conformance table, scenarios with plots).

Why self-contained (PNG plots inlined as base64 ``data:`` URIs, CSS inline): the report is attached to
CI runs and mailed around; a page whose images break when moved away from its run directory is not a
report. Templates live in ``harness/report/templates/`` and are rendered with autoescaping on, since
details quote keys, errors and log lines verbatim.
"""

from __future__ import annotations

import base64
import functools
import re
from collections import Counter
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, Environment, FileSystemLoader, Template

from harness.report.results import overall_verdict, scenario_p99
from harness.report.summary import fmt_ms, fmt_rto

TEMPLATES = Path(__file__).resolve().parent / "templates"


def fmt_s(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f} s"


def human(v: Any) -> str:
    """A value as a person reads it: ``—`` for None, yes/no, floats rounded, mappings as ``k: v`` (never a
    Python repr such as ``None`` or ``{'window_s': 1.0}`` or ``0.6190476190476191``)."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1 else f"{v:,.2f}".rstrip("0").rstrip(".")
    if isinstance(v, dict):
        return ", ".join(f"{k}: {human(x)}" for k, x in v.items()) or "—"
    if isinstance(v, list | tuple | set):
        return ", ".join(human(x) for x in v) or "—"
    return str(v)


def with_unit(v: Any, what: str) -> str:
    """A compared value with its unit (``7.00 s``, ``12.4 ms``), ``—`` when absent."""
    if v is None:
        return "—"
    if what == "rto_s" and isinstance(v, int | float):
        return f"{v:.2f} s"
    if what == "p99_ms" and isinstance(v, int | float):
        return f"{v:.1f} ms"
    return human(v)


def seeded_bugs(run: dict[str, Any]) -> list[str]:
    """The reference stack's seeded bugs this run deployed (settings.bugs), for the report and junit."""
    bugs = (run.get("settings") or {}).get("bugs") or []
    return [str(b) for b in bugs] if isinstance(bugs, list | tuple) else [str(bugs)]


@functools.cache
def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=ChainableUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(rto=fmt_rto, ms=fmt_ms, secs=fmt_s, p99=scenario_p99, human=human, unit=with_unit)
    return env


def template(name: str) -> Template:
    return _env().get_template(name)


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _natural(section: str) -> list[Any]:
    """Sort "2.10" after "2.9": digit runs compare as numbers."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", section)]


def conformance_groups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows grouped by seed section (``section`` field) in natural order, each with verdict counts."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r.get("section") or "other"), []).append(r)
    out = []
    for section in sorted(groups, key=_natural):
        items = sorted(groups[section], key=lambda r: _natural(str(r.get("id", ""))))
        counts = Counter(str(r.get("verdict")) for r in items)
        out.append({"section": section, "rows": items, "counts": dict(counts),
                    "verdict": overall_verdict([str(r.get("verdict")) for r in items])})
    return out


def _plots(run_dir: Path, s: dict[str, Any]) -> list[dict[str, str]]:
    """The scenario's standard plots, then any PNGs it listed in ``extra["extra_plots"]`` (a generic
    hook: e.g. the load scenarios' throughput and latency-percentile plots)."""
    out = []
    names = list(s.get("plots") or [])
    names += [n for n in (s.get("extra") or {}).get("extra_plots") or [] if n not in names]
    for name in names:
        p = run_dir / str(s.get("dir") or "") / name
        if p.is_file():
            out.append({"name": name, "src": png_data_uri(p)})
        else:
            out.append({"name": name, "src": "", "missing": str(p)})
    return out


def render_report(run: dict[str, Any], run_dir: Path) -> str:
    scenarios = [{**s, "images": _plots(Path(run_dir), s), "anchor": "s-" + re.sub(r"\W+", "-", s["id"])}
                 for s in run.get("scenarios", [])]
    conformance = run.get("conformance")
    return template("report.html.j2").render(
        run=run,
        scenarios=scenarios,
        verdict=overall_verdict([str(s.get("verdict")) for s in scenarios]),
        conformance=conformance_groups(conformance) if conformance else None,
        bugs=seeded_bugs(run),
        bug_matrix=run.get("bug_matrix"),
    )
