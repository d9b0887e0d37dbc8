"""The per-key linearizability checker on hand-built histories (each edge shown passing, failing or
unknown) and on the recorded-style histories of tests/data/histories: the three drawn from a correct
cluster model pass, the three drawn from a buggy one fail on the victim's keys only."""

from __future__ import annotations

from typing import Any

import pytest

from harness.checkers import Verdict, monotonic_reads, no_lost_writes, reads_see_acknowledged
from harness.checkers.linearizable import linearizable_counters
from harness.history import History
from tests.support.histories import make_histories as gen
from tests.support.paths import DATA

VICTIM_KEYS = {"ctr-01", "ctr-04", "ctr-07"}  # node-1's counter keys in the recorded histories


class H:
    """A tiny history writer: ``inc``/``read`` with explicit intervals, on key ``k`` by default."""

    def __init__(self) -> None:
        self.b = gen().Builder(0)

    def inc(self, proc: str, amount: int, t0: float, t1: float, type_: str = "ok", result: Any = None,
            key: str = "k") -> int:
        err = None if type_ == "ok" else "CALL_TIMEOUT: deadline exceeded"
        return self.b.op(proc, "increment", key, amount, t0, t1 - t0, type_, result=result, error=err)

    def read(self, proc: str, result: Any, t0: float, t1: float, f: str = "read", type_: str = "ok",
             key: str = "k") -> int:
        return self.b.op(proc, f, key, None, t0, t1 - t0, type_, result=result)

    def history(self) -> History:
        return self.b.history()


def verdicts(h: History) -> dict[str, Verdict]:
    checks = [linearizable_counters(), no_lost_writes(), monotonic_reads(), reads_see_acknowledged()]
    return {(c := chk(h)).name: c.verdict for chk in checks}


def test_a_stale_read_after_another_clients_increment_passes_l_and_m_but_is_not_linearizable() -> None:
    h = H()
    h.inc("client-a", 1, 0.0, 0.1, result=1)
    h.inc("client-a", 2, 0.2, 0.3, result=3)
    stale = h.read("client-b", 1, 0.5, 0.6)  # b's only read: its values never go down
    h.read("client-b", 3, 0.7, 0.8)
    h.read("final", 3, 1.0, 1.1, f="final-read")
    hist = h.history()
    v = verdicts(hist)
    assert v["no_lost_writes"] is Verdict.PASS and v["monotonic_reads"] is Verdict.PASS
    c = linearizable_counters()(hist)
    assert c.verdict is Verdict.FAIL, c.detail
    [bad] = c.data["violations"]
    assert bad["key"] == "k" and bad["op_id"] == stale and bad["result"] == 1
    assert bad["bounds"] == [3, 3]  # by sums alone: both increments completed before the read began
    # the window: the increment that completed last before the stale read began, and the read itself
    assert [(w["f"], w["result"]) for w in bad["window"]] == [("increment", 3), ("read", 1)]
    assert "op 2" not in c.detail and f"op {stale} (client-b) read returned 1" in c.detail


def test_a_stale_read_that_every_sum_based_check_lets_through() -> None:
    """The increment that revealed the indeterminate one (it returned 3, not 1) is what makes the
    later read of 1 stale; L, M and 'reads see acknowledged' only sum amounts and all pass."""
    h = H()
    h.inc("client-x", 2, 0.0, 1.0, type_="info")
    h.inc("client-a", 1, 0.5, 0.6, result=3)
    h.read("client-b", 1, 1.2, 1.3)
    h.read("final", 3, 2.0, 2.1, f="final-read")
    hist = h.history()
    v = verdicts(hist)
    assert v == {"linearizable_counters": Verdict.FAIL, "no_lost_writes": Verdict.PASS,
                 "monotonic_reads": Verdict.PASS, "reads_see_acknowledged": Verdict.PASS}
    [bad] = linearizable_counters()(hist).data["violations"]
    assert bad["bounds"] is None and bad["possible_states"] == [3]  # found by the search, not by sums


