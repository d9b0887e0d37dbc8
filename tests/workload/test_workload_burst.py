"""Workload aimed at the fault: the nemesis fires the workload's burst right before each injection, so
writes are in flight at t_inject (issue 15). Real HTTP against the stand-in gate, which holds every
call 0.5 s; the injector only records (no platform)."""

from __future__ import annotations

import time

from harness.faults.nemesis import Injected, Nemesis
from harness.faults.spec import Fault, Kill
from harness.history import Recorder
from harness.workload.runner import Workload, WorkloadSpec
from harness.workload.standin import Outage, StandInGate


class RecordingInjector:
    def inject(self, fault: Fault) -> Injected:
        return Injected(["node-0"], lambda: {"healed": True})


def _in_flight_at(rec: Recorder, t: float, f: str = "increment") -> list[str]:
    return [o.key or "" for o in rec.history().ops(f) if o.t_invoke <= t < o.t_complete]


def _run(burst: int) -> tuple[Recorder, float, list[str]]:
    t0 = time.monotonic()
    rec = Recorder()
    spec = WorkloadSpec(probe_hz=0, counter_rate=2.0, counter_keys=8, read_ratio=0.0, burst_at_inject=burst,
                        burst_keys=2, burst_lead_ms=20.0, timeout=5.0)
    with StandInGate(lambda: time.monotonic() - t0, [Outage(0, 600, "slow", delay_s=0.5)]) as gate:
        wl = Workload(rec, {"g": gate.url}, spec, run_tag="burst")
        nem = Nemesis(RecordingInjector(), rec)
        nem.before_inject.append(wl.burst)
        with wl.running():
            fid, _ = nem.inject(Kill("node-0"))
            nem.heal(fid)
    (window,) = rec.history().faults()
    return rec, window.t_start, wl.counter_keys[:2]


def test_a_burst_is_in_flight_at_t_inject() -> None:
    rec, t_inject, hot = _run(burst=24)
    flying = _in_flight_at(rec, t_inject)
    assert len(flying) >= 24, flying
    assert set(hot) <= set(flying)  # the burst went to the hot keys
    assert sum(1 for k in flying if k in hot) >= 24
    assert any(e.type == "log" and "burst" in f"{e.f} {e.value}" for e in rec.history().events)


def test_without_a_burst_almost_nothing_is_in_flight() -> None:
    rec, t_inject, _ = _run(burst=0)
    assert len(_in_flight_at(rec, t_inject)) <= 2  # 2 writes/s, each held 0.5 s
