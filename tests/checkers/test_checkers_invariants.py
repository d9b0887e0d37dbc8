"""Invariants L, stale reads, M, O, D on recorded-style histories (tests/data/histories) and on small
hand-built ones for the edges. Each checker is shown passing, failing, and unknown."""

from __future__ import annotations

from functools import cache

import pytest

from harness.checkers import (
    Verdict,
    monotonic_reads,
    no_lost_writes,
    reads_see_acknowledged,
    reliable_calls_once,
    single_ownership,
)
from harness.history import History
from tests.support.histories import make_histories as gen
from tests.support.paths import DATA

VICTIM_KEYS = {"ctr-01", "ctr-04", "ctr-07"}  # node-1's counter keys in the 9-key histories


@cache
def recorded(name: str) -> History:
    return History.load(DATA / "histories" / f"{name}.jsonl")


def builder():
    return gen().Builder(0)


# ---- L: no lost writes ---------------------------------------------------------------------------------
def test_no_lost_writes_passes_on_a_recovered_kill() -> None:
    c = no_lost_writes()(recorded("kill_node_recovers"))
    assert c.verdict is Verdict.PASS, c.detail
    assert c.data["keys"] == 16 and not c.data["lost"]


def test_no_lost_writes_fails_on_ack_before_persist_naming_the_keys_and_amounts() -> None:
    c = no_lost_writes()(recorded("lost_writes"))
    assert c.verdict is Verdict.FAIL
    assert {r["key"] for r in c.data["lost"]} == VICTIM_KEYS
    first = c.data["lost"][0]
    assert first["missing"] == first["acked"] - first["final"] > 0
    assert f"key {first['key']}: final {first['final']} < acknowledged {first['acked']}" in c.detail


def test_no_lost_writes_fails_when_writes_of_a_split_brain_owner_vanish() -> None:
    c = no_lost_writes()(recorded("split_brain"))
    assert c.verdict is Verdict.FAIL
    assert {r["key"] for r in c.data["lost"]} <= VICTIM_KEYS


def test_no_lost_writes_is_unknown_without_final_reads() -> None:
    c = no_lost_writes()(recorded("outage_never_recovers"))
    assert c.verdict is Verdict.UNKNOWN
    assert "16 of 16 keys have no final read" in c.detail


def test_no_lost_writes_is_unknown_without_increments() -> None:
    c = no_lost_writes()(recorded("wallet_dedup_ok"))
    assert c.verdict is Verdict.UNKNOWN and "no increments" in c.detail


def _counter(*incs: tuple[str, int], final: int | None) -> History:
    """Sequential increments (type, amount) on key k, then a final read returning ``final``."""
    b = builder()
    t = 0.0
    for type_, amount in incs:
        b.op("client-0", "increment", "k", amount, t, 0.01, type_, result=None)
        t += 0.1
    if final is not None:
        b.op("client-0", "final-read", "k", None, t + 1, 0.01, "ok", result=final)
    return b.history()


@pytest.mark.parametrize(
    ("incs", "final", "verdict"),
    [
        ([("ok", 2), ("ok", 3)], 5, Verdict.PASS),
        ([("ok", 2), ("info", 3)], 2, Verdict.PASS),  # the indeterminate increment did not happen
        ([("ok", 2), ("info", 3)], 5, Verdict.PASS),  # ... or it did
        ([("ok", 2), ("fail", 3)], 2, Verdict.PASS),
        ([("ok", 2), ("fail", 3)], 5, Verdict.FAIL),  # a failed increment cannot have happened
        ([("ok", 2), ("ok", 3)], 4, Verdict.FAIL),  # lost 1
        ([("ok", 2), ("info", 3)], 6, Verdict.FAIL),  # more than acked + indeterminate
        ([("ok", 2)], None, Verdict.UNKNOWN),
    ],
)
def test_no_lost_writes_bounds(incs: list[tuple[str, int]], final: int | None, verdict: Verdict) -> None:
    c = no_lost_writes()(_counter(*incs, final=final))
    assert c.verdict is verdict, c.detail