def test_linearizable_only_if_an_indeterminate_increment_took_effect() -> None:
    h = H()
    h.inc("client-x", 5, 0.0, 1.0, type_="info")
    h.read("client-a", 0, 0.2, 0.3)  # not yet applied
    h.inc("client-a", 1, 1.5, 1.6, result=6)  # applied by now (after its timeout)
    h.read("final", 6, 2.0, 2.1, f="final-read")
    c = linearizable_counters()(h.history())
    assert c.verdict is Verdict.PASS, c.detail
    assert c.data["keys"] == 1 and c.data["states_explored"] >= 4


def test_an_indeterminate_increment_cannot_take_effect_before_it_was_invoked() -> None:
    h = H()
    h.read("client-a", 5, 0.2, 0.3)
    h.inc("client-x", 5, 0.5, 1.5, type_="info")
    c = linearizable_counters()(h.history())
    assert c.verdict is Verdict.FAIL, c.detail


def test_a_failed_increment_never_took_effect() -> None:
    h = H()
    h.inc("client-x", 5, 0.0, 0.1, type_="fail")
    h.read("client-a", 5, 0.2, 0.3)
    c = linearizable_counters()(h.history())
    assert c.verdict is Verdict.FAIL, c.detail
    assert c.data["violations"][0]["bounds"] == [0, 0]


def test_concurrent_ops_may_be_ordered_either_way_and_values_may_be_strings() -> None:
    """Two overlapping increments answered in the 'wrong' order are fine; int64 arrives as a string."""
    h = H()
    h.inc("client-a", 1, 0.0, 0.5, result="3")
    h.inc("client-b", 2, 0.1, 0.3, result="2")
    h.read("probe-0", "3", 0.6, 0.7, f="probe")
    c = linearizable_counters()(h.history())
    assert c.verdict is Verdict.PASS, c.detail


def test_hitting_the_bound_is_unknown_naming_the_key_and_the_bound() -> None:
    h = H()
    for i in range(12):  # twelve indeterminate increments by distinct even amounts and an odd read
        h.inc(f"client-{i}", 2 * (i + 1), 0.0, 1.0, type_="info", key="hot")  # within their sum: 2^12 subsets
    h.read("client-z", 155, 1.1, 1.2, key="hot")  # odd, under the sum 156: every subset is a candidate
    c = linearizable_counters(max_states=500)(h.history())
    assert c.verdict is Verdict.UNKNOWN, c.detail
    assert "key hot" in c.detail and "500" in c.detail
    assert c.data["unknown"] == [{"key": "hot", "states_explored": 500, "ops": 13, "bound": "key"}]
    assert linearizable_counters(max_states=10_000)(h.history()).verdict is Verdict.FAIL


def test_the_history_bound_leaves_the_remaining_keys_unknown() -> None:
    h = H()
    for key in ("a-hot", "b-hot"):
        for i in range(12):
            h.inc(f"client-{i}", 2 * (i + 1), 0.0, 1.0, type_="info", key=key)
        h.read("client-z", 155, 1.1, 1.2, key=key)
    c = linearizable_counters(max_states=10_000, max_total_states=5_000)(h.history())
    assert c.verdict is Verdict.FAIL, c.detail  # a-hot refuted within 4097 states, b-hot had the rest
    assert [v["key"] for v in c.data["violations"]] == ["a-hot"]
    assert [(u["key"], u["bound"]) for u in c.data["unknown"]] == [("b-hot", "total")]
    assert c.data["states_explored"] == 5_000
    c = linearizable_counters(max_states=10_000, max_total_states=4_000)(h.history())
    assert c.verdict is Verdict.UNKNOWN and c.data["unknown"][1] == {"key": "b-hot", "states_explored": 0,
                                                                      "ops": 13, "bound": "total"}
    assert "the history's bound of 4000 explored states was spent" in c.detail


