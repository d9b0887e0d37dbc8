"""Measurements as docs/definitions.md defines them: availability(t), RTO and its edge cases
(no dip, never recovered, flapping, several faults, no data), unavailability, recovery after heal, and
latency percentiles by nearest rank checked against an independent reference."""

from __future__ import annotations

import math
import random

import pytest

from harness.checkers import (
    MeasureParams,
    ProbeSample,
    latency_table,
    measure,
    nearest_rank,
    phase_of,
    series_from_samples,
    summarize,
)
from harness.checkers.availability import stream_episodes
from harness.checkers.measure import FaultMeasurement, measure_fault
from harness.history import Event, FaultWindow, History
from tests.support.paths import DATA

HISTORIES = DATA / "histories"
P = MeasureParams()


def probes(t_end: float, down: list[tuple[float, float]] = (), hz: int = 20,
           gaps: list[tuple[float, float]] = ()) -> list[ProbeSample]:
    """A probe every 1/hz s on [0, t_end); those invoked inside a ``down`` interval fail; none are
    invoked inside a ``gap``."""
    out = []
    for k in range(int(t_end * hz)):
        t = k / hz
        if any(a <= t < b for a, b in gaps):
            continue
        out.append(ProbeSample(t, not any(a <= t < b for a, b in down)))
    return out


def fault(t_start: float, t_stop: float | None, fid: str = "f1") -> FaultWindow:
    return FaultWindow(fid, "kill", "node-1", {}, t_start, t_stop)


def one(samples: list[ProbeSample], f: FaultWindow, next_inject: float | None = None) -> FaultMeasurement:
    return measure_fault(samples, P, f, next_inject)


# ---- availability(t) (plots, availability_min) --------------------------------------------------------
def test_availability_is_the_ok_fraction_of_probes_invoked_in_the_trailing_window() -> None:
    s = series_from_samples(probes(5.0, down=[(2.0, 2.5)]), P)
    at = dict(zip(s.t, s.value, strict=True))
    assert at[1.0] == 1.0  # window (0, 1]: 20 probes ok
    assert at[2.0] == 19 / 20  # (1, 2]: the probe at 2.00 failed
    assert at[2.5] == 10 / 20  # (1.5, 2.5]: 2.00 .. 2.45 failed
    assert at[3.4] == 19 / 20  # (2.4, 3.4] still holds the failed probe at 2.45
    assert at[3.5] == 1.0  # (2.5, 3.5]: all ok again
    assert s.count[s.t.index(2.0)] == 20


def test_availability_counts_a_window_without_probes_as_not_available() -> None:
    s = series_from_samples(probes(10.0, gaps=[(4.0, 6.0)]), P)
    i = s.t.index(5.5)
    assert s.value[i] is None and not s.good(i)


def test_no_probes_gives_an_empty_series() -> None:
    s = series_from_samples([], P)
    assert s.t == () and s.end is None


# ---- RTO from the raw probe stream -------------------------------------------------------------------------
def test_rto_of_a_clean_outage_ends_at_the_first_good_probe_of_a_stable_stretch() -> None:
    # probes fail on [10, 16): the last bad probe is 15.95, the first good 16.00 and [16, 18] stays
    # good → recovered at the midpoint 15.975 (no trailing window to add); each failed probe stands for
    # 50 ms → 6.0 s unavailable
    m = one(probes(30.0, down=[(10.0, 16.0)]), fault(10.0, 15.0))
    assert m.status == "recovered"
    assert m.t_dip == pytest.approx(10.0)
    assert m.t_recovered == pytest.approx(15.975)
    assert m.rto_s == pytest.approx(5.975)
    assert m.unavailability_s == pytest.approx(6.0)
    assert m.recovery_after_heal_s == pytest.approx(0.975) and not m.recovered_before_heal


def test_no_dip_means_rto_zero() -> None:
    m = one(probes(30.0), fault(10.0, 15.0))
    assert (m.status, m.rto_s, m.unavailability_s, m.recovery_after_heal_s) == ("no-dip", 0.0, 0.0, 0.0)
    assert m.recovered is True


def test_never_recovered_is_none_not_a_number() -> None:
    m = one(probes(30.0, down=[(10.0, 30.0)]), fault(10.0, 15.0))
    assert m.status == "never-recovered" and m.rto_s is None and m.recovered is False
    assert m.recovery_after_heal_s is None
    assert m.unavailability_s == pytest.approx(20.0, abs=0.06)


def test_a_good_stretch_shorter_than_w_at_the_end_is_not_a_recovery() -> None:
    # good from 28.5, but [28.5, 30.5] does not fit in data ending at 29.95
    m = one(probes(30.0, down=[(10.0, 28.5)]), fault(10.0, 15.0))
    assert m.status == "never-recovered"


