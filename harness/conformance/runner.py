"""What the runtime conformance tests share: an experiment's outcome, judging it safely, and turning a
judgement into a result file plus a pytest outcome.

Why not in the scenario module: the scenario should read as the list of requirements; the rules
"an experiment that crashed makes its checks unknown", "a judge that crashed is unknown", "unknown
fails the test, not-applicable skips it, the result file is written either way" are the suite's
semantics and are tested in tests/conformance/test_conformance_runner.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.conformance import catalogue
from harness.conformance.adhoc import unsupported_reason
from harness.conformance.model import Judgement, Result, Verdict, not_applicable, unknown
from harness.conformance.results import redact, write_result
from harness.platforms.base import Unsupported


def check_id(cid: str) -> pytest.MarkDecorator:
    """Parametrize a test with its check id, so the id is in the test's node id and ``-k`` finds it."""
    catalogue.get(cid)  # a typo fails at collection
    return pytest.mark.parametrize("cid", [cid], ids=[cid])


@dataclass
class Outcome:
    """An experiment's observations, or why it could not be run (then its checks are not judged)."""

    value: Any = None
    error: str | None = None
    not_applicable: str | None = None


def run_experiment(fn: Callable[[], Any], needs_adhoc: Any = None) -> Outcome:
    """Run ``fn``; a deployment that cannot start ad-hoc instances makes it not applicable, an
    exception makes it an error (its checks: unknown, never a pass)."""
    if needs_adhoc is not None:
        reason = unsupported_reason(needs_adhoc)
        if reason:
            return Outcome(not_applicable=reason)
    try:
        return Outcome(value=fn())
    except Unsupported as exc:  # a capability the experiment needs is missing here, with the reason
        return Outcome(not_applicable=f"the platform cannot run this experiment: {exc}")
    except Exception as exc:  # noqa: BLE001 - a broken experiment is "unknown" for its checks
        return Outcome(error=f"the experiment failed: {type(exc).__name__}: {exc}")


def judged(outcome: Outcome, judge: Callable[[Any], Judgement]) -> Judgement:
    if outcome.not_applicable:
        return not_applicable(outcome.not_applicable)
    if outcome.error:
        return unknown(outcome.error)
    try:
        return judge(outcome.value)
    except Exception as exc:  # noqa: BLE001 - a crashing judge must never look like a pass
        return unknown(f"the judge raised {type(exc).__name__}: {exc}")


def conclude(run_dir: Path, cid: str, j: Judgement, secrets: list[str]) -> None:
    """Write ``<run_dir>/conformance/<cid>.json``; then pass, skip (not-applicable) or fail the test."""
    # redact before anything holds the text: pytest's assertion introspection would print it
    result = Result.of(catalogue.get(cid), j.verdict, redact(j.evidence, secrets), redact(j.data, secrets))
    write_result(run_dir, result, secrets)
    if result.verdict is Verdict.NOT_APPLICABLE:
        pytest.skip(f"{cid}: not applicable: {result.evidence}")
    if result.verdict is not Verdict.PASS:
        pytest.fail(f"{cid} {result.verdict}: {result.evidence}", pytrace=False)
