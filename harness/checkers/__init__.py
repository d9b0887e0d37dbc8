"""Checkers: pure functions from a :class:`~harness.history.History` to verdicts and measurements.

Usage in a scenario::

    result = check(history, no_lost_writes(), monotonic_reads(), single_ownership(), rto(budget_s=10))
    assert result.passed, result.explain()

Every checker is a callable ``(History) -> Check``; factories take the budgets. ``measure(history)``
returns the numbers that go into run.json (RTO, unavailability, recovery after heal, latency table).
Definitions: docs/definitions.md.
"""

from harness.checkers.availability import (
    AvailabilitySeries,
    Episode,
    MeasureParams,
    ProbeSample,
    availability_series,
    episodes,
    series_from_samples,
)
from harness.checkers.budgets import (
    availability_at_least,
    error_window,
    failures_only_on,
    recovery_after_heal,
    rto,
)
from harness.checkers.cluster import converged
from harness.checkers.counter import monotonic_reads, no_lost_writes, reads_see_acknowledged
from harness.checkers.latency import latency_table, nearest_rank, phase_of, summarize
from harness.checkers.linearizable import linearizable_counters
from harness.checkers.measure import FaultMeasurement, Measurements, measure, measure_faults
from harness.checkers.ownership import single_ownership
from harness.checkers.verdict import (
    Check,
    Checker,
    CheckResult,
    Verdict,
    check,
    checker_factory,
    merge_verdicts,
    named,
    run_safely,
)
from harness.checkers.wallet import reliable_calls_once

__all__ = [
    "AvailabilitySeries",
    "Check",
    "CheckResult",
    "Checker",
    "Episode",
    "FaultMeasurement",
    "MeasureParams",
    "Measurements",
    "ProbeSample",
    "Verdict",
    "availability_at_least",
    "availability_series",
    "check",
    "checker_factory",
    "converged",
    "episodes",
    "error_window",
    "failures_only_on",
    "latency_table",
    "linearizable_counters",
    "measure",
    "measure_faults",
    "merge_verdicts",
    "monotonic_reads",
    "named",
    "nearest_rank",
    "no_lost_writes",
    "phase_of",
    "reads_see_acknowledged",
    "recovery_after_heal",
    "reliable_calls_once",
    "rto",
    "run_safely",
    "series_from_samples",
    "single_ownership",
    "summarize",
]