def test_timed_out_increments_of_equal_amounts_do_not_explode_the_search() -> None:
    """Goverse with its gates cut from a node: 40 increments timed out (amounts 1-5) around a few
    answered ones, and the search hit its 100k bound (unknown). Equal amounts are interchangeable, so
    trying the earliest-invoked one per amount decides it in a few thousand configurations."""
    def history(read_value: int) -> History:
        h = H()
        for i in range(40):
            h.inc(f"client-{i % 8}", 1 + i % 5, 0.5 * i, 0.5 * i + 30, type_="info", key="cut")
        h.inc("client-a", 3, 0.1, 0.2, result=3, key="cut")
        h.read("client-b", read_value, 25.0, 25.1, key="cut")
        return h.history()
    ok = linearizable_counters()(history(3 + 17))  # 17 = some subset of the timed-out amounts
    assert ok.verdict is Verdict.PASS, ok.detail
    assert ok.data["states_explored"] < 50_000  # under the 100k bound that it hit before
    bad = linearizable_counters()(history(2))  # below the acknowledged 3: impossible whatever timed out
    assert bad.verdict is Verdict.FAIL, bad.detail


def test_an_all_failed_history_does_not_pass() -> None:
    h = H()
    for i in range(5):
        h.inc("client-a", 1, i, i + 0.1, type_="fail")
        h.read("client-b", None, i + 0.2, i + 0.3, type_="fail")
    c = linearizable_counters()(h.history())
    assert c.verdict is Verdict.UNKNOWN and "nothing to check" in c.detail


def test_a_bad_bound_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="max_states"):
        linearizable_counters(max_states=0)
    with pytest.raises(ValueError, match="max_total_states"):
        linearizable_counters(max_total_states=-1)


@pytest.mark.parametrize("name", ["kill_node_recovers", "kill_node_no_epochs", "partial_dip",
                                  "outage_never_recovers"])
def test_recorded_histories_of_a_correct_cluster_pass(name: str) -> None:
    c = linearizable_counters()(History.load(DATA / "histories" / f"{name}.jsonl"))
    assert c.verdict is Verdict.PASS, c.detail
    assert c.data["states_explored"] < 2 * c.data["ops"]  # one path, barely any backtracking


@pytest.mark.parametrize("name", ["lost_writes", "stale_reads", "split_brain"])
def test_recorded_histories_of_a_buggy_cluster_fail_on_the_victims_keys(name: str) -> None:
    c = linearizable_counters()(History.load(DATA / "histories" / f"{name}.jsonl"))
    assert c.verdict is Verdict.FAIL, c.detail
    assert {v["key"] for v in c.data["violations"]} == VICTIM_KEYS


def test_many_concurrent_answers_after_a_long_cut_are_decided_not_unknown() -> None:
    """One counter key of a real run (Goverse v0.1.1, gates cut from a node, a starved machine): 26
    increments timed out (amounts 1-5) and 30 answered increments and 10 reads were all in flight
    together for up to 30 s. The search hit its 2M-configuration bound on it (unknown); a counter that
    only goes up cannot return to a value some pending op found, so those branches are cut, and it is
    decided in 48 configurations after the plain search's share. A read changed to an impossible value
    in the same history still fails (the search, not the sums test, refutes it)."""
    path = DATA / "goverse" / "gates_cut_one_key.jsonl"  # not in histories/ (the reference stack's)
    ok = linearizable_counters()(History.load(path))
    assert ok.verdict is Verdict.PASS, ok.detail
    assert ok.data["states_explored"] < 21_000  # the plain search's 20k share, then 48 with the cut
    lines = path.read_text().splitlines()
    bad = [line.replace('"value":26,', '"value":27,') if '"type":"ok","process"' in line and '"f":"read"' in line
           else line for line in lines]
    assert bad != lines  # a read answered 26 between the increments that answered 26 and 29
    tampered = linearizable_counters()(History.parse(bad))
    assert tampered.verdict is Verdict.FAIL, tampered.detail
    assert tampered.data["violations"][0]["bounds"] is None  # refuted by the search
