"""Load analysis and budgets over synthetic histories: exact percentiles, offered vs achieved, the knee,
generator saturation — and every budget checker shown failing (or unknown) when it should."""

from __future__ import annotations

import itertools
import random

import pytest

from harness.checkers.load import (
    achieved_at_least,
    error_rate_at_most,
    generator_not_saturated,
    knee_reported,
    p99_at_most,
    samples_complete,
)
from harness.checkers.load_analysis import (
    CPU_SAMPLE,
    PHASE_LOG,
    SAMPLES_LOG,
    KneeParams,
    Phase,
    analyze,
    find_knee,
    load_ops,
    phase_stats,
    time_series,
)
from harness.checkers.verdict import Verdict
from harness.history import Event, History

_ids = itertools.count(1_000_000_001)


def op(t: float, lat_ms: float, kind: str = "ok", f: str = "increment", proc: str = "load-1-1") -> list[Event]:
    i = next(_ids)
    return [Event(t, "invoke", proc, f, key="k", value=1, op_id=i),
            Event(t + lat_ms / 1000, kind, proc, f, key="k", value=1, op_id=i,
                  error=None if kind == "ok" else "CALL_FAILED: x")]


def phase(name: str, a: float, b: float, offered: float | None, kind: str = "phase") -> Event:
    return Event(b, "log", "harness", PHASE_LOG, value={"name": name, "t_start": a, "t_end": b,
                                                         "offered_rps": offered, "kind": kind})


def cpu(t: float, proc: str, value: float, event: str | None = None) -> Event:
    v = {"process": proc, "cpu": value} | ({"event": event} if event else {})
    return Event(t, "sample", "generator", CPU_SAMPLE, value=v)


def complete(problem: str | None = None) -> Event:
    return Event(99, "log", "harness", SAMPLES_LOG, value={"run": "run-0", "samples": 10, "files": 2,
                                                           "problem": problem})


def hist(*groups: list[Event] | Event) -> History:
    evs: list[Event] = []
    for g in groups:
        evs.extend(g if isinstance(g, list) else [g])
    return History(sorted(evs, key=lambda e: e.t))


def steady_ops(rate: float, a: float, b: float, lat_ms: float, errors_every: int = 0) -> list[Event]:
    out: list[Event] = []
    n = int((b - a) * rate)
    for i in range(n):
        kind = "fail" if errors_every and i % errors_every == 0 else "ok"
        out += op(a + i / rate, lat_ms + (i % 10), kind)
    return out


def test_phase_stats_are_exact_nearest_rank_over_ok_ops_only() -> None:
    lat = list(range(1, 101))  # 1..100 ms, plus two errors that must not enter the percentiles
    random.Random(3).shuffle(lat)
    evs: list[Event] = []
    for i, ms in enumerate(lat):
        evs += op(10 + i * 0.01, ms)
    evs += op(10.5, 5000, "info") + op(10.6, 1, "fail")
    h = hist(evs, op(9.0, 1))  # one op before the phase: excluded
    st = phase_stats(load_ops(h), Phase("p", 10.0, 12.0, 60.0))
    assert (st.count, st.ok, st.fail, st.info) == (102, 100, 1, 1)
    assert (st.p50, st.p95, st.p99, st.max) == pytest.approx((50, 95, 99, 100))
    assert st.achieved_rps == pytest.approx(51.0) and st.ok_rps == pytest.approx(50.0)
    assert st.error_rate == pytest.approx(2 / 102)
    assert st.ops["increment"]["count"] == 102


def test_probe_and_final_reads_are_not_load() -> None:
    h = hist(op(1, 5), op(1, 5, proc="probe-0", f="probe"), op(2, 5, proc="final-load", f="final-read"))
    assert [o.process for o in load_ops(h)] == ["load-1-1"]


def test_time_series_percentiles_per_second() -> None:
    h = hist(*[op(0.1 * i, 10 * (i + 1)) for i in range(10)], op(1.5, 7, "fail"))
    b = time_series(load_ops(h))
    assert [(x.t, x.ok, x.errors) for x in b] == [(0.0, 10, 0), (1.0, 0, 1)]
    assert (b[0].p50, b[0].p99, b[0].max) == pytest.approx((50, 100, 100)) and b[1].p99 is None


def _stage(name: str, offered: float, achieved: float, p99: float, err: float = 0.0):
    from harness.checkers.load_analysis import PhaseStats

    return PhaseStats(name, "stage", 0, 1, 1, offered, achieved, achieved, 100, 100, 0, 0, err, 1, 1, p99, p99)


def test_knee_by_throughput_errors_or_p99() -> None:
    k = find_knee([_stage("s1", 100, 100, 20), _stage("s2", 200, 199, 30), _stage("s3", 300, 250, 40)])
    assert k["found"] and k["offered_rps"] == 300 and "achieved 250" in k["reason"] and k["last_good_rps"] == 200
    k = find_knee([_stage("s1", 100, 100, 20), _stage("s2", 200, 200, 30, err=0.05)])
    assert k["offered_rps"] == 200 and "error rate" in k["reason"]
    k = find_knee([_stage("s1", 100, 100, 20), _stage("s2", 200, 200, 130)])
    assert k["offered_rps"] == 200 and "p99" in k["reason"]
    # p99 x4 but only +70 ms: under the absolute floor, noise rather than a knee
    assert not find_knee([_stage("s1", 100, 100, 20), _stage("s2", 200, 200, 90)])["found"]
    k = find_knee([_stage("s1", 100, 100, 20)], KneeParams(achieved_ratio=0.95))
    assert not k["found"] and k["last_good_rps"] == 100


