"""The harness's own scheduling lag, measured by a timer thread, for runs whose load comes from
elsewhere (locust processes) and so has no open-loop scheduler of ours to be late.

Why: a load scenario on a starved machine failed its *before* phase (throughput 74.6 < 135 req/s,
p99 1.4 s) with no fault at all — the generator and the harness did not get the CPU. The probe
workload records its lateness itself (``Workload._watch_lag``); a load run records this instead: every
``tick_s`` a timer's overshoot (how late the kernel let this process run), and every ``sample_s`` the
worst of them with the 1-minute load average, as the same ``harness-lag`` samples, so
``harness.checkers.measure.starvation`` judges both alike (docs/definitions.md).

A timer thread that sleeps is woken promptly even on a crowded machine (the scheduler favours
sleepers), while a busy generator waits in the run queue: under two CPU burners at load 50 the timer
lagged 248 ms at worst while locust reached 107 of 150 req/s. So the processes that do the work
(``pids``: the locust master and workers) are watched too, by the kernel's own counter: the time
their threads spent runnable but not running (``/proc/<pid>/task/*/schedstat``, run_delay) during
each sample interval, the worst process's in ``runq_ms``. Waiting half of a 500 ms interval for a CPU
is the harness lagging by that much."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from harness.history import Recorder


class LagWatch:
    """``with LagWatch(recorder): ...`` records ``harness-lag`` samples while the block runs."""

    def __init__(self, recorder: Recorder, tick_s: float = 0.1, sample_s: float = 0.5,
                 source: str = "timer", pids: Callable[[], list[int]] | None = None) -> None:
        if not (0 < tick_s <= sample_s):
            raise ValueError(f"LagWatch needs 0 < tick_s <= sample_s, got tick_s={tick_s}, sample_s={sample_s}")
        self.recorder = recorder
        self.tick_s = tick_s
        self.sample_s = sample_s
        self.source = source
        self.pids = pids
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
        delays = self._run_delays()
        while True:
            t0 = time.monotonic()
            if self._stop.wait(self.tick_s):  # the timer whose overshoot is the lag
                return
            worst = max(worst, time.monotonic() - t0 - self.tick_s)
            if time.monotonic() - last >= self.sample_s:
                last = time.monotonic()
                timer_ms = round(max(0.0, worst) * 1000, 1)
                now = self._run_delays()
                runq_ms = round(max((now[p] - delays[p] for p in now if p in delays), default=0.0) / 1e6, 1)
                delays = now
                ms = max(timer_ms, runq_ms)
                self.worst_ms = max(self.worst_ms, ms)
                value = {f"{self.source}_ms": timer_ms, "lag_ms": ms, "load1": round(os.getloadavg()[0], 2)}
                if self.pids is not None:
                    value["runq_ms"] = runq_ms
                self.recorder.sample("harness-lag", value, process="harness")
                worst = 0.0

    def _run_delays(self) -> dict[int, int]:
        """pid -> nanoseconds its threads have spent runnable but waiting for a CPU (kernel schedstat)."""
        out: dict[int, int] = {}
        for pid in self.pids() if self.pids is not None else []:
            total = 0
            try:
                for task in Path(f"/proc/{pid}/task").iterdir():
                    total += int((task / "schedstat").read_text().split()[1])
            except (OSError, ValueError, IndexError):
                continue  # gone, or no schedstat on this kernel
            out[pid] = total
        return out
