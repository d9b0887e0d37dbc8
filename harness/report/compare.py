"""Compare a run with a baseline run: what got worse.

A regression is: a scenario's verdict got worse (pass < skipped < unknown < fail; a pass that became a
skip lost coverage), a baseline scenario missing from the run, an RTO that became ``never``, or an RTO or
headline p99 worse by more than ``margin`` (relative, 0.2 = 20 %) *and* by more than an absolute floor
(so 3 ms → 4 ms is noise, not a regression). Improvements and new scenarios are not regressions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.report.html import template
from harness.report.results import scenario_p99
from harness.report.summary import fmt_rto

_RANK = {"pass": 0, "skipped": 1, "unknown": 2, "fail": 3}


@dataclass(frozen=True)
class Regression:
    scenario: str
    what: str  # verdict | missing | rto_s | p99_ms
    baseline: Any
    current: Any
    message: str


def _worse(cur: float, base: float, margin: float, floor: float) -> bool:
    return cur > base * (1.0 + margin) and cur - base > floor


def compare(run: dict[str, Any], baseline: dict[str, Any], margin: float = 0.2, min_rto_s: float = 0.5,
            min_p99_ms: float = 5.0) -> list[Regression]:
    """Regressions of ``run`` against ``baseline`` (both run.json dicts), in baseline scenario order."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    current = {s["id"]: s for s in run.get("scenarios", [])}
    out: list[Regression] = []
    for b in baseline.get("scenarios", []):
        sid = b["id"]
        c = current.get(sid)
        if c is None:
            out.append(Regression(sid, "missing", b.get("verdict"), None, f"{sid}: in the baseline, not in this run"))
            continue
        bv, cv = str(b.get("verdict")), str(c.get("verdict"))
        if _RANK.get(cv, 3) > _RANK.get(bv, 3):
            why = f" ({c.get('reason')})" if c.get("reason") else ""
            out.append(Regression(sid, "verdict", bv, cv, f"{sid}: verdict {bv} → {cv}{why}"))
        out.extend(_rto_regression(sid, b, c, margin, min_rto_s))
        bp, cp = scenario_p99(b), scenario_p99(c)
        if bp is not None and cp is not None and _worse(cp, bp, margin, min_p99_ms):
            rel = f" (+{(cp - bp) / bp:.0%} > {margin:.0%})" if bp > 0 else ""
            out.append(Regression(sid, "p99_ms", bp, cp, f"{sid}: p99 {bp:.1f} ms → {cp:.1f} ms{rel}"))
    return out


def _rto_regression(sid: str, b: dict[str, Any], c: dict[str, Any], margin: float,
                    floor: float) -> list[Regression]:
    br, cr = b.get("rto_s"), c.get("rto_s")
    if br is None:
        return []
    if cr is None:
        return [Regression(sid, "rto_s", br, None, f"{sid}: RTO {br:.2f} s → {fmt_rto(c)}")]
    if _worse(cr, br, margin, floor):
        rel = f" (+{(cr - br) / br:.0%} > {margin:.0%})" if br > 0 else ""
        return [Regression(sid, "rto_s", br, cr, f"{sid}: RTO {br:.2f} s → {cr:.2f} s{rel}")]
    return []


def render_compare_text(regressions: list[Regression], run: dict[str, Any], baseline: dict[str, Any]) -> str:
    head = f"compare {run.get('run_id')} against baseline {baseline.get('run_id')}: "
    if not regressions:
        return head + "no regressions"
    return head + f"{len(regressions)} regression(s)\n" + "\n".join(f"  - {r.message}" for r in regressions)




def render_compare_html(regressions: list[Regression], run: dict[str, Any], baseline: dict[str, Any],
                        run_href: str | None = None, baseline_href: str | None = None) -> str:
    """The comparison page; ``*_href`` link the two runs' report.html (relative to the page)."""
    return template("compare.html.j2").render(regressions=regressions, run=run, baseline=baseline,
                                              run_href=run_href, baseline_href=baseline_href)
