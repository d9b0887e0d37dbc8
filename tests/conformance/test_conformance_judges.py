"""Every runtime judge decides from plain observations: each passes on a conforming observation and
fails (or says unknown) on one shaped like the bug it exists to catch — a latched /ready, an ignored
SIGTERM, an ignored environment, a silent counter, a plain-text log line, a leaked password."""

from __future__ import annotations

import json

import pytest

from harness.conformance import judges_config as jc
from harness.conformance import judges_lifecycle as jl
from harness.conformance import judges_observability as jo

T0 = 100.0


def tl(*points: tuple[float, int | None]) -> list[tuple[float, int | None]]:
    return [(T0 + dt, s) for dt, s in points]


# ---- §2.1 ------------------------------------------------------------------------------------------------
def test_endpoints() -> None:
    assert jl.judge_endpoints({"node-0": 200, "gate-0": 200}, "/healthz").verdict == "pass"
    j = jl.judge_endpoints({"node-0": 200, "gate-0": None, "inspector": 404}, "/healthz")
    assert j.verdict == "fail" and "gate-0, inspector" in j.evidence and "no answer" in j.evidence
    assert jl.judge_endpoints({}, "/ready").verdict == "unknown"


def test_ready_must_match_etcd() -> None:
    assert jl.judge_ready_matches_cluster({"n": 200}, True, "ok").verdict == "pass"
    assert jl.judge_ready_matches_cluster({"n": 503}, True, "ok").verdict == "fail"
    assert jl.judge_ready_matches_cluster({"n": 200}, False, "3 unconverged").verdict == "unknown"


def test_ready_before_cluster_ready() -> None:
    good = {"node": tl((0.1, None), (0.5, 503), (1.5, 200)), "gate": tl((0.4, 503), (1.0, 200))}
    j = jl.judge_ready_before_cluster_ready(good, T0)
    assert j.verdict == "pass" and "node 503 from +0.50s, 200 at +1.50s" in j.evidence
    premature = {"node": tl((0.1, None), (0.3, 200))}  # ready before it could have claimed anything
    assert jl.judge_ready_before_cluster_ready(premature, T0).verdict == "fail"
    never = {"node": tl((0.3, 503), (9.0, 503))}
    assert "never answered 200" in jl.judge_ready_before_cluster_ready(never, T0).evidence
    assert jl.judge_ready_before_cluster_ready({}, T0).verdict == "unknown"


@pytest.mark.parametrize("points,verdict", [
    ([(0.5, 200), (2.0, 503), (3.0, 503)], "pass"),          # dropped within the budget and stayed down
    ([(0.5, 200), (0.9, None)], "pass"),                     # stopped listening: not ready for a kubelet
    ([(0.5, 200), (2.0, 200), (4.5, 200)], "fail"),          # ready-latched: still 200 after the budget
    ([(0.5, 503), (3.5, 200)], "fail"),                      # flapped back while the fault was still on
    ([(3.5, 503)], "fail"),                                  # dropped too late
    ([(0.5, 200), (1.0, 200)], "unknown"),                   # window shorter than the budget
    ([], "unknown"),
])
def test_ready_drops(points: list[tuple[float, int | None]], verdict: str) -> None:
    assert jl.judge_ready_drops(tl(*points), T0, 3.0, "etcd loss").verdict == verdict


def test_ready_drops_ignores_what_happens_after_the_heal() -> None:
    timeline = tl((1.0, 503), (5.0, 200), (6.0, 200))
    assert jl.judge_ready_drops(timeline, T0, 3.0, "etcd loss", until=T0 + 4.0).verdict == "pass"
    assert jl.judge_ready_drops(timeline, T0, 3.0, "etcd loss").verdict == "fail"


def test_ready_returns() -> None:
    assert jl.judge_ready_returns(tl((0.2, 503), (1.0, 200)), T0, 5.0, "restart").verdict == "pass"
    assert jl.judge_ready_returns(tl((0.2, 503), (7.0, 200)), T0, 5.0, "restart").verdict == "fail"
    assert jl.judge_ready_returns(tl((0.2, 503)), T0, 5.0, "restart").verdict == "fail"


def test_judge_all_takes_the_worst() -> None:
    j = jl.judge_all({"a": jl.judge_endpoints({"x": 200}, "/r"), "b": jl.judge_endpoints({}, "/r")})
    assert j.verdict == "unknown" and j.evidence.startswith("a: ") and "; b: " in j.evidence
    assert jl.judge_all({}).verdict == "unknown"


# ---- §2.2 ------------------------------------------------------------------------------------------------
def call(ok: bool, status: int | None = 500, elapsed: float = 0.01, answered: bool = True,
         error: str | None = "node is stopped") -> jl.CallObservation:
    return jl.CallObservation(ok, 200 if ok else status, None if ok else "CALL_FAILED", None if ok else error,
                              elapsed, answered)


