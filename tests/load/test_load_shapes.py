"""loadtests/shapes.py: the schedules of offered rates the locust master follows and the harness reads."""

from __future__ import annotations

import pytest

from harness.load.driver import LoadProfile, LoadRun, profile_from_env, shapes_module

sh = shapes_module()


def test_steady_open_ended_and_finite() -> None:
    s = sh.parse("steady:rate=200")
    assert s.duration_s is None and s.rate_at(0) == 200 and s.rate_at(1e6) == 200
    f = sh.parse("steady:rate=200,duration=30")
    assert f.duration_s == 30 and f.rate_at(29.999) == 200 and f.rate_at(30) is None


def test_step_stages_are_contiguous_and_rise() -> None:
    s = sh.parse("step:start=100,step=50,steps=4,step_s=10")
    assert [(st.name, st.start_s, st.end_s, st.rate) for st in s.stages] == [
        ("step-1", 0, 10, 100), ("step-2", 10, 20, 150), ("step-3", 20, 30, 200), ("step-4", 30, 40, 250)]
    assert s.rate_at(9.99) == 100 and s.rate_at(10) == 150 and s.rate_at(40) is None
    assert sh.parse(s.spec()) == s  # the canonical spec round-trips


def test_spike() -> None:
    s = sh.parse("spike:base=100,peak=400,before_s=5,spike_s=2,after_s=5")
    assert [st.rate for st in s.stages] == [100, 400, 100]
    assert s.rate_at(5.5) == 400 and s.rate_at(7) == 100 and s.duration_s == 12


@pytest.mark.parametrize("spec,match", [
    ("ramp:rate=1", "unknown shape"),
    ("steady:rate=-5", "positive"),
    ("steady:rate=abc", "not a number"),
    ("steady", "missing rate"),
    ("steady:rate=1,burst=2", "unknown parameter 'burst'"),
    ("step:start=1,step=0,steps=2,step_s=1", "step > 0"),
    ("spike:base=1,peak=2,before_s=0,spike_s=1,after_s=1", "must be > 0"),
    ("steady:rate", "name=value"),
])
def test_bad_specs_name_the_problem(spec: str, match: str) -> None:
    with pytest.raises(sh.ShapeError, match=match):
        sh.parse(spec)


def test_users_and_offered_rate() -> None:
    assert sh.users_for(150, 5) == 30 and sh.offered_rate(150, 5) == 150
    assert sh.users_for(1, 5) == 1 and sh.offered_rate(1, 5) == 5  # at least one user: offers 5, not 1
    assert sh.users_for(0, 5) == 0
    with pytest.raises(sh.ShapeError):
        sh.users_for(10, 0)


def test_offered_between_integrates_the_schedule() -> None:
    run = LoadRun.__new__(LoadRun)  # no generator needed for the arithmetic
    run.schedule, run.user_rate, run.t0 = sh.parse("step:start=100,step=100,steps=2,step_s=10"), 5.0, 50.0
    assert run.offered_between(50, 60) == pytest.approx(100)
    assert run.offered_between(55, 65) == pytest.approx(150)  # half of each step
    assert run.offered_between(65, 75) == pytest.approx(100)  # half step-2, half after the end (0)
    assert run.offered_between(80, 90) == pytest.approx(0)
    assert run.offered_between(10, 10) is None


def test_profiles_from_env() -> None:
    assert profile_from_env({}) == LoadProfile()
    p = profile_from_env({"GVH_LOAD_PROFILE": "release", "GVH_LOAD_SCALE": "0.5", "GVH_LOAD_RATE": "80",
                          "GVH_LOAD_WORKERS": "0", "GVH_LOAD_MIX": "increment:1"})
    assert p.name == "release" and p.steady_s == 30 and p.rate == 80 and p.workers == 0
    assert p.has_op("increment") and not p.has_op("deposit")
    assert LoadProfile().has_op("deposit")
    with pytest.raises(ValueError, match="GVH_LOAD_PROFILE"):
        profile_from_env({"GVH_LOAD_PROFILE": "huge"})
    with pytest.raises(ValueError, match="GVH_LOAD_SCALE"):
        profile_from_env({"GVH_LOAD_SCALE": "0"})
    # the step shape of every profile parses
    for prof in (LoadProfile(), profile_from_env({"GVH_LOAD_PROFILE": "release"})):
        assert len(sh.parse(prof.step_shape()).stages) == prof.steps
