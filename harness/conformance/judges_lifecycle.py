"""Pure judges for seed §2.1 (health and readiness) and §2.2 (graceful shutdown).

Why pure: the runtime tests only *observe* (poll /ready into a timeline, time a SIGTERM, sample etcd);
deciding is done here, from plain data, so every judge is shown failing on a made-up observation in
tests/conformance/test_conformance_judges.py — and each also fails against the seeded bug it is meant to catch
(ready-latched, ignore-sigterm) in the runtime suite.

Times are seconds on one monotonic clock; a timeline is ``[(t, status)]`` where ``status`` is the HTTP
status code or ``None`` when nothing answered (connection refused / timed out). A process that is not
listening is "not ready" for Kubernetes (a failed probe), so ``None`` counts as not-200.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.conformance.model import Judgement, Verdict, failed, passed, unknown

Timeline = Sequence[tuple[float, int | None]]
SIGTERM_READY_BUDGET_S = 1.0


def _fmt(status: int | None) -> str:
    return "no answer" if status is None else str(status)


def judge_endpoints(statuses: Mapping[str, int | None], path: str, want: int = 200) -> Judgement:
    """Every instance answered ``path`` with ``want``."""
    if not statuses:
        return unknown(f"no instances to probe for {path}")
    bad = {k: v for k, v in sorted(statuses.items()) if v != want}
    listing = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(statuses.items()))
    if bad:
        return failed(f"{path} not {want} on {', '.join(bad)} ({listing})", statuses=dict(statuses))
    return passed(f"{path} {want} on {len(statuses)} instances: {', '.join(sorted(statuses))}",
                  statuses=dict(statuses))


def judge_ready_matches_cluster(statuses: Mapping[str, int | None], converged: bool, detail: str) -> Judgement:
    """/ready must be 200 everywhere *because* the cluster is converged (etcd says so); a 200 on an
    unconverged cluster would be a lie, a 503 on a converged one a false alarm."""
    if not converged:
        return unknown(f"the shard map is not converged ({detail}); cannot tell what /ready should say",
                       statuses=dict(statuses))
    j = judge_endpoints(statuses, "/ready")
    return Judgement(j.verdict, f"{j.evidence}; etcd: {detail}", j.data)


@dataclass(frozen=True)
class ReadyStart:
    first_503: float | None
    first_200: float | None
    first_answer: int | None


def ready_start(timeline: Timeline, t0: float) -> ReadyStart:
    first_503 = next((t - t0 for t, s in timeline if s == 503), None)
    first_200 = next((t - t0 for t, s in timeline if s == 200), None)
    first_answer = next((s for _, s in timeline if s is not None), None)
    return ReadyStart(first_503, first_200, first_answer)


def judge_ready_before_cluster_ready(timelines: Mapping[str, Timeline], t0: float) -> Judgement:
    """For each freshly started instance: some 503 before the first 200, and a 200 eventually."""
    if not timelines:
        return unknown("no instance was observed starting")
    problems, facts = [], []
    data = {}
    for name, tl in sorted(timelines.items()):
        rs = ready_start(tl, t0)
        data[name] = {"first_503_s": rs.first_503, "first_200_s": rs.first_200, "samples": len(tl)}
        if rs.first_200 is None:
            problems.append(f"{name} never answered 200 ({len(tl)} probes)")
        elif rs.first_503 is None or rs.first_503 > rs.first_200:
            problems.append(f"{name} answered 200 at +{rs.first_200:.2f}s without a 503 before it "
                            f"(first answer {_fmt(rs.first_answer)})")
        else:
            facts.append(f"{name} 503 from +{rs.first_503:.2f}s, 200 at +{rs.first_200:.2f}s")
    if problems:
        return failed("; ".join(problems + facts), **data)
    return passed("; ".join(facts), **data)


def first_not_200_after(timeline: Timeline, t: float) -> tuple[float, int | None] | None:
    return next(((ts, s) for ts, s in timeline if ts >= t and s != 200), None)


def judge_ready_drops(timeline: Timeline, t_event: float, budget_s: float, what: str,
                      until: float | None = None) -> Judgement:
    """After ``t_event`` (and before ``until``, when the condition was healed), /ready must stop
    answering 200 within ``budget_s`` and stay down: any 200 observed later than the budget fails
    (still up, or flapping back), as does a first drop after the budget; a drop within the budget
    passes; a window that ended before the budget with only 200s is ``unknown``."""
    after = [(t - t_event, s) for t, s in timeline if t >= t_event and (until is None or t < until)]
    late_200 = [(dt, s) for dt, s in after if s == 200 and dt > budget_s]
    drop = next(((dt, s) for dt, s in after if s != 200), None)
    data = {"budget_s": budget_s, "drop_s": drop[0] if drop else None, "drop_status": drop[1] if drop else None,
            "late_200": len(late_200), "probes": len(after)}
    if late_200:
        return failed(f"/ready still 200 at +{late_200[-1][0]:.2f}s after {what} (budget {budget_s:g}s, "
                      f"{len(late_200)} late 200s)", **data)
    if drop is not None and drop[0] > budget_s:
        return failed(f"/ready dropped only at +{drop[0]:.2f}s after {what} (budget {budget_s:g}s)", **data)
    if drop is not None:
        return passed(f"/ready {_fmt(drop[1])} at +{drop[0]:.2f}s after {what} (budget {budget_s:g}s)", **data)
    return unknown(f"only 200s in the {after[-1][0] if after else 0:.2f}s observed after {what}, shorter than the "
                   f"{budget_s:g}s budget", **data)


def judge_ready_returns(timeline: Timeline, t_from: float, budget_s: float, what: str) -> Judgement:
    back = next((t - t_from for t, s in timeline if t >= t_from and s == 200), None)
    if back is None:
        return failed(f"/ready never returned to 200 after {what} (watched {budget_s:g}s)", budget_s=budget_s)
    if back > budget_s:
        return failed(f"/ready back to 200 only {back:.2f}s after {what} (budget {budget_s:g}s)", back_s=back)
    return passed(f"/ready back to 200 {back:.2f}s after {what}", back_s=back, budget_s=budget_s)


def judge_all(parts: Mapping[str, Judgement]) -> Judgement:
    """Several sub-judgements of one check: the worst verdict, every sentence, named."""
    from harness.conformance.model import merge

    if not parts:
        return unknown("nothing was judged")
    verdict = merge(j.verdict for j in parts.values())
    text = "; ".join(f"{name}: {j.evidence}" for name, j in parts.items())
    return Judgement(verdict, text, {name: {"verdict": str(j.verdict), **j.data} for name, j in parts.items()})


# ------------------------------------------------------------------------------------------ §2.2
@dataclass(frozen=True)
class CallObservation:
    """One client call: ``ok`` (acknowledged), else the HTTP status/code/error, or ``status None``
    when no answer came within ``waited_s`` (it may still be running)."""

    ok: bool
    status: int | None
    code: str | None
    error: str | None
    elapsed_s: float
    answered: bool = True


def judge_refuses_new_calls(obs: CallObservation | None, budget_s: float = 1.0) -> Judgement:
    if obs is None:
        return unknown("no call was sent after SIGTERM")
    data = {"status": obs.status, "code": obs.code, "error": obs.error, "elapsed_s": round(obs.elapsed_s, 3)}
    if obs.ok:
        return failed(f"a call sent after SIGTERM was served ({obs.elapsed_s:.2f}s)", **data)
    if not obs.answered or obs.elapsed_s > budget_s:
        return failed(f"a call sent after SIGTERM was not refused within {budget_s:g}s (no answer after "
                      f"{obs.elapsed_s:.2f}s: the node took it)", **data)
    return passed(f"refused in {obs.elapsed_s:.2f}s: {obs.status} {obs.code or ''} {(obs.error or '')[:120]}".strip(),
                  **data)


def judge_exit(rc: int | None, elapsed_s: float, grace_s: float) -> Judgement:
    data = {"exit_code": rc, "elapsed_s": round(elapsed_s, 3), "grace_s": grace_s}
    if rc is None:
        return unknown("the process was never started or its exit was not observed", **data)
    if rc != 0:
        how = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
        return failed(f"{how} {elapsed_s:.2f}s after SIGTERM (grace {grace_s:g}s)", **data)
    if elapsed_s > grace_s:
        return failed(f"exit 0 only {elapsed_s:.2f}s after SIGTERM, past the {grace_s:g}s grace", **data)
    return passed(f"exit 0 {elapsed_s:.2f}s after SIGTERM (grace {grace_s:g}s)", **data)


def judge_drains_in_flight(inflight: CallObservation | None, rc: int | None, exit_s: float,
                           grace_s: float) -> Judgement:
    """The call in flight at SIGTERM is acknowledged, and the process then exits 0 within the grace."""
    if inflight is None:
        return unknown("no call was in flight at SIGTERM")
    data = {"inflight_ok": inflight.ok, "inflight_error": inflight.error, "exit_code": rc,
            "exit_s": round(exit_s, 3)}
    exit_j = judge_exit(rc, exit_s, grace_s)
    problems = []
    if not inflight.ok:
        problems.append(f"the call in flight at SIGTERM failed: {inflight.status} {inflight.code} "
                        f"{(inflight.error or 'no answer')[:160]}")
    if exit_j.verdict != "pass":
        problems.append(exit_j.evidence)
    if problems:
        verdict = Verdict.FAIL if not inflight.ok or exit_j.verdict == "fail" else exit_j.verdict
        return Judgement(verdict, "; ".join(problems), data)
    return passed(f"in-flight call acknowledged after {inflight.elapsed_s:.2f}s, then {exit_j.evidence}", **data)


@dataclass(frozen=True)
class OwnershipSample:
    """What etcd said at ``t``: is the node's membership key there, how many shards name it current."""

    t: float
    registered: bool
    owned: int


