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


@dataclass(frozen=True)
class Side:
    """One scenario as one run saw it: verdict, RTO (``rto`` is the display: ``never`` when it never
    recovered, ``—`` without a fault) and the headline p99."""

    verdict: str
    rto_s: float | None
    rto: str
    p99_ms: float | None


@dataclass(frozen=True)
class SideBySide:
    scenario: str
    baseline: Side | None  # None: the scenario is not in that run
    current: Side | None

    @property
    def rto_delta_s(self) -> float | None:
        b, c = self.baseline, self.current
        return None if b is None or c is None or b.rto_s is None or c.rto_s is None else c.rto_s - b.rto_s

    @property
    def p99_delta_ms(self) -> float | None:
        b, c = self.baseline, self.current
        return None if b is None or c is None or b.p99_ms is None or c.p99_ms is None else c.p99_ms - b.p99_ms


def _side(s: dict[str, Any] | None) -> Side | None:
    if s is None:
        return None
    return Side(str(s.get("verdict")), s.get("rto_s"), fmt_rto(s), scenario_p99(s))


def side_by_side(run: dict[str, Any], baseline: dict[str, Any]) -> list[SideBySide]:
    """RTO and p99 of the same scenario ids in both runs (e.g. a local and a Kubernetes run), baseline
    order first, then the scenarios only the run has. Pure: two run.json dicts in, rows out."""
    current = {s["id"]: s for s in run.get("scenarios", [])}
    base = {s["id"]: s for s in baseline.get("scenarios", [])}
    ids = list(base) + [i for i in current if i not in base]
    return [SideBySide(i, _side(base.get(i)), _side(current.get(i))) for i in ids]


def run_label(run: dict[str, Any]) -> str:
    """``kubernetes 20261203T…`` — the platform first, since comparing platforms is the common case."""
    return f"{run.get('platform') or '?'} {run.get('run_id') or '?'}"


def _signed(v: float | None, unit: str, digits: int) -> str:
    return "—" if v is None else f"{v:+.{digits}f} {unit}"


def render_side_by_side_text(rows: list[SideBySide], run: dict[str, Any], baseline: dict[str, Any]) -> str:
    """A fixed-width table: per scenario, verdict / RTO / p99 of the baseline, of the run, and the deltas."""
    def cells(side: Side | None) -> list[str]:
        if side is None:
            return ["(absent)", "", ""]
        return [side.verdict, side.rto, "—" if side.p99_ms is None else f"{side.p99_ms:.1f} ms"]

    head = ["scenario", "verdict", "RTO", "p99", "verdict", "RTO", "p99", "ΔRTO", "Δp99"]
    body = [[r.scenario, *cells(r.baseline), *cells(r.current), _signed(r.rto_delta_s, "s", 2),
             _signed(r.p99_delta_ms, "ms", 1)] for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    line = lambda xs: "  ".join(x.ljust(w) for x, w in zip(xs, widths, strict=True)).rstrip()  # noqa: E731
    base_label = f"baseline: {run_label(baseline)}"
    mid = sum(widths[1:4]) + 6  # three columns, two separators inside, one after
    if len(base_label) + 2 > mid:  # widen the baseline's last column so both labels sit over their columns
        widths[3] += len(base_label) + 2 - mid
        mid = len(base_label) + 2
    title = (" " * (widths[0] + 2) + base_label.ljust(mid) + f"run: {run_label(run)}").rstrip()
    return "\n".join([title, line(head), *(line(b) for b in body)])


def render_compare_text(regressions: list[Regression], run: dict[str, Any], baseline: dict[str, Any]) -> str:
    head = f"compare {run.get('run_id')} against baseline {baseline.get('run_id')}: "
    if not regressions:
        return head + "no regressions"
    return head + f"{len(regressions)} regression(s)\n" + "\n".join(f"  - {r.message}" for r in regressions)




def render_compare_html(regressions: list[Regression], run: dict[str, Any], baseline: dict[str, Any],
                        run_href: str | None = None, baseline_href: str | None = None) -> str:
    """The comparison page; ``*_href`` link the two runs' report.html (relative to the page)."""
    return template("compare.html.j2").render(regressions=regressions, run=run, baseline=baseline,
                                              run_href=run_href, baseline_href=baseline_href,
                                              rows=side_by_side(run, baseline), run_label=run_label)
