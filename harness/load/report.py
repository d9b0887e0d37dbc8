"""``goverse-harness load-report RUN [--compare BASELINE]``: a standalone HTML load report for a release,
flagging regressions against a baseline run.

Why a report of its own (not just report.html): a release wants one page to attach — throughput and
latency per phase, the knee, the plots, provenance — and a yes/no on "did this release get slower?".
Everything comes from run.json (``extra.load`` of each load scenario, written by
:meth:`harness.load.driver.LoadDriver.report`) and the scenario PNGs, inlined so the page survives being
mailed around.

A **regression** (current vs baseline, matched by scenario id and phase name):

- a load scenario of the baseline is missing, or its verdict got worse;
- p99 worse by more than ``margin`` (relative) *and* ``min_p99_ms`` (absolute) in a phase the baseline
  served (achieved ≥ 0.9 × offered) — past the knee latency is queueing, throughput is what counts there;
- achieved rate lower by more than ``margin`` and ``min_rps`` in a phase offered the same rate;
- error rate higher by more than ``max(error_floor, margin × baseline error rate)`` (absolute);
- maximum throughput (best ok req/s of a step load) or the knee lower by more than ``margin``.

Noise note: short CI phases last seconds, so p99 moves a lot between clean runs on a busy machine;
compare release-profile runs (``GVH_LOAD_PROFILE=release``) for decisions, docs/load-testing.md.

Exit codes: 0 — load scenarios found, all passed (with ``--compare``: no regression); 1 — a load scenario
failed (with ``--compare``: a regression); 2 — the run could not be read or has no load scenario.
"""

from __future__ import annotations

import argparse
import base64
import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, Template

from harness.load.driver import describe_injection
from harness.report.html import TEMPLATES

SERVED_RATIO = 0.9
_RANK = {"pass": 0, "skipped": 1, "unknown": 2, "fail": 3}


@dataclass(frozen=True)
class LoadRegression:
    scenario: str
    phase: str | None
    what: str  # missing | verdict | p99_ms | achieved_rps | error_rate | max_throughput_rps | knee_rps
    baseline: Any
    current: Any
    message: str


@dataclass(frozen=True)
class CompareParams:
    """``margin`` applies to throughput, knee and (unless ``p99_margin`` is given) p99; latency is the
    noisier measure on a shared machine, so it can get a wider margin of its own."""

    margin: float = 0.2
    min_p99_ms: float = 10.0
    min_rps: float = 5.0
    error_floor: float = 0.01
    p99_margin: float | None = None

    def __post_init__(self) -> None:
        values = (self.margin, self.min_p99_ms, self.min_rps, self.error_floor, self.p99_margin or 0.0)
        if min(values) < 0:
            raise ValueError("compare parameters must be >= 0")
        if self.margin >= 1:
            raise ValueError("--margin is a relative loss of throughput: it must be < 1 (use --p99-margin "
                             "for a wide latency margin)")

    @property
    def p99m(self) -> float:
        return self.margin if self.p99_margin is None else self.p99_margin


