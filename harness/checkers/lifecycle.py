"""Checkers of facts a scenario captured outside the history (exit codes, bring-up timings, which
gates answered): each is built with those facts and judges them the same fail/unknown/pass way.

Why here and not inline in the scenario files: every checker lives in harness/checkers/, is pure and
is shown failing on crafted input (tests/checkers/test_checkers_all_failed.py).
"""

from __future__ import annotations

from harness.checkers.verdict import Check, Checker, Verdict
from harness.history import History


def ready_within(timings: dict[str, float], budget_s: float) -> Checker:
    """Bring-up: the platform's ``converged_s`` timing (processes started → shard map converged) is
    within ``budget_s``; no timing reported is unknown."""
    def checker(_history: History) -> Check:
        took = timings.get("converged_s")
        if took is None:
            return Check("time-to-converged", Verdict.UNKNOWN, "platform reported no bring-up timings", {})
        verdict = Verdict.PASS if took <= budget_s else Verdict.FAIL
        return Check("time-to-converged", verdict,
                     f"stack processes started → shard map converged in {took:.2f}s (budget {budget_s}s)",
                     {"converged_s": took, "budget_s": budget_s, **timings})
    return checker


def exited_cleanly(codes: dict[str, int | None], grace: float) -> Checker:
    """Seed §2.2: a SIGTERMed instance exits 0 within its grace period (None = it had to be killed)."""
    def checker(_history: History) -> Check:
        if not codes:
            return Check("exit-0-within-grace", Verdict.UNKNOWN,
                         "the platform reported no exit code for the restarted instance", {"exit_codes": codes})
        bad = {k: v for k, v in codes.items() if v != 0}
        if bad:
            return Check("exit-0-within-grace", Verdict.FAIL,
                         f"exit codes after SIGTERM (grace {grace}s): {bad} (None = killed after grace)",
                         {"exit_codes": codes})
        return Check("exit-0-within-grace", Verdict.PASS, f"all exited 0 within {grace}s: {codes}",
                     {"exit_codes": codes})
    return checker


def every_gate_served(served: set[str], expected: set[str]) -> Checker:
    """The added gate really took client traffic (otherwise 'scale up' tested nothing)."""
    def checker(_history: History) -> Check:
        missing = sorted(expected - served)
        data = {"served": sorted(served), "expected": sorted(expected)}
        if missing:
            return Check("every_gate_served", Verdict.FAIL, f"gates that never answered a call: {missing}", data)
        return Check("every_gate_served", Verdict.PASS, f"every gate answered calls: {sorted(expected)}", data)
    return checker
