"""endpoints_honoured on crafted proxy-traffic samples: a node whose PostgreSQL and etcd links carried
nothing while it ran (env-ignored: it used its config file's endpoints, not the environment's) fails;
etcd members are judged together (a client uses one at a time); instances not running throughout are
not judged."""

from __future__ import annotations

from harness.checkers import Verdict
from harness.checkers.wiring import TRAFFIC_F, destination_kind, endpoints_honoured
from harness.history import Event, History

CHECK = endpoints_honoured()


def sample(traffic: dict[str, int], running: list[str]) -> History:
    return History([Event(30.0, "sample", "explore", TRAFFIC_F, value={"bytes": traffic, "running": running})])


CORRECT = {"node-0->postgres": 91_000, "node-1->postgres": 88_000, "node-0->etcd-0": 4_000, "node-0->etcd-1": 0,
           "node-1->etcd-0": 3_900, "node-1->etcd-1": 0, "gate-0->etcd-0": 2_000, "gate-0->etcd-1": 0}


def test_every_running_instance_using_its_links_passes() -> None:
    c = CHECK(sample(CORRECT, ["node-0", "node-1", "gate-0"]))
    assert c.verdict is Verdict.PASS, c.detail
    assert c.data["groups"]["node-0->etcd"] == 4_000  # the unused member's link counts with the used one


def test_an_instance_that_ignored_its_endpoints_fails() -> None:
    ignored = {k: 0 if k.startswith("node-1") else v for k, v in CORRECT.items()}
    c = CHECK(sample(ignored, ["node-0", "node-1", "gate-0"]))
    assert c.verdict is Verdict.FAIL
    assert "node-1->etcd, node-1->postgres" in c.detail


def test_instances_not_running_throughout_or_no_sample_are_not_judged() -> None:
    gone = {**CORRECT, "node-2->postgres": 0, "node-2->etcd-0": 0}
    assert CHECK(sample(gone, ["node-0", "node-1", "gate-0"])).verdict is Verdict.PASS
    assert CHECK(History([])).verdict is Verdict.UNKNOWN
    assert CHECK(sample(CORRECT, [])).verdict is Verdict.UNKNOWN
    assert destination_kind("etcd-12") == "etcd" and destination_kind("postgres") == "postgres"