def load_scenarios(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The scenarios of a run.json that carry load measurements (``extra.load``)."""
    return [s for s in run.get("scenarios", []) if isinstance((s.get("extra") or {}).get("load"), dict)]


def _phases(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in s["extra"]["load"].get("phases", [])}


def _served(p: dict[str, Any]) -> bool:
    off = p.get("offered_rps")
    return bool(off) and (p.get("achieved_rps") or 0.0) >= SERVED_RATIO * float(off or 0.0)


def _rel(cur: float, base: float) -> str:
    return f"{(cur - base) / base:+.0%}" if base else "n/a"


def compare_load(run: dict[str, Any], baseline: dict[str, Any],
                 params: CompareParams | None = None) -> list[LoadRegression]:
    """Regressions of ``run``'s load scenarios against ``baseline``'s (both run.json dicts)."""
    cp = params or CompareParams()
    cur_by = {s["id"]: s for s in load_scenarios(run)}
    out: list[LoadRegression] = []
    for b in load_scenarios(baseline):
        sid = b["id"]
        c = cur_by.get(sid)
        if c is None:
            out.append(LoadRegression(sid, None, "missing", b.get("verdict"), None,
                                      f"{sid}: load scenario in the baseline, not in this run"))
            continue
        bv, cv = str(b.get("verdict")), str(c.get("verdict"))
        if _RANK.get(cv, 3) > _RANK.get(bv, 3):
            out.append(LoadRegression(sid, None, "verdict", bv, cv, f"{sid}: verdict {bv} → {cv}"
                                      + (f" ({c.get('reason')})" if c.get("reason") else "")))
        cph = _phases(c)
        for name, bp in _phases(b).items():
            cpp = cph.get(name)
            if cpp is None:
                continue
            out.extend(_phase_regressions(sid, name, bp, cpp, cp))
        out.extend(_capacity_regressions(sid, b["extra"]["load"], c["extra"]["load"], cp))
    return out


def _phase_regressions(sid: str, name: str, b: dict[str, Any], c: dict[str, Any],
                       cp: CompareParams) -> list[LoadRegression]:
    out = []
    bp99, cp99 = b.get("p99"), c.get("p99")
    if (_served(b) and bp99 is not None and cp99 is not None and cp99 > bp99 * (1 + cp.p99m)
            and cp99 - bp99 > cp.min_p99_ms):
        out.append(LoadRegression(sid, name, "p99_ms", bp99, cp99, f"{sid} / {name}: p99 {bp99:.1f} ms → "
                                  f"{cp99:.1f} ms ({_rel(cp99, bp99)}, margin {cp.p99m:.0%})"))
    bo, co = b.get("offered_rps"), c.get("offered_rps")
    ba, ca = b.get("achieved_rps") or 0.0, c.get("achieved_rps") or 0.0
    same_offer = bo is not None and co is not None and abs(bo - co) <= max(1e-6, 0.01 * bo)
    if same_offer and ca < ba * (1 - cp.margin) and ba - ca > cp.min_rps:
        out.append(LoadRegression(sid, name, "achieved_rps", ba, ca, f"{sid} / {name}: achieved {ba:.1f} → "
                                  f"{ca:.1f} req/s at {co:.0f} offered ({_rel(ca, ba)})"))
    be, ce = b.get("error_rate"), c.get("error_rate")
    if be is not None and ce is not None and ce - be > max(cp.error_floor, cp.margin * be):
        out.append(LoadRegression(sid, name, "error_rate", be, ce, f"{sid} / {name}: error rate {be:.2%} → "
                                  f"{ce:.2%}"))
    return out


def _capacity_regressions(sid: str, b: dict[str, Any], c: dict[str, Any],
                          cp: CompareParams) -> list[LoadRegression]:
    out: list[LoadRegression] = []
    bk, ck = b.get("knee"), c.get("knee")
    if bk is None or ck is None:  # capacity is only defined for step loads
        return out
    bm, cm = b.get("max_throughput_rps"), c.get("max_throughput_rps")
    if bm is not None and cm is not None and cm < bm * (1 - cp.margin) and bm - cm > cp.min_rps:
        out.append(LoadRegression(sid, None, "max_throughput_rps", bm, cm, f"{sid}: max throughput {bm:.0f} → "
                                  f"{cm:.0f} req/s ok ({_rel(cm, bm)}, margin {cp.margin:.0%})"))
    b_knee = bk.get("offered_rps") if bk.get("found") else None
    c_knee = ck.get("offered_rps") if ck.get("found") else None
    if c_knee is not None and (b_knee is None or c_knee < b_knee * (1 - cp.margin)):
        was = f"{b_knee:.0f}" if b_knee is not None else f"none up to {bk.get('last_good_rps') or 0:.0f}"
        out.append(LoadRegression(sid, None, "knee_rps", b_knee, c_knee, f"{sid}: knee {was} → {c_knee:.0f} "
                                  f"req/s offered ({ck.get('reason')})"))
    return out


# ---- HTML ---------------------------------------------------------------------------------------------
LOAD_TEMPLATE = "load_report.html.j2"  # in harness/report/templates/, beside the run report's


@functools.cache
def _template() -> Template:
    """The load report's template, rendered with Jinja's default whitespace (autoescape on: details quote
    errors verbatim)."""
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True).get_template(LOAD_TEMPLATE)


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:,.1f}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.2%}"


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f} ms"


def _knee(k: dict[str, Any] | None) -> str:
    if not k:
        return "—"
    if k.get("found"):
        return f"{k['offered_rps']:.0f} req/s"
    return f"> {k.get('last_good_rps') or 0:.0f} req/s"


def _images(run_dir: Path, s: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    names = list((s.get("extra") or {}).get("extra_plots") or []) + [n for n in s.get("plots") or []
                                                                     if n == "availability.png"]
    for name in names:
        p = run_dir / str(s.get("dir") or "") / name
        if p.is_file():
            out.append({"name": name, "src": "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode()})
    return out


def render_load_report(run: dict[str, Any], run_dir: Path, baseline: dict[str, Any] | None = None,
                       regressions: list[LoadRegression] | None = None, params: CompareParams | None = None) -> str:
    base_by = {s["id"]: s for s in load_scenarios(baseline)} if baseline else {}
    scenarios = []
    warnings: list[str] = []
    for s in load_scenarios(run):
        load = s["extra"]["load"]
        bs = base_by.get(s["id"])
        if load.get("injected"):
            warnings.append(f"{s['id']}: INJECTED REGRESSION, {describe_injection(load['injected'])} — "
                            "not a real measurement of the stack")
        scenarios.append({
            **s, "load": load, "total": load.get("total") or {},
            "anchor": "s-" + re.sub(r"\W+", "-", s["id"]),
            "base_load": bs["extra"]["load"] if bs else None,
            "base_total": (bs["extra"]["load"].get("total") or {}) if bs else None,
            "base_phases": _phases(bs) if bs else {},
            "images": _images(run_dir, s),
        })
    if baseline:
        for s in load_scenarios(baseline):
            if s["extra"]["load"].get("injected"):
                warnings.append(f"baseline {s['id']}: INJECTED, {describe_injection(s['extra']['load']['injected'])}")
    flagged = {(r.scenario, r.phase, r.what) for r in regressions or []}
    return _template().render(
        run=run, baseline=baseline, scenarios=scenarios, regressions=regressions or [], warnings=warnings,
        params=params or CompareParams(), flagged=flagged, num=_num, pct=_pct, ms=_ms, knee=_knee)


def render_text(run: dict[str, Any], regressions: list[LoadRegression] | None,
                baseline: dict[str, Any] | None) -> str:
    lines = []
    for s in load_scenarios(run):
        load = s["extra"]["load"]
        t = load.get("total") or {}
        lines.append(f"{s['id']}: {str(s.get('verdict')).upper()}  ok {_num(t.get('ok_rps'))} req/s  errors "
                     f"{_pct(t.get('error_rate'))}  p99 {_ms(t.get('p99'))}"
                     + (f"  knee {_knee(load['knee'])}  max {_num(load.get('max_throughput_rps'))} req/s"
                        if load.get("knee") else ""))
        for w in load.get("warnings") or []:
            lines.append(f"  WARNING: {w}")
    if baseline is not None:
        head = f"compare {run.get('run_id')} against baseline {baseline.get('run_id')}: "
        if regressions:
            lines.append(head + f"{len(regressions)} regression(s)")
            lines += [f"  - {r.message}" for r in regressions]
        else:
            lines.append(head + "no regressions")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="goverse-harness load-report",
                                description="Standalone HTML load report of a run; --compare flags regressions.")
    p.add_argument("run", nargs="?", default="latest", help="run dir, run.json, run id or 'latest' (default)")
    p.add_argument("--compare", metavar="BASELINE", help="baseline run to compare against")
    p.add_argument("--margin", type=float, default=0.2,
                   help="relative worsening (p99, throughput, knee) that counts as a regression (default 0.2)")
    p.add_argument("--p99-margin", type=float, default=None,
                   help="relative p99 worsening that counts (default: --margin); calibrate with two clean runs")
    p.add_argument("--min-p99-ms", type=float, default=10.0, help="absolute p99 floor for a regression (ms)")
    p.add_argument("--min-rps", type=float, default=5.0, help="absolute throughput floor for a regression")
    p.add_argument("--error-floor", type=float, default=0.01,
                   help="absolute error-rate increase that counts (default 0.01 = 1 percentage point)")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="artifacts root (default ./artifacts)")
    p.add_argument("--html", type=Path, help="output file (default <run>/load-report.html)")
    return p


def load_report_main(argv: list[str] | None = None) -> int:
    from harness.report.cli import RunNotFound, load_run, resolve_run

    args = _parser().parse_args(argv)
    try:
        params = CompareParams(args.margin, args.min_p99_ms, args.min_rps, args.error_floor, args.p99_margin)
    except ValueError as exc:
        print(f"goverse-harness load-report: {exc}", file=sys.stderr)
        return 2
    try:
        run_dir = resolve_run(args.run, args.artifacts)
        run = load_run(run_dir)
        baseline = load_run(resolve_run(args.compare, args.artifacts)) if args.compare else None
    except RunNotFound as exc:
        print(f"goverse-harness load-report: {exc}", file=sys.stderr)
        return 2
    if not load_scenarios(run):
        print(f"goverse-harness load-report: {run_dir.path} has no load scenario (run with -m load)", file=sys.stderr)
        return 2
    regressions = compare_load(run, baseline, params) if baseline is not None else None
    out = args.html or run_dir.path / "load-report.html"
    out.write_text(render_load_report(run, run_dir.path, baseline, regressions, params), encoding="utf-8")
    print(render_text(run, regressions, baseline))
    print(f"load report: {out}")
    if baseline is not None:
        return 1 if regressions else 0
    return 1 if any(s.get("verdict") in ("fail", "unknown") for s in load_scenarios(run)) else 0


if __name__ == "__main__":
    raise SystemExit(load_report_main())