def test_no_lost_writes_phantom_detail_names_the_excess() -> None:
    c = no_lost_writes()(_counter(("ok", 2), ("info", 3), final=6))
    assert "key k: final 6 > acknowledged 2 + indeterminate 3 (excess 1)" in c.detail


# ---- reads see acknowledged increments -----------------------------------------------------------------
def test_reads_see_acknowledged_passes_on_a_recovered_kill() -> None:
    c = reads_see_acknowledged()(recorded("kill_node_recovers"))
    assert c.verdict is Verdict.PASS, c.detail
    assert c.data["reads_checked"] > 100


@pytest.mark.parametrize("name", ["lost_writes", "stale_reads", "split_brain"])
def test_reads_see_acknowledged_fails_on_stale_reads(name: str) -> None:
    c = reads_see_acknowledged()(recorded(name))
    assert c.verdict is Verdict.FAIL
    assert {s["key"] for s in c.data["stale"]} <= VICTIM_KEYS
    s = c.data["stale"][0]
    assert s["read"] < s["acked"]
    assert f"read {s['read']} but {s['acked']} was acknowledged before it began" in c.detail


def test_reads_see_acknowledged_counts_only_increments_completed_before_the_read_began() -> None:
    b = builder()
    b.op("client-0", "increment", "k", 5, 0.0, 1.0, "ok")  # completes at 1.0
    b.op("client-1", "read", "k", None, 0.5, 0.01, "ok", result=0)  # concurrent: may miss it
    b.op("client-1", "read", "k", None, 1.5, 0.01, "ok", result=5)
    assert reads_see_acknowledged()(b.history()).verdict is Verdict.PASS
    b.op("client-1", "read", "k", None, 2.0, 0.01, "ok", result=4)
    c = reads_see_acknowledged()(b.history())
    assert c.verdict is Verdict.FAIL and c.data["stale"][0]["missing"] == 1


def test_reads_see_acknowledged_is_unknown_with_nothing_to_compare() -> None:
    b = builder()
    b.op("client-1", "read", "k", None, 0.0, 0.01, "ok", result=0)
    assert reads_see_acknowledged()(b.history()).verdict is Verdict.UNKNOWN


# ---- M: monotonic reads --------------------------------------------------------------------------------
def test_monotonic_reads_passes_on_a_recovered_kill() -> None:
    c = monotonic_reads()(recorded("kill_node_recovers"))
    assert c.verdict is Verdict.PASS, c.detail


def test_monotonic_reads_fails_when_a_resumed_node_serves_its_frozen_cache() -> None:
    c = monotonic_reads()(recorded("stale_reads"))
    assert c.verdict is Verdict.FAIL
    v = c.data["violations"][0]
    assert v["read"] < v["earlier_read"] and v["t"] >= 14.0  # after SIGCONT at 14 s
    assert f"read {v['read']} after op {v['earlier_op_id']} had read {v['earlier_read']}" in c.detail


def test_monotonic_reads_allows_concurrent_reads_to_disagree() -> None:
    b = builder()
    b.op("client-0", "read", "k", None, 0.0, 1.0, "ok", result=7)
    b.op("client-1", "read", "k", None, 0.5, 0.1, "ok", result=3)  # overlaps the first: no order
    b.op("client-1", "read", "k", None, 2.0, 0.1, "ok", result=7)
    assert monotonic_reads()(b.history()).verdict is Verdict.PASS
    b.op("client-2", "probe", "k", None, 3.0, 0.1, "ok", result=6)  # the probe is a read too
    c = monotonic_reads()(b.history())
    assert c.verdict is Verdict.FAIL and c.data["violations"][0]["earlier_read"] == 7


def test_monotonic_reads_is_unknown_with_a_single_read_per_key() -> None:
    b = builder()
    b.op("client-0", "read", "a", None, 0.0, 0.1, "ok", result=1)
    b.op("client-0", "read", "b", None, 1.0, 0.1, "ok", result=1)
    assert monotonic_reads()(b.history()).verdict is Verdict.UNKNOWN


