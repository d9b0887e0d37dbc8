"""Every graceful stop in a history meets the seed's SIGTERM requirements (§2.1, §2.2): the process exits
on its own within the grace period, and its ``/ready`` stops answering 200 while it drains.

Why over the history (and not only conformance 2.1/2.2): the conformance checks stop one node once, at
a moment they choose. The explorer (``scenarios/explore_segments.py``) draws graceful restarts among
other faults; each one is a SIGTERM the stack must honour, and the history already holds what is
needed to judge it — no observation of its own:

- a graceful restart's nemesis window: its ``apply_began_at`` is when the stop began (the SIGTERM),
  its ``t_start`` (t_inject) when the stop returned (the process had exited), and its params'
  ``exit_codes`` what each stopped process returned (0 = exited on its own; negative = killed by that
  signal — the platform SIGKILLs what is still running at the end of the grace period; ``None`` = not
  reported, e.g. an etcd member);
- the ``ready`` samples of ``Scenario.observing(readiness=True)`` (harness/checkers/readiness.py): each
  instance's ``/ready`` answers as a step function of time.

Only nodes and gates are judged (an etcd member is not a Goverse process).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.checkers.verdict import Check, Checker, Verdict, checker_factory, examples, named
from harness.history import History

EXIT_NAME = "sigterm_exit_within_grace"
READY_NAME = "ready_drops_on_sigterm"
READY_F = "ready"  # harness.checkers.readiness.READY_F
JUDGED_ROLES = ("node", "gate")
POLL_SLACK_S = 0.5  # the readiness poller's period (0.1 s) and its request timeout: when it may notice an exit


@dataclass(frozen=True)
class GracefulStop:
    """One process stopped with SIGTERM by a graceful restart."""

    target: str
    t_term: float  # the stop began: the SIGTERM was sent
    t_exit: float  # the stop returned: the process had exited (or been killed at the grace's end)
    exit_code: int | None


def graceful_stops(history: History) -> list[GracefulStop]:
    """The graceful stops of nodes and gates in ``history``, in time order."""
    out = []
    for w in history.faults():
        if w.kind != "restart" or not w.params.get("graceful", False):
            continue
        t_term = float(w.params.get("apply_began_at", w.t_start))
        codes = w.params.get("exit_codes") or {}
        if not isinstance(codes, dict):
            continue
        for target, code in sorted(codes.items()):
            if str(target).split("-")[0] in JUDGED_ROLES:
                out.append(GracefulStop(str(target), t_term, w.t_start, None if code is None else int(code)))
    return out


@checker_factory
def sigterm_exit_within_grace(grace_s: float) -> Checker:
    """Seed §2.2 at every graceful stop of a node or gate: it exited 0 (on its own: not killed at the end
    of the grace period, nor crashed) within ``grace_s`` of the SIGTERM. No graceful stop of a node or
    gate, or no exit code reported for any, is unknown."""

    def run(history: History) -> Check:
        stops = graceful_stops(history)
        bad: list[str] = []
        judged = []
        for s in stops:
            if s.exit_code is None:
                continue
            took = s.t_exit - s.t_term
            judged.append({"target": s.target, "exit_code": s.exit_code, "took_s": round(took, 3)})
            if s.exit_code != 0:
                how = f"killed by signal {-s.exit_code}" if s.exit_code < 0 else f"exit code {s.exit_code}"
                bad.append(f"{s.target} SIGTERMed at {s.t_term:.2f}s: {how} {took:.2f}s later (grace {grace_s:g}s)")
            elif took > grace_s:
                bad.append(f"{s.target} SIGTERMed at {s.t_term:.2f}s: exit 0 only {took:.2f}s later, past the "
                           f"{grace_s:g}s grace")
        data: dict[str, Any] = {"grace_s": grace_s, "stops": judged}
        if bad:
            return Check(EXIT_NAME, Verdict.FAIL, f"{len(bad)} of {len(judged)} graceful stops did not exit 0 "
                         f"within the grace period: {examples(bad)}", data)
        if not judged:
            return Check(EXIT_NAME, Verdict.UNKNOWN, "no graceful stop of a node or gate with an exit code in "
                         "the history", data)
        return Check(EXIT_NAME, Verdict.PASS, f"{len(judged)} graceful stops exited 0 within {grace_s:g}s: "
                     + ", ".join(f"{j['target']} {j['took_s']:.2f}s" for j in judged), data)

    return named(EXIT_NAME, run)


def _readiness(history: History) -> dict[str, list[tuple[float, bool]]]:
    out: dict[str, list[tuple[float, bool]]] = {}
    for ev in history.samples(READY_F):
        v = ev.value if isinstance(ev.value, dict) else {}
        if "instance" in v:
            out.setdefault(str(v["instance"]), []).append((ev.t, bool(v.get("ready"))))
    return out


@checker_factory
def ready_drops_on_sigterm(budget_s: float = 1.0) -> Checker:
    """Seed §2.1 at every graceful stop of a node or gate whose drain lasted long enough to see: from
    ``budget_s`` after the SIGTERM until the process exited, its ``/ready`` never said 200 (a node that
    still says ready while it drains keeps a load balancer's traffic coming). A stop that ended within
    ``budget_s`` + the poller's slack is not judged (too quick to tell a drop from the exit); none
    judged, or no readiness recorded, is unknown."""

    def run(history: History) -> Check:
        series = _readiness(history)
        data: dict[str, Any] = {"budget_s": budget_s}
        if not series:
            return Check(READY_NAME, Verdict.UNKNOWN, "no /ready answers recorded in the history", data)
        bad: list[str] = []
        judged: list[dict[str, Any]] = []
        for s in graceful_stops(history):
            a, b = s.t_term + budget_s, s.t_exit - POLL_SLACK_S
            answers = series.get(s.target) or []
            if a >= b or not answers:
                continue
            last_before = [ok for t, ok in answers if t <= a]
            said_200 = [t for t, ok in answers if a < t <= b and ok]
            if last_before and last_before[-1]:
                said_200.insert(0, a)
            drop = next((t for t, ok in answers if t >= s.t_term and not ok), None)
            judged.append({"target": s.target, "t_term": round(s.t_term, 3), "drained_s": round(s.t_exit - s.t_term, 3),
                           "drop_after_s": None if drop is None else round(drop - s.t_term, 3)})
            if said_200:
                when = "never dropped before the exit" if drop is None or drop >= b else \
                    f"dropped only {drop - s.t_term:.2f}s after it"
                bad.append(f"{s.target} still said /ready 200 {said_200[0] - s.t_term:.2f}s after its SIGTERM at "
                           f"{s.t_term:.2f}s (budget {budget_s:g}s; it exited {s.t_exit - s.t_term:.2f}s after "
                           f"the SIGTERM; {when})")
        data["stops"] = judged
        if bad:
            return Check(READY_NAME, Verdict.FAIL, f"{len(bad)} of {len(judged)} draining instances kept saying "
                         f"ready: {examples(bad)}", data)
        if not judged:
            return Check(READY_NAME, Verdict.UNKNOWN, f"no graceful stop of a node or gate lasted more than "
                         f"{budget_s + POLL_SLACK_S:g}s with its /ready recorded", data)
        return Check(READY_NAME, Verdict.PASS, f"/ready dropped within {budget_s:g}s of the SIGTERM in "
                     f"{len(judged)} graceful stops", data)

    return named(READY_NAME, run)