def judge_releases_shards(samples: Sequence[OwnershipSample], t_term: float, t_exit: float,
                          owned_before: int) -> Judgement:
    """At the first etcd sample after the process exited, the node must hold no shard and no
    membership key: it handed them over itself. Keys left for the lease to expire (a kill, or a
    shutdown that skipped the handover) fail."""
    data: dict[str, Any] = {"owned_before": owned_before, "samples": len(samples)}
    if owned_before <= 0:
        return unknown("the node owned no shards before SIGTERM; nothing to release", **data)
    released = next((s for s in samples if s.t >= t_term and s.owned == 0 and not s.registered), None)
    at_exit = next((s for s in samples if s.t >= t_exit), None)
    if at_exit is None:
        return unknown("no etcd sample was taken after the process exited", **data)
    data.update(owned_at_exit=at_exit.owned, registered_at_exit=at_exit.registered,
                released_s=round(released.t - t_term, 3) if released else None)
    if at_exit.owned or at_exit.registered:
        what = []
        if at_exit.owned:
            what.append(f"{at_exit.owned} shards still name it current")
        if at_exit.registered:
            what.append("its membership key is still there (left to lease expiry)")
        return failed(f"{at_exit.t - t_exit:+.2f}s after exit: " + " and ".join(what), **data)
    assert released is not None
    return passed(f"{owned_before} shards released and membership removed (seen {released.t - t_term:.2f}s "
                  f"after SIGTERM; exit at +{t_exit - t_term:.2f}s): nothing left to lease expiry", **data)