def test_flapping_does_not_end_the_outage() -> None:
    # down [10, 12), up [12, 13.8) (1.8 s < W), down [13.8, 14.5), then up for good
    m = one(probes(30.0, down=[(10.0, 12.0), (13.8, 14.5)]), fault(10.0, 20.0))
    assert m.t_recovered == pytest.approx(14.475)
    assert m.rto_s == pytest.approx(4.475)
    assert m.unavailability_s == pytest.approx(2.0 + 0.7)
    assert [e.dip_at for e in m.episodes] == [pytest.approx(10.0)]


def test_a_later_separate_dip_is_a_second_episode_not_a_longer_rto() -> None:
    m = one(probes(40.0, down=[(10.0, 12.0), (25.0, 26.0)]), fault(10.0, 11.0))
    assert m.rto_s == pytest.approx(1.975)
    assert [(e.dip_at, e.recovered_at) for e in m.episodes] == [
        (pytest.approx(10.0), pytest.approx(11.975)), (pytest.approx(25.0), pytest.approx(25.975))]
    assert m.unavailability_s == pytest.approx(2.0 + 1.0)


def test_recovery_before_heal_is_clamped_to_zero_and_flagged() -> None:
    m = one(probes(30.0, down=[(10.0, 13.0)]), fault(10.0, 20.0))
    assert m.t_recovered == pytest.approx(12.975)
    assert m.recovery_after_heal_s == 0.0 and m.recovered_before_heal


def test_a_fault_with_no_probe_data_after_it_is_no_data() -> None:
    m = one(probes(10.0), fault(20.0, 25.0))
    assert m.status == "no-data" and m.rto_s is None and m.recovered is None


def test_a_probe_silence_during_the_fault_counts_as_unavailable() -> None:
    # the last probe before the silence is 9.95; after max_gap (1 s) of silence there is no evidence
    m = one(probes(30.0, gaps=[(10.0, 14.0)]), fault(10.0, 12.0))
    assert m.status == "recovered"
    assert m.t_dip == pytest.approx(10.95)
    assert m.rto_s == pytest.approx(4.0)  # the first probe after the silence, 14.0, starts a good W
    assert m.unavailability_s == pytest.approx(14.0 - 10.95)


def test_a_call_that_succeeded_too_late_is_not_available() -> None:
    # probes invoked in [10, 12) hang until 12 and then succeed: ok, but not within the 1 s SLO
    slow = [ProbeSample(s.t, s.t < 10.0 or s.t >= 11.0, True, max(0.0, 12.0 - s.t) if 10 <= s.t < 12 else 0.01)
            for s in probes(30.0)]
    m = one(slow, fault(10.0, 12.0))
    assert m.rto_s == pytest.approx(0.975) and m.unavailability_s == pytest.approx(1.0)


def test_the_slo_comes_from_the_history_meta_and_both_rates_are_reported() -> None:
    events = []
    for i in range(40):
        t, lat = i * 0.05, (1.5 if i % 4 == 0 else 0.01)
        events += [Event(t, "invoke", "probe-0", "probe", key="k", op_id=i + 1),
                   Event(t + lat, "ok", "probe-0", "probe", key="k", value=0, op_id=i + 1)]
    events.sort(key=lambda e: e.t)
    m = measure(History(events))
    assert (m.succeeded, m.availability) == (1.0, 0.75)  # default SLO 1000 ms
    m2 = measure(History(events, meta={"slo_ms": 2000}))
    assert (m2.succeeded, m2.availability, m2.params.slo_ms) == (1.0, 1.0, 2000.0)


@pytest.mark.parametrize("seed", range(25))
def test_rto_and_unavailability_err_by_at_most_half_a_probe_period(seed: int) -> None:
    """Against an outage whose boundaries fall anywhere between probes, with jittered probe times."""
    rng = random.Random(seed)
    a = 10.0 + rng.random()
    b = a + rng.uniform(0.2, 5.0)
    samples, t = [], 0.0
    while t < 30.0:
        samples.append(ProbeSample(t, not (a <= t < b)))
        t += 0.05 + rng.uniform(-0.004, 0.004)
    m = one(samples, fault(a, a + 0.1))
    period = 0.054
    assert abs(m.rto_s - (b - a)) <= period / 2
    assert abs(m.unavailability_s - (b - a)) <= period