def test_refuses_new_calls() -> None:
    assert jl.judge_refuses_new_calls(call(False)).verdict == "pass"
    assert jl.judge_refuses_new_calls(call(True)).verdict == "fail"  # ignore-sigterm: served as usual
    taken = call(False, status=None, elapsed=1.5, answered=False, error="no answer")
    assert "not refused within 1s" in jl.judge_refuses_new_calls(taken).evidence
    assert jl.judge_refuses_new_calls(None).verdict == "unknown"


@pytest.mark.parametrize("rc,elapsed,verdict", [(0, 0.3, "pass"), (0, 11.0, "fail"), (-9, 12.0, "fail"),
                                                (1, 0.2, "fail"), (None, 0.0, "unknown")])
def test_exit_within_grace(rc: int | None, elapsed: float, verdict: str) -> None:
    assert jl.judge_exit(rc, elapsed, 10.0).verdict == verdict


def test_drains_in_flight() -> None:
    assert jl.judge_drains_in_flight(call(True, elapsed=2.5), 0, 2.7, 10.0).verdict == "pass"
    cut = jl.judge_drains_in_flight(call(False, 504, error="connection reset"), 0, 0.1, 10.0)
    assert cut.verdict == "fail" and "failed" in cut.evidence
    ignored = jl.judge_drains_in_flight(call(True), -9, 10.0, 10.0)  # ignore-sigterm: killed at the grace
    assert ignored.verdict == "fail" and "signal 9" in ignored.evidence
    both = jl.judge_drains_in_flight(call(False, 504, error="timeout"), -9, 10.0, 10.0)
    assert "failed" in both.evidence and "signal 9" in both.evidence
    assert jl.judge_drains_in_flight(None, 0, 1.0, 10.0).verdict == "unknown"


def own(dt: float, registered: bool, owned: int) -> jl.OwnershipSample:
    return jl.OwnershipSample(T0 + dt, registered, owned)


def test_releases_shards() -> None:
    handed_over = [own(-0.1, True, 32), own(0.05, True, 10), own(0.1, False, 0), own(0.3, False, 0)]
    assert jl.judge_releases_shards(handed_over, T0, T0 + 0.2, 32).verdict == "pass"
    left_to_lease = [own(-0.1, True, 32), own(12.1, True, 32), own(15.2, False, 0)]  # killed after the grace
    j = jl.judge_releases_shards(left_to_lease, T0, T0 + 12.0, 32)
    assert j.verdict == "fail" and "lease expiry" in j.evidence and "32 shards" in j.evidence
    keys_only = [own(0.5, True, 0)]  # shards handed over but the lease not revoked
    assert jl.judge_releases_shards(keys_only, T0, T0 + 0.4, 32).verdict == "fail"
    assert jl.judge_releases_shards(handed_over, T0, T0 + 5.0, 32).verdict == "unknown"  # no sample after exit
    assert jl.judge_releases_shards(handed_over, T0, T0 + 0.2, 0).verdict == "unknown"


# ---- §2.3 / §2.4 -----------------------------------------------------------------------------------------
def obs(registered: bool = True, advertise: str | None = "127.0.0.1:7001", node_id: str | None = "n1",
        exit_code: int | None = None, tail: str = "") -> jc.InstanceObservation:
    return jc.InstanceObservation("x", registered, advertise if registered else None, node_id, exit_code, tail, 3.0)


ENV_IGNORED = obs(False, exit_code=2, tail="refstack: config error: --node-id: required (or GOVERSE_NODE_ID)")


def test_registered() -> None:
    assert jc.judge_registered(obs(), "only the variable knows etcd").verdict == "pass"
    j = jc.judge_registered(ENV_IGNORED, "only the variable knows etcd")
    assert j.verdict == "fail" and "exited with code 2" in j.evidence and "--node-id" in j.evidence
    assert "did not register" in jc.judge_registered(obs(False), "e").evidence
    assert jc.judge_registered(None, "e").verdict == "unknown"


def test_identity_and_advertise() -> None:
    assert jc.judge_identity(obs(node_id="pod-0"), "pod-0", "POD_NAME").verdict == "pass"
    assert jc.judge_identity(obs(node_id="127.0.0.1:7001"), "pod-0", "POD_NAME").verdict == "fail"
    assert jc.judge_identity(obs(node_id=None), "pod-0", "POD_NAME").verdict == "unknown"
    assert jc.judge_identity(ENV_IGNORED, "pod-0", "POD_NAME").verdict == "fail"
    assert jc.judge_advertise(obs(advertise="127.0.0.2:9"), "127.0.0.2:9", "POD_IP").verdict == "pass"
    assert jc.judge_advertise(obs(advertise="localhost:9"), "127.0.0.2:9", "POD_IP").verdict == "fail"
    assert jc.judge_advertise(ENV_IGNORED, "127.0.0.2:9", "POD_IP").verdict == "fail"


