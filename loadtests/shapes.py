"""Load shapes for the Goverse locustfile: steady, step and spike, as schedules of offered rates.

Why rates, not user counts: what a Goverse operator means by "load" is requests per second offered to the
gates, and what our reports compare is offered vs achieved rate. Locust drives *users*; each of our users
runs at a fixed per-user rate (``constant_throughput(user_rate)``), so a schedule of rates becomes a
schedule of user counts (``users = round(rate / user_rate)``) and the offered rate is exactly
``users × user_rate``. A user can only keep its rate while a request takes less than ``1 / user_rate``
seconds; past that, achieved < offered — which is the knee the step shape looks for.

Why a module without locust imports: the harness imports the same schedule (by file path) to know which
rate was offered when, so the locust master and the report can never disagree about a phase's offered
rate. A shape is written as a compact spec string so it travels in one command-line option or env var::

    steady:rate=200                      # 200 req/s until stopped
    steady:rate=200,duration=30          # 200 req/s for 30 s, then the test ends
    step:start=100,step=100,steps=5,step_s=10
    spike:base=100,peak=400,before_s=10,spike_s=5,after_s=10
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class ShapeError(ValueError):
    """A shape spec that cannot be parsed or makes no sense (negative rate, zero-length step...)."""


@dataclass(frozen=True)
class Stage:
    """``rate`` req/s offered from ``start_s`` to ``end_s`` (seconds since the shape started);
    ``end_s`` is ``None`` for the last stage of an open-ended shape (it runs until stopped)."""

    name: str
    start_s: float
    end_s: float | None
    rate: float


@dataclass(frozen=True)
class Schedule:
    """An ordered list of stages; ``kind`` and ``params`` are what the spec said."""

    kind: str
    params: dict[str, float]
    stages: tuple[Stage, ...]

    @property
    def duration_s(self) -> float | None:
        """Total length, ``None`` when the last stage is open-ended."""
        return self.stages[-1].end_s if self.stages else 0.0

    def stage_at(self, t: float) -> Stage | None:
        """The stage in force at ``t`` seconds after the start, ``None`` once the schedule is over."""
        for st in self.stages:
            if t >= st.start_s and (st.end_s is None or t < st.end_s):
                return st
        return None

    def rate_at(self, t: float) -> float | None:
        st = self.stage_at(t)
        return None if st is None else st.rate

    def spec(self) -> str:
        """The spec string this schedule was parsed from (canonical form)."""
        args = ",".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        return f"{self.kind}:{args}" if args else self.kind


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def users_for(rate: float, user_rate: float) -> int:
    """Users needed to offer ``rate`` req/s at ``user_rate`` req/s each (at least 1 for a rate > 0)."""
    if user_rate <= 0:
        raise ShapeError(f"user_rate must be > 0, got {user_rate}")
    if rate <= 0:
        return 0
    return max(1, round(rate / user_rate))


def offered_rate(rate: float, user_rate: float) -> float:
    """What is actually offered for a target ``rate``: whole users times the per-user rate."""
    return users_for(rate, user_rate) * user_rate


def steady(rate: float, duration: float | None = None) -> Schedule:
    _check_rate(rate)
    if duration is not None and duration <= 0:
        raise ShapeError(f"steady: duration must be > 0, got {duration}")
    params = {"rate": rate} | ({} if duration is None else {"duration": duration})
    return Schedule("steady", params, (Stage("steady", 0.0, duration, rate),))


def step(start: float, step: float, steps: int, step_s: float) -> Schedule:
    """``steps`` stages of ``step_s`` seconds each: start, start+step, start+2·step, …"""
    _check_rate(start)
    if step <= 0 or steps < 1 or step_s <= 0:
        raise ShapeError(f"step: need step > 0, steps >= 1, step_s > 0 (got {step}, {steps}, {step_s})")
    stages = tuple(Stage(f"step-{i + 1}", i * step_s, (i + 1) * step_s, start + i * step)
                   for i in range(int(steps)))
    return Schedule("step", {"start": start, "step": step, "steps": int(steps), "step_s": step_s}, stages)


def spike(base: float, peak: float, before_s: float, spike_s: float, after_s: float) -> Schedule:
    _check_rate(base)
    _check_rate(peak)
    if min(before_s, spike_s, after_s) <= 0:
        raise ShapeError("spike: before_s, spike_s and after_s must be > 0")
    t1, t2 = before_s, before_s + spike_s
    stages = (Stage("before-spike", 0.0, t1, base), Stage("spike", t1, t2, peak),
              Stage("after-spike", t2, t2 + after_s, base))
    return Schedule("spike", {"base": base, "peak": peak, "before_s": before_s, "spike_s": spike_s,
                              "after_s": after_s}, stages)


def _check_rate(rate: float) -> None:
    if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
        raise ShapeError(f"a rate must be a positive number of requests per second, got {rate!r}")


_BUILDERS = {
    "steady": (steady, {"rate"}, {"duration"}),
    "step": (step, {"start", "step", "steps", "step_s"}, set()),
    "spike": (spike, {"base", "peak", "before_s", "spike_s", "after_s"}, set()),
}


def parse(spec: str) -> Schedule:
    """``"step:start=100,step=100,steps=5,step_s=10"`` → :class:`Schedule`; errors name the bad part."""
    kind, _, rest = spec.strip().partition(":")
    if kind not in _BUILDERS:
        raise ShapeError(f"unknown shape {kind!r} in {spec!r}; known: {', '.join(_BUILDERS)}")
    fn, required, optional = _BUILDERS[kind]
    args: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        name, eq, value = part.partition("=")
        if not eq:
            raise ShapeError(f"{spec!r}: expected name=value, got {part!r}")
        if name not in required | optional:
            raise ShapeError(f"{spec!r}: unknown parameter {name!r} for {kind}; "
                             f"takes {', '.join(sorted(required | optional))}")
        try:
            args[name] = float(value)
        except ValueError:
            raise ShapeError(f"{spec!r}: {name}={value!r} is not a number") from None
    missing = required - args.keys()
    if missing:
        raise ShapeError(f"{spec!r}: missing {', '.join(sorted(missing))}")
    if "steps" in args:
        args["steps"] = int(args["steps"])
    return fn(**args)  # type: ignore[operator]