def _history(samples: list[ProbeSample], faults: list[FaultWindow]) -> History:
    events: list[Event] = []
    for i, s in enumerate(samples, 1):
        events.append(Event(s.t, "invoke", f"probe-{i % 4}", "probe", key=f"probe-{i % 32:02d}", op_id=i))
        events.append(Event(s.t + 0.004, "ok" if s.ok else "fail", f"probe-{i % 4}", "probe",
                            key=f"probe-{i % 32:02d}", value=0 if s.ok else None, op_id=i))
    for f in faults:
        value = {"id": f.id, "kind": f.kind, "target": f.target, "params": {}}
        events.append(Event(f.t_start, "nemesis", "nemesis", "start", value=value))
        if f.t_stop is not None:
            events.append(Event(f.t_stop, "nemesis", "nemesis", "stop", value=value))
    return History(sorted(events, key=lambda e: e.t))


def test_several_faults_are_measured_separately_and_aggregated_as_the_worst() -> None:
    h = _history(probes(40.0, down=[(10.0, 13.0), (20.0, 24.0)]),
                 [fault(10.0, 12.0, "f1"), fault(20.0, 22.0, "f2")])
    m = measure(h)
    f1, f2 = m.faults
    assert (f1.rto_s, f2.rto_s) == (pytest.approx(2.975), pytest.approx(3.975))
    assert (f1.recovery_after_heal_s, f2.recovery_after_heal_s) == (pytest.approx(0.975), pytest.approx(1.975))
    assert f1.unavailability_s == pytest.approx(3.0)  # only up to f2's injection
    assert m.rto_s == pytest.approx(3.975) and m.recovered is True
    assert m.unavailability_s == pytest.approx(7.0)
    assert m.recovery_after_heal_s == pytest.approx(1.975)


def test_one_fault_never_recovering_makes_the_scenario_rto_none() -> None:
    h = _history(probes(40.0, down=[(10.0, 13.0), (20.0, 40.0)]),
                 [fault(10.0, 12.0, "f1"), fault(20.0, 22.0, "f2")])
    m = measure(h)
    assert m.faults[0].rto_s == pytest.approx(2.975)
    assert m.rto_s is None and m.recovered is False and m.recovery_after_heal_s is None


def test_episodes_stop_searching_dips_at_the_next_injection() -> None:
    assert stream_episodes(probes(40.0, down=[(20.0, 24.0)]), P, 10.0, 20.0) == []  # belongs to the next fault


def test_params_are_validated() -> None:
    with pytest.raises(ValueError):
        MeasureParams(threshold=1.5)
    with pytest.raises(ValueError):
        MeasureParams(window_s=0)
    with pytest.raises(ValueError, match="slo_ms"):
        MeasureParams(slo_ms=0)


# ---- measure() on a recorded history ---------------------------------------------------------------------
def test_measure_on_a_recorded_node_kill() -> None:
    m = measure(History.load(HISTORIES / "kill_node_recovers.jsonl"))
    assert m.rto_s == pytest.approx(6.0, abs=0.05)  # failover at 16 s, exact to the probe period
    assert m.recovered is True
    assert m.unavailability_s == pytest.approx(6.0 / 3, abs=0.1)  # a third of the probed keys were down
    assert m.recovery_after_heal_s == pytest.approx(1.0, abs=0.05)
    assert m.availability_min == pytest.approx(0.65)  # one third of the keys down
    assert m.probe_count == 600
    assert set(m.latency) == {"all", "before", "during", "after"}
    d = m.to_dict()
    assert d["faults"][0]["status"] == "recovered"
    assert d["faults"][0]["episodes"] == [[pytest.approx(10.1, abs=0.05), pytest.approx(16.0, abs=0.05)]]


def test_measure_without_faults_or_probes() -> None:
    m = measure(History(events=[]))
    assert (m.rto_s, m.recovered, m.unavailability_s, m.availability, m.probe_count) == (None, None, None, None, 0)
    assert m.latency == {} and m.faults == ()


# ---- latency ------------------------------------------------------------------------------------------------
def reference_percentile(xs: list[float], p: float) -> float:
    """Independent definition: the smallest sample v with at least p % of the samples ≤ v."""
    n = len(xs)
    for v in sorted(xs):
        if sum(1 for x in xs if x <= v) * 100 >= p * n:
            return v
    raise AssertionError("unreachable")


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 99, 100, 101, 250])
def test_nearest_rank_matches_the_reference(n: int) -> None:
    rng = random.Random(n)
    xs = [round(rng.lognormvariate(1.0, 1.0), 3) for _ in range(n)]
    xs_sorted = sorted(xs)
    for p in (0.1, 1, 25, 50, 90, 95, 99, 99.9, 100):
        assert nearest_rank(xs_sorted, p) == reference_percentile(xs, p), (n, p)