def test_rejected() -> None:
    line = "refstack: config error: GOVERSE_POSTGRES_PORT: expected an integer, got 'x'"
    assert jc.judge_rejected(obs(False, exit_code=2, tail=line), "GOVERSE_POSTGRES_PORT").verdict == "pass"
    assert jc.judge_rejected(obs(), "GOVERSE_POSTGRES_PORT").verdict == "fail"  # env-ignored: it just starts
    assert "does not name" in jc.judge_rejected(obs(False, exit_code=1, tail="Traceback"), "V").evidence
    assert jc.judge_rejected(obs(False, exit_code=0, tail="V"), "V").verdict == "fail"
    assert "hanging" in jc.judge_rejected(obs(False), "V").evidence


# ---- §2.5 ------------------------------------------------------------------------------------------------
METRICS = """\
# TYPE goverse_method_calls_total counter
goverse_method_calls_total{node="a",object_type="Counter",method_name="Increment",status="success"} 7
goverse_method_calls_total{node="a",object_type="Counter",method_name="Get",status="failure"} 1
# TYPE goverse_shards_total gauge
goverse_shards_total{node="a"} 40
goverse_shards_total{node="b"} 24
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 5e7
# TYPE process_threads gauge
process_threads 4
# TYPE goverse_pod_info gauge
goverse_pod_info{pod_name="p-0",namespace="ns",node_name="k1"} 1
# TYPE goverse_k8s_ready gauge
goverse_k8s_ready 1
# TYPE goverse_k8s_startup_time_seconds gauge
goverse_k8s_startup_time_seconds 2.5
"""


def test_parse_and_sum() -> None:
    s = jo.parse_metrics(METRICS)
    assert jo.metric_sum(s, "goverse_method_calls_total") == 8
    assert jo.metric_sum(s, "goverse_method_calls_total", status="success") == 7
    assert jo.metric_sum(s, "nope") is None


def test_method_calls_must_move() -> None:
    assert jo.judge_method_calls(8, 38, 30).verdict == "pass"
    assert jo.judge_method_calls(8, 8, 30).verdict == "fail"
    assert jo.judge_method_calls(None, None, 30).verdict == "fail"
    assert jo.judge_method_calls(8, 9, 0).verdict == "unknown"


def test_shard_gauges_sum_to_the_shard_count() -> None:
    s = jo.parse_metrics(METRICS)
    assert jo.judge_shard_gauges({"n0": s, "n1": s}, 64).verdict == "pass"
    assert jo.judge_shard_gauges({"n0": s}, 128).verdict == "fail"
    assert "missing" in jo.judge_shard_gauges({"n0": []}, 64).evidence


def test_process_metrics() -> None:
    s = jo.parse_metrics(METRICS)
    assert jo.judge_process_metrics({"n0": s}).verdict == "pass"
    no_threads = [x for x in s if x[0] != "process_threads"]
    j = jo.judge_process_metrics({"n0": no_threads})
    assert j.verdict == "fail" and "goroutine/thread" in j.evidence


def test_pod_info_and_readiness_metrics() -> None:
    s = jo.parse_metrics(METRICS)
    assert jo.judge_pod_info(s, "p-0", "n").verdict == "pass"
    assert jo.judge_pod_info(s, "p-1", "n").verdict == "fail"
    assert jo.judge_pod_info([], "p-0", "n").verdict == "fail"
    assert jo.judge_pod_info(None, "p-0", "n").verdict == "unknown"
    assert jo.judge_readiness_metrics({"n": s}, {"n": True}).verdict == "pass"
    assert "but /ready says" in jo.judge_readiness_metrics({"n": s}, {"n": False}).evidence
    assert jo.judge_readiness_metrics({"n": []}, {"n": True}).verdict == "fail"


# ---- §2.6 ------------------------------------------------------------------------------------------------
def jline(level: str = "info", **extra: str) -> str:
    return json.dumps({"ts": "2026-01-01T00:00:00.000Z", "level": level, "msg": "hello", **extra})


def test_json_logs() -> None:
    good = "--- node-0: python -m harness.refstack node\n" + jline() + "\n\n" + jline("warning") + "\n"
    assert jo.judge_json_logs({"node-0": good}).verdict == "pass"
    plain = good + "Traceback (most recent call last):\n"
    j = jo.judge_json_logs({"node-0": plain})
    assert j.verdict == "fail" and "not JSON" in j.evidence
    no_time = json.dumps({"level": "info", "msg": "x"})
    assert "no time" in jo.judge_json_logs({"n": no_time}).evidence
    assert "not an object" in jo.judge_json_logs({"n": "[1, 2]"}).evidence
    alt = json.dumps({"severity": "INFO", "@timestamp": "t", "message": "m"})
    assert jo.judge_json_logs({"n": alt}).verdict == "pass"
    assert jo.judge_json_logs({"n": "--- n: header only\n"}).verdict == "unknown"


