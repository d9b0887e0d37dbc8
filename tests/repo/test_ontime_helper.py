"""The starvation-aware timing assertion excuses lateness only by measured lag, never earliness."""

from __future__ import annotations

import pytest

from harness.history import Recorder
from harness.workload.lagwatch import LagWatch
from tests.support.ontime import assert_on_time


def watch_with(worst_ms: float) -> LagWatch:
    w = LagWatch(Recorder())
    w.worst_ms = worst_ms
    return w


def test_late_without_measured_lag_fails() -> None:
    with pytest.raises(AssertionError, match="late"):
        assert_on_time(0.2, 0.05, watch_with(0), "heal")


def test_late_by_no_more_than_the_measured_lag_passes() -> None:
    assert_on_time(0.2, 0.05, watch_with(160), "heal")
    with pytest.raises(AssertionError, match="measurably starved"):
        assert_on_time(0.3, 0.05, watch_with(160), "heal")


def test_early_is_never_excused() -> None:
    with pytest.raises(AssertionError, match="early"):
        assert_on_time(-0.1, 0.05, watch_with(10_000), "heal")