def test_achieved_budget_passes_fails_and_is_unknown_when_the_generator_saturated() -> None:
    ok = hist(steady_ops(100, 0, 5, 5), phase("steady", 0, 5, 100.0), cpu(1, "worker-1", 20), complete())
    assert achieved_at_least(0.9, ["steady"])(ok).verdict is Verdict.PASS
    short = hist(steady_ops(70, 0, 5, 5), phase("steady", 0, 5, 100.0), cpu(1, "worker-1", 20), complete())
    c = achieved_at_least(0.9, ["steady"])(short)
    assert c.verdict is Verdict.FAIL and "achieved 70.0 < 0.9 × offered 100.0" in c.detail
    sat = hist(steady_ops(70, 0, 5, 5), phase("steady", 0, 5, 100.0), cpu(1, "worker-1", 97), complete())
    c = achieved_at_least(0.9, ["steady"])(sat)
    assert c.verdict is Verdict.UNKNOWN and "generator" in c.detail
    assert achieved_at_least(0.9, ["nope"])(ok).verdict is Verdict.UNKNOWN


def test_error_rate_and_p99_budgets() -> None:
    h = hist(steady_ops(100, 0, 5, 5, errors_every=20), phase("during", 0, 5, 100.0))
    assert error_rate_at_most(0.06, ["during"])(h).verdict is Verdict.PASS
    c = error_rate_at_most(0.01, ["during"])(h)
    assert c.verdict is Verdict.FAIL and "5.00%" in c.detail
    assert p99_at_most(50, ["during"])(h).verdict is Verdict.PASS
    c = p99_at_most(10, ["during"])(h)
    assert c.verdict is Verdict.FAIL and "p99 14.0 ms" in c.detail
    all_failed = hist(steady_ops(10, 0, 1, 5, errors_every=1), phase("during", 0, 1, 10.0))
    assert p99_at_most(10, ["during"])(all_failed).verdict is Verdict.FAIL


def test_generator_headroom_warns_but_never_fails() -> None:
    calm = hist(cpu(1, "worker-1", 30), cpu(2, "worker-2", 45))
    c = generator_not_saturated()(calm)
    assert c.verdict is Verdict.PASS and "headroom" in c.detail
    hot = hist(cpu(1, "worker-1", 30), cpu(2, "worker-1", 99.5, "cpu_warning"))
    c = generator_not_saturated()(hot)
    assert c.verdict is Verdict.PASS and c.detail.startswith("WARNING") and "worker-1" in c.detail
    assert analyze(hot).warnings() and "saturated" in analyze(hot).warnings()[0]
    assert generator_not_saturated()(hist(op(1, 1))).verdict is Verdict.UNKNOWN


def test_samples_completeness() -> None:
    assert samples_complete()(hist(complete())).verdict is Verdict.PASS
    c = samples_complete()(hist(complete("worker-9 never announced its sample count")))
    assert c.verdict is Verdict.UNKNOWN and "worker-9" in c.detail
    assert samples_complete()(hist(op(1, 1))).verdict is Verdict.UNKNOWN


def test_knee_check_on_a_step_history() -> None:
    evs = [steady_ops(100, 0, 3, 5), steady_ops(200, 3, 6, 8), steady_ops(240, 6, 9, 300),
           phase("step-1", 0, 3, 100.0, "stage"), phase("step-2", 3, 6, 200.0, "stage"),
           phase("step-3", 6, 9, 300.0, "stage")]
    c = knee_reported()(hist(*evs))
    assert c.verdict is Verdict.PASS and "knee at 300 req/s" in c.detail
    a = analyze(hist(*evs))
    assert a.knee["last_good_rps"] == 200 and a.max_throughput_rps == pytest.approx(240, abs=1)
    broken = [steady_ops(50, 0, 3, 5), steady_ops(50, 3, 6, 5), phase("step-1", 0, 3, 100.0, "stage"),
              phase("step-2", 3, 6, 200.0, "stage")]
    assert knee_reported()(hist(*broken)).verdict is Verdict.FAIL
    assert knee_reported()(hist(steady_ops(10, 0, 1, 1))).verdict is Verdict.UNKNOWN


def test_to_dict_is_json_ready_and_complete() -> None:
    import json

    a = analyze(hist(steady_ops(100, 0, 5, 5), phase("steady", 0, 5, 100.0), cpu(1, "worker-1", 20), complete()))
    d = json.loads(json.dumps(a.to_dict()))
    assert d["phases"][0]["name"] == "steady" and d["phases"][0]["achieved_ratio"] == 1.0
    assert d["total"]["count"] == 500 and d["knee"] is None and d["warnings"] == []
    p = d["phases"][0]
    assert p["p50"] <= p["p95"] <= p["p99"] <= p["max"]
