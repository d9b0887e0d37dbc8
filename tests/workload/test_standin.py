"""The stand-in gate (ground truth for RTO accuracy): its truth function and its outage modes over
real HTTP with the workload's own client."""

from __future__ import annotations

import asyncio
import time

import pytest

from harness import wire
from harness.workload.gate_client import GateClient
from harness.workload.standin import Outage, StandInGate, bad_intervals, true_outage


def test_truth_of_fail_hang_slow_and_flapping() -> None:
    fail = true_outage([Outage(10, 12, "fail")], 10, 11, slo_s=1.0, stable_s=2.0)
    assert (fail.rto_s, fail.unavailability_s, fail.recovery_after_heal_s) == (2, 2, 1)
    hang = true_outage([Outage(10, 12.5, "hang")], 10, 11, slo_s=1.0, stable_s=2.0)
    assert (hang.rto_s, hang.unavailability_s) == (1.5, 1.5)  # calls in the last SLO second are in time
    quick = true_outage([Outage(10, 10.5, "slow", delay_s=0.5)], 10, 11, slo_s=1.0, stable_s=2.0)
    assert (quick.rto_s, quick.unavailability_s, quick.t_dip) == (0.0, 0.0, None)
    flap = true_outage([Outage(10, 10.5), Outage(11, 11.4), Outage(12.2, 12.5), Outage(20, 21)], 10, 11,
                       slo_s=1.0, stable_s=2.0)
    assert flap.rto_s == pytest.approx(2.5) and flap.unavailability_s == pytest.approx(1.2 + 1.0)
    assert bad_intervals([Outage(0, 2), Outage(1, 3)], 1.0) == [(0, 3)]
    with pytest.raises(ValueError, match="delay_s"):
        Outage(0, 1, "slow")


def test_modes_over_http() -> None:
    t0 = time.monotonic()

    def clock() -> float:
        return time.monotonic() - t0

    async def calls(url: str) -> list[tuple[str, float]]:
        out = []
        async with GateClient({"g": url}, timeout=5) as c:
            for key in ("down", "held", "slow", "fine"):
                s = time.monotonic()
                r = await c.call("g", "Counter", key, "Get", wire.new("counter.GetRequest"))
                out.append((r.type, time.monotonic() - s))
        return out

    with StandInGate(clock, [Outage(0, 60, "fail", keys=frozenset({"down"})),
                             Outage(0, clock() + 0.4, "hang", keys=frozenset({"held"})),
                             Outage(0, 60, "slow", delay_s=0.3, keys=frozenset({"slow"}))]) as gate:
        res = asyncio.run(calls(gate.url))
    assert [r[0] for r in res] == ["info", "ok", "ok", "ok"]
    assert res[1][1] >= 0.2 and res[2][1] >= 0.3  # held until the window ends; delayed by delay_s