def test_percentiles_of_1_to_100_ms() -> None:
    s = summarize([float(i) for i in range(100, 0, -1)], errors=3)
    assert s == {"count": 103, "errors": 3, "p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}


def test_p99_never_exceeds_max_and_percentiles_are_ordered() -> None:
    rng = random.Random(7)
    for _ in range(200):
        xs = [rng.expovariate(0.1) for _ in range(rng.randint(1, 60))]
        s = summarize(xs)
        assert s["p50"] <= s["p95"] <= s["p99"] <= s["max"] == round(max(xs), 3)


def test_nearest_rank_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        nearest_rank([], 50)
    with pytest.raises(ValueError):
        nearest_rank([1.0], 0)
    assert summarize([], errors=2) == {"count": 2, "errors": 2, "p50": None, "p95": None, "p99": None,
                                       "max": None}


def test_phase_of_relative_to_fault_windows() -> None:
    fs = [fault(10.0, 15.0), fault(20.0, None, "f2")]
    assert [phase_of(t, fs) for t in (5.0, 10.0, 15.0, 17.0, 25.0)] == [
        "before", "during", "during", "after", "during"]
    assert phase_of(5.0, []) == "before"


def test_latency_table_by_phase_and_op_counts_errors_separately() -> None:
    def op(i: int, f: str, t: float, lat: float, type_: str) -> list[Event]:
        return [Event(t, "invoke", "client-0", f, key="k", op_id=i),
                Event(t + lat, type_, "client-0", f, key="k", value=1, op_id=i)]

    events = [*op(1, "read", 1.0, 0.002, "ok"), *op(2, "read", 2.0, 0.004, "ok"),
              *op(3, "read", 11.0, 1.0, "info"), *op(4, "increment", 12.0, 0.010, "ok"),
              *op(5, "read", 21.0, 0.003, "ok"),
              Event(0.5, "invoke", "client-1", "read", key="k", op_id=6)]  # never completed: left out
    value = {"id": "f1", "kind": "kill", "target": "node-1", "params": {}}
    events += [Event(10.0, "nemesis", "nemesis", "start", value=value),
               Event(15.0, "nemesis", "nemesis", "stop", value=value)]
    t = latency_table(History(sorted(events, key=lambda e: e.t)))
    assert t["before"]["read"] == {"count": 2, "errors": 0, "p50": 2.0, "p95": 4.0, "p99": 4.0, "max": 4.0}
    assert t["during"]["read"] == {"count": 1, "errors": 1, "p50": None, "p95": None, "p99": None, "max": None}
    assert t["during"]["increment"]["p99"] == pytest.approx(10.0)
    assert t["after"]["read"]["count"] == 1
    assert t["all"]["*"]["count"] == 5 and t["all"]["*"]["errors"] == 1
    assert t["all"]["*"]["max"] == pytest.approx(10.0)
    assert not any(math.isnan(v) for ph in t.values() for st in ph.values() for v in st.values()
                   if isinstance(v, float))


def test_throughput_counts_ok_workload_ops_and_ignores_the_probe() -> None:
    def op(i: int, process: str, f: str, t: float, type_: str) -> list[Event]:
        return [Event(t, "invoke", process, f, key="k", op_id=i), Event(t + 0.5, type_, process, f, key="k", op_id=i)]

    events = [*op(1, "client-0", "read", 0.0, "ok"), *op(2, "client-0", "increment", 0.5, "ok"),
              *op(3, "client-1", "read", 1.0, "fail"), *op(4, "client-1", "read", 1.5, "ok"),
              *op(5, "probe-0", "probe", 9.0, "ok")]
    m = measure(History(sorted(events, key=lambda e: e.t)))
    assert m.throughput_ops_s == pytest.approx(3 / 2.0)  # 3 ok ops between 0.0 and 2.0
    assert measure(History(events=[])).throughput_ops_s is None


@pytest.mark.parametrize("seed", range(10))
def test_a_partial_outage_is_bracketed_by_the_down_keys_own_probes(seed: int) -> None:
    """One node of three down on [a, b): only its keys' probes fail, so the end of the outage lies
    between the last bad probe and the next probe *of a down key*, not of any key."""
    rng = random.Random(seed)
    a = 10.0 + rng.random()
    b = a + rng.uniform(0.3, 3.0)
    keys = [f"k{i}" for i in range(12)]
    down = set(rng.sample(keys, 4))
    samples = []
    for i in range(600):
        t, key = i * 0.05, keys[i % len(keys)]
        samples.append(ProbeSample(t, not (a <= t < b and key in down), key=key))
    m = one(samples, fault(a, a + 0.1))
    gaps = [y.t - x.t for x, y in zip([s for s in samples if s.key in down], [s for s in samples if s.key in down][1:],
                                      strict=False)]
    assert abs(m.rto_s - (b - a)) <= max(gaps) / 2 + 0.05 / 2
