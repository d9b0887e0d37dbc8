"""The terminal table printed after a run: scenario, verdict, RTO, p99 — and the overall verdict."""

from __future__ import annotations

from typing import Any

from harness.report.results import is_starved, overall_verdict, scenario_p99


def fmt_rto(s: dict[str, Any]) -> str:
    """``7.00 s``; ``never`` when a fault never recovered; ``—`` when not applicable (no fault)."""
    if s.get("rto_s") is not None:
        return f"{s['rto_s']:.2f} s"
    if (s.get("extra") or {}).get("recovered") is False:
        return "never"
    return "—"


def fmt_ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f} ms"


def summary_table(run: dict[str, Any]) -> str:
    rows = [("scenario", "verdict", "RTO", "p99")]
    scenarios = run.get("scenarios", [])
    for s in scenarios:
        rows.append((str(s.get("id")), str(s.get("verdict")).upper(), fmt_rto(s), fmt_ms(scenario_p99(s))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join((c.ljust(w) if i == 0 else c.rjust(w)) for i, (c, w) in
                               enumerate(zip(r, widths, strict=True))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    verdicts = [str(s.get("verdict")) for s in scenarios]
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in ("pass", "fail", "unknown", "skipped"))
    conf = [str(r.get("verdict")) for r in run.get("conformance") or [] if isinstance(r, dict)]
    if conf:  # the conformance checks are in the run's verdict (and listed by the conformance table)
        counts += "; conformance: " + ", ".join(f"{conf.count(v)} {v}" for v in sorted(set(conf)))
    lines.append(f"{counts} — run {overall_verdict(verdicts + conf).upper()}")
    n_starved = sum(1 for s in scenarios if is_starved(s))
    if n_starved:
        strict = bool((run.get("settings") or {}).get("strict_unknown"))
        lines.append(f"{n_starved} unknown because the harness was starved (measurement invalid): "
                     + ("failures (--strict-unknown)" if strict
                        else "not counted as failures (--strict-unknown makes them fail)"))
    for s in scenarios:
        if s.get("verdict") in ("fail", "unknown", "skipped") and s.get("reason"):
            lines.append(f"  {s['id']}: {s['reason']}")
    return "\n".join(lines)