# ---- O: single ownership ---------------------------------------------------------------------------------
def test_single_ownership_passes_when_failover_bumps_the_epoch() -> None:
    c = single_ownership()(recorded("kill_node_recovers"))
    assert c.verdict is Verdict.PASS, c.detail


@pytest.mark.parametrize("name", ["stale_reads", "split_brain"])
def test_single_ownership_fails_when_a_superseded_owner_answers(name: str) -> None:
    c = single_ownership()(recorded(name))
    assert c.verdict is Verdict.FAIL
    s = c.data["stale"][0]
    assert (s["node"], s["newer_node"]) in {("node-1", "node-0"), ("node-1", "node-2")}
    assert s["epoch"] + 1 == s["newer_epoch"]
    assert f"served by node-1 under epoch {s['epoch']}" in c.detail


def test_single_ownership_is_unknown_when_the_stack_exposes_no_epochs() -> None:
    c = single_ownership()(recorded("kill_node_no_epochs"))
    assert c.verdict is Verdict.UNKNOWN
    assert "no ownership epochs: no ok op carried one" in c.detail and c.data["declared"] is None


def test_single_ownership_fails_on_two_nodes_under_one_epoch() -> None:
    b = builder()
    b.op("client-0", "read", "k", None, 0.0, 0.1, "ok", result=1, extra={"node": "node-1", "epoch": 7})
    b.op("client-1", "read", "k", None, 0.05, 0.1, "ok", result=1, extra={"node": "node-2", "epoch": 7})
    c = single_ownership()(b.history())
    assert c.verdict is Verdict.FAIL
    assert c.data["split"] == [{"key": "k", "epoch": 7, "nodes": ["node-1", "node-2"]}]


def test_single_ownership_allows_overlapping_ops_across_a_handover() -> None:
    b = builder()
    b.op("client-0", "read", "k", None, 0.0, 1.0, "ok", result=1, extra={"node": "node-1", "epoch": 7})
    b.op("client-1", "read", "k", None, 0.2, 0.1, "ok", result=1, extra={"node": "node-2", "epoch": 8})
    assert single_ownership()(b.history()).verdict is Verdict.PASS  # old op invoked before the new one ended


# ---- D: reliable calls once ---------------------------------------------------------------------------------
def test_reliable_calls_once_passes_when_retries_are_deduplicated() -> None:
    c = reliable_calls_once()(recorded("wallet_dedup_ok"))
    assert c.verdict is Verdict.PASS, c.detail
    assert c.data["retried_calls"] > 10


def test_reliable_calls_once_fails_without_dedup() -> None:
    c = reliable_calls_once()(recorded("wallet_no_dedup"))
    assert c.verdict is Verdict.FAIL
    assert c.data["out_of_bounds"] and c.data["disagreeing"]
    b = c.data["out_of_bounds"][0]
    assert b["final"] > b["acked"] + b["info"]
    assert "(a call applied twice?)" in c.detail


def test_reliable_calls_once_is_unknown_without_deposits() -> None:
    assert reliable_calls_once()(recorded("kill_node_recovers")).verdict is Verdict.UNKNOWN


def _wallet(attempts: list[tuple[str, dict | None]], final: int | None) -> History:
    b = builder()
    for i, (type_, result) in enumerate(attempts):
        b.op("client-0", "deposit", "w", {"amount": 10, "call_id": "c1"}, i * 1.0, 0.01, type_, result=result)
    if final is not None:
        b.op("client-0", "final-balance", "w", None, 9.0, 0.01, "ok", result=final)
    return b.history()


