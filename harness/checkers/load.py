"""Load budgets as checkers: ``History -> Check``, like every other invariant of the harness.

Why checkers and not asserts in the scenario: a missed budget must be a ``fail`` verdict with the numbers
in its detail (kube-burner's thresholds), merged with the correctness checks by the same
fail > unknown > pass rule, and re-derivable offline from ``history.jsonl`` (the phases and the
generator's CPU readings are in the history, see :mod:`harness.checkers.load_analysis`).

A budget over a phase that has no load ops is ``unknown`` (nothing was measured: never a pass). A
throughput shortfall while the generator's CPU was saturated is ``unknown`` too: the shortfall may be
the generator's, not the stack's. Generator saturation itself is reported as a *warning* (a passing
check whose detail starts with ``WARNING``), because it questions the measurement, not the stack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from harness.checkers.load_analysis import LoadAnalysis, analyze
from harness.checkers.verdict import Check, Checker, Verdict, checker_factory, decide, named
from harness.history import History


def _phases(a: LoadAnalysis, names: Sequence[str]) -> tuple[list, list[str]]:
    found = [a.phase(n) for n in names]
    missing = [n for n, p in zip(names, found, strict=True) if p is None or p.count == 0]
    return [p for p in found if p is not None and p.count], missing


def _measured(history: History, phases: Sequence[str], name: str) -> tuple[LoadAnalysis, list[Any], Check | None]:
    """The analysis, the named phases that have load ops, and the ``unknown`` check when any has none
    (nothing measured is never a pass)."""
    a = analyze(history)
    got, missing = _phases(a, phases)
    if missing:
        return a, got, Check(name, Verdict.UNKNOWN, f"no load ops in phase(s) {missing}: nothing measured")
    return a, got, None


def _over_phases(name: str, phases: Sequence[str], judge: Callable[[LoadAnalysis, list[Any]], Check]) -> Checker:
    """A budget checker over the named phases: ``unknown`` when any has no load ops, else
    ``judge(analysis, phases with ops)`` (the skeleton every per-phase budget shares)."""

    def run(history: History) -> Check:
        a, got, unmeasured = _measured(history, phases, name)
        return unmeasured if unmeasured is not None else judge(a, got)

    return named(name, run)


def _each_within(name: str, data: dict[str, Any], got: list[Any], bad: list[Any], row: Callable[[Any], str],
                 passed: str, failed: str) -> Check:
    """Fail naming the phases over the budget (``bad``), else pass naming every phase; ``row`` says one."""
    text = ", ".join(row(p) for p in (bad or got))
    return decide(name, data, unknown=None, passed=f"{passed}: {text}", failed=f"{failed}: {text}" if bad else None)


@checker_factory
def achieved_at_least(ratio: float, phases: Sequence[str]) -> Checker:
    """Achieved rate ≥ ``ratio`` × offered in each named phase (the generator could offer what it meant)."""
    name = f"load_achieved_at_least_{ratio:g}x"

    def judge(a: LoadAnalysis, got: list[Any]) -> Check:
        bad = [p for p in got if p.offered_rps and p.achieved_rps < ratio * p.offered_rps]
        rows = ", ".join(f"{p.name}: {p.achieved_rps:.0f}/{p.offered_rps or 0:.0f} req/s" for p in got)
        data = {"ratio": ratio, "phases": {p.name: {"offered_rps": p.offered_rps, "achieved_rps": p.achieved_rps}
                                           for p in got}}
        if bad:
            msg = "; ".join(f"{p.name}: achieved {p.achieved_rps:.1f} < {ratio:g} × offered {p.offered_rps:.1f} "
                            f"req/s" for p in bad)
            if a.generator.get("saturated"):
                return Check(name, Verdict.UNKNOWN, f"{msg} — but the generator's CPU was saturated "
                             f"({', '.join(a.generator['saturated'])}): cannot tell whose shortfall it is", data)
            return Check(name, Verdict.FAIL, msg, data)
        return Check(name, Verdict.PASS, f"achieved/offered ≥ {ratio:g} ({rows})", data)

    return _over_phases(name, phases, judge)


@checker_factory
def error_rate_at_most(max_rate: float, phases: Sequence[str]) -> Checker:
    """(fail + info) / completed ≤ ``max_rate`` in each named phase."""
    name = f"load_error_rate_at_most_{max_rate:g}"

    def judge(a: LoadAnalysis, got: list[Any]) -> Check:
        rows = {p.name: {"error_rate": p.error_rate, "fail": p.fail, "info": p.info, "count": p.count} for p in got}
        bad = [p for p in got if (p.error_rate or 0.0) > max_rate]
        return _each_within(name, {"max": max_rate, **rows}, got, bad,
                            lambda p: f"{p.name} {p.error_rate or 0:.2%} ({p.fail} fail, {p.info} info of {p.count})",
                            passed=f"error rate ≤ {max_rate:.2%}", failed=f"error rate over {max_rate:.2%}")

    return _over_phases(name, phases, judge)


@checker_factory
def p99_at_most(budget_ms: float, phases: Sequence[str]) -> Checker:
    """p99 of the ok load ops (exact, nearest rank) ≤ ``budget_ms`` in each named phase."""
    name = f"load_p99_at_most_{budget_ms:g}ms"

    def judge(a: LoadAnalysis, got: list[Any]) -> Check:
        no_ok = [p.name for p in got if p.p99 is None]
        if no_ok:
            return Check(name, Verdict.FAIL, f"no successful op at all in phase(s) {no_ok}")
        rows = {p.name: {"p99": p.p99, "max": p.max} for p in got}
        bad = [p for p in got if p.p99 is not None and p.p99 > budget_ms]
        return _each_within(name, {"budget_ms": budget_ms, **rows}, got, bad,
                            lambda p: f"{p.name} p99 {p.p99:.1f} ms (max {p.max:.1f})",
                            passed=f"p99 ≤ {budget_ms:g} ms", failed=f"p99 over {budget_ms:g} ms")

    return _over_phases(name, phases, judge)


@checker_factory
def generator_not_saturated() -> Checker:
    """A warning (never a failure) when a locust process reached locust's CPU warning threshold; unknown
    when no CPU reading arrived at all (then nobody knows whether the generator kept up)."""
    name = "load_generator_headroom"

    def run(history: History) -> Check:
        g = analyze(history).generator
        if not g.get("readings"):
            return Check(name, Verdict.UNKNOWN, "no CPU reading from any locust process", g)
        peaks = ", ".join(f"{p} {c:.0f}%" for p, c in g["peak_cpu"].items())
        if g.get("saturated"):
            return Check(name, Verdict.PASS, f"WARNING: generator CPU saturated in {', '.join(g['saturated'])} "
                         f"(peaks: {peaks}; threshold {g['threshold']:.0f}% of a core): its numbers may be the "
                         "generator's limit — add workers", g)
        return Check(name, Verdict.PASS, f"generator had headroom (peak CPU per process: {peaks})", g)

    return named(name, run)


@checker_factory
def samples_complete() -> Checker:
    """Every locust process said how many samples it wrote and all of them were read back: otherwise
    some requests have no recorded outcome and the correctness checks cannot be trusted."""
    name = "load_samples_complete"

    def run(history: History) -> Check:
        recs = analyze(history).completeness
        if not recs:
            return Check(name, Verdict.UNKNOWN, "no load run recorded its samples")
        bad = [r for r in recs if r.get("problem")]
        total = sum(int(r.get("samples", 0)) for r in recs)
        if bad:
            return Check(name, Verdict.UNKNOWN, "; ".join(str(r["problem"]) for r in bad), {"runs": recs})
        return Check(name, Verdict.PASS, f"{total} samples from {sum(r.get('files', 0) for r in recs)} generator "
                     "processes, each file complete", {"runs": recs})

    return named(name, run)


@checker_factory
def knee_reported(min_first_ratio: float = 0.9) -> Checker:
    """The step load's first step was served (achieved ≥ ratio × offered): the stack works at low load,
    so the knee found above it is the stack's capacity, not a broken setup."""
    name = "load_knee"

    def run(history: History) -> Check:
        a = analyze(history)
        stages = [p for p in a.phases if p.kind == "stage"]
        if len(stages) < 2 or a.knee is None:
            return Check(name, Verdict.UNKNOWN, "no step load with at least two steps in this history")
        first = stages[0]
        if not first.offered_rps or first.achieved_rps < min_first_ratio * first.offered_rps:
            return Check(name, Verdict.FAIL, f"even the first step was not served: achieved {first.achieved_rps:.0f} "
                         f"of {first.offered_rps or 0:.0f} req/s offered", {"knee": a.knee})
        k = a.knee
        if k["found"]:
            text = (f"knee at {k['offered_rps']:.0f} req/s offered ({k['stage']}: {k['reason']}); last good step "
                    f"{k['last_good_rps'] or 0:.0f} req/s; max throughput {a.max_throughput_rps or 0:.0f} req/s ok")
        else:
            text = f"no knee: {k['reason']}; max throughput {a.max_throughput_rps or 0:.0f} req/s ok"
        return Check(name, Verdict.PASS, text, {"knee": k, "max_throughput_rps": a.max_throughput_rps})

    return named(name, run)