def test_log_level() -> None:
    verbose = "\n".join([jline("info"), jline("info"), jline("warning")])
    assert jo.judge_log_level(jline("warning"), "warn", verbose, "info").verdict == "pass"
    assert jo.judge_log_level("", "warn", verbose, "info").verdict == "pass"
    j = jo.judge_log_level(jline("info"), "warn", verbose, "info")  # LOG_LEVEL ignored
    assert j.verdict == "fail" and "info" in j.evidence
    assert jo.judge_log_level("", "warn", jline("warning"), "info").verdict == "unknown"


GOVERSE_LOG = """--- node-0: /tmp/goverse-build/goverse-app --config c.yaml
goverse-app: Counter and Wallet registered, persistence interval 1s
[2026-12-03 12:31:30.159] [WARN] [ConsensusManager] ConsensusManager not ready: No nodes available
[2026-12-03 12:31:35.162] [ERROR] [Cluster] Failed to claim shard ownership
"""


def test_log_levels_of_text_lines_are_counted() -> None:
    assert jo.level_counts(GOVERSE_LOG) == {"unparsed": 1, "warn": 1, "error": 1}
    assert jo.line_level('ts=1 level=info msg="m"') == "info" and jo.line_level("plain text") is None
    assert jo.judge_json_logs({"n": GOVERSE_LOG}).verdict == "fail"  # text lines are still not JSON


def test_log_level_fails_when_a_busy_verbose_run_logged_nothing_below_the_quiet_level() -> None:
    busy = GOVERSE_LOG * 10  # 20 leveled records at LOG_LEVEL=info, all warn or error (Goverse ignores it)
    j = jo.judge_log_level(GOVERSE_LOG, "warn", busy, "info")
    assert j.verdict == "fail" and "LOG_LEVEL=info logged 20 records, none below warn" in j.evidence
    assert jo.judge_log_level(GOVERSE_LOG, "warn", GOVERSE_LOG * 9, "info").verdict == "unknown"  # too few
    info = "[2026-12-03 12:31:30.159] [INFO] [Node] started\n"
    assert jo.judge_log_level(GOVERSE_LOG, "warn", busy + info, "info").verdict == "pass"
    assert jo.judge_log_level(GOVERSE_LOG + info, "warn", busy + info, "info").verdict == "fail"


def test_pod_info_judged_on_the_stacks_own_nodes_when_the_pod_node_did_not_run() -> None:
    why = "the POD_NAME node did not run"
    plain: jo.Samples = [("goverse_shards_total", {"node": "a"}, 3.0)]
    j = jo.judge_pod_info_elsewhere({"node-0": plain, "node-1": plain, "node-2": None}, why)
    assert j.verdict == "fail" and "none of the 2 running nodes (node-0, node-1) exposes goverse_pod_info" in j.evidence
    with_info: jo.Samples = [*plain, ("goverse_pod_info", {"pod_name": "node-0"}, 1.0)]
    assert jo.judge_pod_info_elsewhere({"node-0": with_info, "node-1": plain}, why).verdict == "unknown"
    assert jo.judge_pod_info_elsewhere({"node-0": None}, why).verdict == "unknown"


def test_no_secret() -> None:
    assert jo.judge_no_secret([], 12).verdict == "pass"
    j = jo.judge_no_secret(["logs/node-0.log"], 12)
    assert j.verdict == "fail" and "logs/node-0.log" in j.evidence
    assert jo.judge_no_secret([], 0).verdict == "unknown"


def test_etcd_override_slow_etcd_is_unknown_but_the_dead_endpoint_fails() -> None:
    real, dead = "goverse-etcd:2379", "http://127.0.0.1:41999"
    ok = jc.judge_etcd_override(obs(True), real, dead, "why")
    assert ok.verdict == "pass"
    tail = "startup error: no etcd endpoint answered: http://goverse-etcd:2379: TimeoutError"
    slow = jc.judge_etcd_override(obs(False, exit_code=2, tail=tail), real, dead, "why")
    assert slow.verdict == "unknown" and "took GOVERSE_ETCD_ENDPOINTS" in slow.evidence
    ignored = jc.judge_etcd_override(obs(False, exit_code=2, tail="no etcd endpoint answered: "
                                                                "http://127.0.0.1:41999: ConnectionRefused"),
                                     real, dead, "why")
    assert ignored.verdict == "fail"
    assert jc.judge_etcd_override(obs(False, exit_code=2, tail="config error"), real, dead, "why").verdict == "fail"
    assert jc.judge_etcd_override(None, real, dead, "why").verdict == "unknown"