@pytest.mark.parametrize(
    ("attempts", "final", "verdict"),
    [
        ([("info", None), ("ok", {"balance": 10, "status": "SUCCESS"})], 10, Verdict.PASS),
        ([("info", None), ("ok", {"balance": 10, "status": "SUCCESS"})], 20, Verdict.FAIL),  # applied twice
        ([("ok", {"balance": 10, "status": "SUCCESS"})], 0, Verdict.FAIL),  # acknowledged, then lost
        ([("info", None)], 0, Verdict.PASS),
        ([("info", None)], 10, Verdict.PASS),
        ([("ok", {"balance": 0, "status": "PENDING"})], 10, Verdict.PASS),  # pending = indeterminate
        ([("fail", None)], 10, Verdict.FAIL),
        ([("ok", {"balance": 10, "status": "SUCCESS"}), ("ok", {"balance": 20, "status": "SUCCESS"})], 10,
         Verdict.FAIL),  # the retry was answered differently
        ([("ok", {"balance": 10, "status": "SUCCESS"})], None, Verdict.UNKNOWN),
    ],
)
def test_reliable_calls_once_bounds(attempts: list[tuple[str, dict | None]], final: int | None,
                                    verdict: Verdict) -> None:
    c = reliable_calls_once()(_wallet(attempts, final))
    assert c.verdict is verdict, c.detail


def test_reliable_calls_once_counts_deposits_in_flight_at_each_fault() -> None:
    """Whether D decided anything about a fault: the deposits in flight when it began, in data and detail."""
    b = builder()
    b.op("wallet-0", "deposit", "w", {"amount": 10, "call_id": "c1"}, 1.0, 2.0, "info")  # cut by the kill
    b.op("wallet-0", "deposit", "w", {"amount": 10, "call_id": "c1"}, 5.0, 0.01, "ok",
         result={"balance": 10, "status": "SUCCESS"})  # re-sent after the unknown outcome
    b.op("wallet-0", "deposit", "w", {"amount": 5, "call_id": "c2"}, 1.5, 0.01, "ok",
         result={"balance": 15, "status": "SUCCESS"})
    b.fault("kill", "node-0", 2.0, 4.0)
    b.fault("kill", "node-1", 6.0, 7.0)
    b.op("final", "final-balance", "w", None, 9.0, 0.01, "ok", result=15)
    c = reliable_calls_once()(b.history())
    assert c.verdict is Verdict.PASS, c.detail
    assert list(c.data["in_flight_at_faults"].values()) == [1, 0]
    assert c.data["retried_calls"] == 1 and c.data["indeterminate_calls"] == 0
    assert "deposits in flight at each fault: 1, 0" in c.detail


def test_reliable_calls_once_is_unknown_when_every_deposit_failed() -> None:
    """Real Goverse answered 404 to every deposit on the reference stack's HTTP route: 0 <= 0 <= 0
    holds, yet nothing shows a reliable call applied once, so the verdict is unknown, never pass."""
    b = builder()
    for i in range(33):
        b.op("wallet-0", "deposit", f"w{i % 4}", {"amount": 3, "call_id": f"c{i}"}, i * 0.1, 0.01, "fail",
             error="None: 404 page not found")
    for w in range(4):
        b.op("final", "final-balance", f"w{w}", None, 9.0, 0.01, "ok", result=0)
    c = reliable_calls_once()(b.history())
    assert c.verdict is Verdict.UNKNOWN, c.detail
    assert "all 33 deposits failed" in c.detail and "404 page not found" in c.detail
    # one deposit that did go through makes it decidable again
    b.op("wallet-0", "deposit", "w0", {"amount": 3, "call_id": "ok1"}, 5.0, 0.01, "ok",
         result={"balance": 3, "status": "SUCCESS"})
    assert reliable_calls_once()(b.history()).verdict is Verdict.FAIL  # w0's final 0 < acknowledged 3


def test_int64_values_rendered_as_strings_are_understood() -> None:
    # protobuf's JSON mapping renders int64 as "12"; epochs read from etcd are strings too
    b = builder()
    b.op("client-0", "increment", "k", 5, 0.0, 0.01, "ok", result="5", extra={"node": "node-1", "epoch": "7"})
    b.op("client-0", "final-read", "k", None, 1.0, 0.01, "ok", result="4", extra={"node": "node-2", "epoch": "6"})
    assert no_lost_writes()(b.history()).verdict is Verdict.FAIL
    c = single_ownership()(b.history())
    assert c.verdict is Verdict.FAIL and c.data["stale"][0]["newer_epoch"] == 7
