"""Timing assertions that know when the test itself was starved.

Why: a window test asserts that the nemesis healed on schedule (±50 ms). On a 2-core machine under two
CPU burners (load 25) the heal's wake-up came 64-73 ms late although the harness scheduled it right:
the process simply did not get the CPU. The product answers that with ``unknown`` (harness starved); a
test answers it the same way, by measuring: ``lag_watched()`` runs the harness's own ``LagWatch`` (a
10 ms timer's overshoot and the run-queue delay of this process's threads, from the kernel's
schedstat) around the timed block, and ``assert_on_time`` lets a deviation exceed the tolerance only by
as much lag as was measured. An early heal is never excused, nor lateness with no lag to explain it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from harness.history import Recorder
from harness.workload.lagwatch import LagWatch


@contextlib.contextmanager
def lag_watched() -> Iterator[LagWatch]:
    """The worst scheduling lag of this process while the block runs (``.worst_ms``)."""
    with LagWatch(Recorder(), tick_s=0.01, sample_s=0.02, pids=lambda: [os.getpid()]) as watch:
        yield watch


def assert_on_time(late_s: float, tolerance_s: float, watch: LagWatch, what: str) -> None:
    """``late_s`` (actual − scheduled; negative = early) within ±``tolerance_s``, the late side widened
    by the lag ``watch`` measured."""
    lag_s = watch.worst_ms / 1000
    assert late_s >= -tolerance_s, f"{what}: {-late_s:.3f} s early (tolerance {tolerance_s} s)"
    assert late_s <= tolerance_s + lag_s, (
        f"{what}: {late_s:.3f} s late > {tolerance_s} s + the {lag_s:.3f} s this process was measurably starved")
