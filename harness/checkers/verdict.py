"""Verdicts, one check per invariant, and the safe composition of checkers — the one verdict model
of scenarios, load budgets and conformance.

Why these values: a checker that could not decide (no data, a crash, a stack that exposes no epochs)
must never look like a pass. ``not-applicable`` says a requirement does not apply to what was examined
(kube-bench, Sonobuoy): never a pass, it does not fail the run, and its reason is shown. Jepsen's
``merge-valid`` rule is kept exactly: fail > unknown > pass (> not-applicable, which only wins when
nothing else was decided), and
an exception inside a checker becomes ``unknown`` carrying the traceback summary (``check-safe``), so one
broken checker cannot hide the verdicts of the others and cannot turn a run green.

A checker is any callable ``(History) -> Check``. Parametrised checkers are factories decorated with
:func:`checker_factory` (``rto(budget_s=10)`` returns the checker); passing the factory itself to
:func:`check` is a programming error reported loudly, not an ``unknown`` that hides the typo.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ParamSpec

from harness.history import History


class Verdict(StrEnum):
    """``pass`` (the invariant held), ``fail`` (it was violated), ``unknown`` (could not decide) or
    ``not-applicable`` (the requirement does not apply here; the detail says why)."""

    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"
    NOT_APPLICABLE = "not-applicable"


_PRIORITY = {Verdict.NOT_APPLICABLE: 0, Verdict.PASS: 1, Verdict.UNKNOWN: 2, Verdict.FAIL: 3}


def merge_verdicts(verdicts: Iterable[Verdict | str]) -> Verdict:
    """The most significant verdict: any fail → fail, else any unknown → unknown, else pass, else
    (everything not applicable) not-applicable.

    An empty collection is ``unknown``: having checked nothing proves nothing (a Litmus lesson: a pass
    without probes is meaningless)."""
    items = [Verdict(v) for v in verdicts]
    if not items:
        return Verdict.UNKNOWN
    return max(items, key=_PRIORITY.__getitem__)


@dataclass(frozen=True)
class Check:
    """The outcome of one invariant: ``detail`` is the human sentence (keys and numbers), ``data`` the
    same facts machine-readable (e.g. ``{"rto_s": 14.3, "budget_s": 10}``)."""

    name: str
    verdict: Verdict
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # accept "pass"/"fail"/"unknown" too, so identity tests on Verdict members hold; reject the rest
        object.__setattr__(self, "verdict", Verdict(self.verdict))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": str(self.verdict), "detail": self.detail, "data": self.data}


Checker = Callable[[History], Check]


@dataclass(frozen=True)
class CheckResult:
    """All checks of one scenario and their merged verdict."""

    checks: tuple[Check, ...]

    @property
    def verdict(self) -> Verdict:
        return merge_verdicts(c.verdict for c in self.checks)

    @property
    def passed(self) -> bool:
        """Only ``pass`` passes; ``unknown`` fails the test (Jepsen exits non-zero on ``:unknown``)."""
        return self.verdict is Verdict.PASS

    def failed(self) -> list[Check]:
        """The checks that fail the run: ``fail`` and ``unknown`` (not ``not-applicable``)."""
        return [c for c in self.checks if c.verdict in (Verdict.FAIL, Verdict.UNKNOWN)]

    def not_applicable(self) -> list[Check]:
        return [c for c in self.checks if c.verdict is Verdict.NOT_APPLICABLE]

    def reason(self) -> str:
        """One line for junit/run.json: every failed or unknown invariant with its detail (and, when
        nothing applied, every not-applicable one with why)."""
        if not self.checks:
            return "no checks were run"
        bad = self.failed() or (self.not_applicable() if self.verdict is Verdict.NOT_APPLICABLE else [])
        return "; ".join(f"{c.name} {c.verdict}: {c.detail}" for c in bad)

    def explain(self) -> str:
        """A multi-line explanation naming each failed/unknown invariant with its keys and numbers."""
        if not self.checks:
            return "UNKNOWN: no checks were run"
        bad = self.failed()
        n_pass = sum(c.verdict is Verdict.PASS for c in self.checks)
        head = f"{str(self.verdict).upper()}: {n_pass}/{len(self.checks)} checks passed"
        lines = [head]
        for c in bad:
            lines.append(f"- {c.name} [{c.verdict}]: {c.detail}")
        passed = [c.name for c in self.checks if c.verdict is Verdict.PASS]
        if passed:
            lines.append("passed: " + ", ".join(passed))
        lines += [f"- {c.name} [not-applicable]: {c.detail}" for c in self.not_applicable()]
        return "\n".join(lines)

    def to_list(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.checks]


def decide(name: str, data: dict[str, Any], *, failed: str | None, unknown: str | None, passed: str) -> Check:
    """The common tail of a checker: a violation found (``failed``: its sentence) fails; otherwise having
    judged nothing (``unknown``: why) is unknown, never a pass; otherwise ``passed``."""
    if failed is not None:
        return Check(name, Verdict.FAIL, failed, data)
    if unknown is not None:
        return Check(name, Verdict.UNKNOWN, unknown, data)
    return Check(name, Verdict.PASS, passed, data)


MAX_LISTED = 5  # examples named in a detail sentence; ``Check.data`` keeps them all


def examples(items: list[str]) -> str:
    """The first few items of a violation list for a detail sentence, with how many more there are."""
    more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return "; ".join(items[:MAX_LISTED]) + more


def checker_name(checker: Callable[..., Any]) -> str:
    return str(getattr(checker, "checker_name", None) or getattr(checker, "__name__", None) or checker)


P = ParamSpec("P")


def checker_factory(fn: Callable[P, Checker]) -> Callable[P, Checker]:
    """Mark a factory so that ``check(h, rto)`` (forgetting the call) raises instead of running it."""
    fn.is_checker_factory = True  # type: ignore[attr-defined]
    return fn


def named(name: str, fn: Checker) -> Checker:
    """Attach the invariant's name to a checker closure (used in unknown verdicts after a crash)."""
    fn.checker_name = name  # type: ignore[attr-defined]
    return fn


def run_safely(checker: Checker, history: History) -> Check:
    """Run one checker; an exception or a non-``Check`` return becomes ``unknown``, never a pass."""
    name = checker_name(checker)
    try:
        out = checker(history)
    except Exception as exc:  # noqa: BLE001 - turning any crash into ``unknown`` is the point
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
        return Check(
            name=name,
            verdict=Verdict.UNKNOWN,
            detail=f"checker raised {type(exc).__name__}: {exc}{where}",
            data={"error": repr(exc), "traceback": traceback.format_exception(exc)[-6:]},
        )
    if not isinstance(out, Check):
        return Check(name, Verdict.UNKNOWN, f"checker returned {type(out).__name__}, not a Check")
    return out


def check(history: History, *checkers: Checker) -> CheckResult:
    """Run every checker over one history (each isolated by :func:`run_safely`)."""
    for c in checkers:
        if getattr(c, "is_checker_factory", False):
            raise TypeError(f"{c.__name__} is a checker factory: pass {c.__name__}(...), not {c.__name__}")
    return CheckResult(tuple(run_safely(c, history) for c in checkers))
