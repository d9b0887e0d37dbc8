"""The harness's own scheduling lag, measured by a timer thread, for runs whose load comes from
elsewhere (locust processes) and so has no open-loop scheduler of ours to be late.

Why: a load scenario on a starved machine failed its *before* phase (throughput 74.6 < 135 req/s,
p99 1.4 s) with no fault at all — the generator and the harness did not get the CPU. The probe
workload records its lateness itself (``Workload._watch_lag``); a load run records this instead: every
``tick_s`` a timer's overshoot (how late the kernel let this process run), and every ``sample_s`` the
worst of them with the 1-minute load average, as the same ``harness-lag`` samples, so
``harness.checkers.measure.starvation`` judges both alike (docs/definitions.md)."""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType

from harness.history import Recorder


class LagWatch:
    """``with LagWatch(recorder): ...`` records ``harness-lag`` samples while the block runs."""

    def __init__(self, recorder: Recorder, tick_s: float = 0.1, sample_s: float = 0.5,
                 source: str = "timer") -> None:
        if not (0 < tick_s <= sample_s):
            raise ValueError(f"LagWatch needs 0 < tick_s <= sample_s, got tick_s={tick_s}, sample_s={sample_s}")
        self.recorder = recorder
        self.tick_s = tick_s
        self.sample_s = sample_s
        self.source = source
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.worst_ms = 0.0

    def __enter__(self) -> LagWatch:
        self._thread = threading.Thread(target=self._run, name="lag-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        worst = 0.0
        last = time.monotonic()
        while True:
            t0 = time.monotonic()
            if self._stop.wait(self.tick_s):  # the timer whose overshoot is the lag
                return
            worst = max(worst, time.monotonic() - t0 - self.tick_s)
            if time.monotonic() - last >= self.sample_s:
                last = time.monotonic()
                ms = round(max(0.0, worst) * 1000, 1)
                self.worst_ms = max(self.worst_ms, ms)
                self.recorder.sample("harness-lag", {f"{self.source}_ms": ms, "lag_ms": ms,
                                                     "load1": round(os.getloadavg()[0], 2)}, process="harness")
                worst = 0.0
