"""Seed §2 as runtime conformance checks: one test per check id (``-k 2.2``, ``-k sigterm`` select).

Given one shared stack (2 nodes, 1 gate, inspector) and, on the local platform, ad-hoc instances in
their own etcd prefix and database (harness/conformance/adhoc.py), each test judges one requirement
from observations (harness/conformance/experiments.py) with a pure judge, writes
``<run_dir>/conformance/<id>.json`` and passes only on ``pass``: ``unknown`` fails,
``not-applicable`` skips with the reason. Experiments are module fixtures, so checks that share one
(the ad-hoc node's life, the environment batch, the graceful stop under load) pay for it once.

Seeded bugs each of these must catch: ``ready-latched`` (2.1-ready-drops-*), ``ignore-sigterm``
(2.2-sigterm-*), ``env-ignored`` (2.3-*, 2.4-*). docs/conformance.md describes every check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.conformance.adhoc import pg_password, wait_for
from harness.conformance.experiments import (
    INVALID_VARIABLE,
    POD_NAME,
    env_experiment,
    gate_budget,
    lifecycle_experiment,
    metrics_under_load,
    node_budget,
    pod_platform_env_experiment,
    sigterm_experiment,
    wait_until_converged,
)
from harness.conformance.judges_config import (
    judge_advertise,
    judge_etcd_override,
    judge_identity,
    judge_registered,
    judge_rejected,
)
from harness.conformance.judges_lifecycle import (
    judge_all,
    judge_drains_in_flight,
    judge_endpoints,
    judge_exit,
    judge_ready_before_cluster_ready,
    judge_ready_drops,
    judge_ready_matches_cluster,
    judge_ready_returns,
    judge_refuses_new_calls,
    judge_releases_shards,
)
from harness.conformance.judges_observability import (
    judge_json_logs,
    judge_log_level,
    judge_method_calls,
    judge_no_secret,
    judge_pod_info,
    judge_pod_info_elsewhere,
    judge_process_metrics,
    judge_readiness_metrics,
    judge_shard_gauges,
    metric_sum,
)
from harness.conformance.live import health_status, http_status, read_metrics
from harness.conformance.model import Judgement, Verdict, not_applicable, unknown
from harness.conformance.runner import Outcome, check_id, conclude, judged, run_experiment
from harness.platforms.base import Instance, InstanceLogs, PodIdentity, Timers

pytestmark = [pytest.mark.e2e, pytest.mark.conformance]

#: conformance needs no network namespaces (no partitions here); two nodes are enough to hand over
STACK = {"nodes": 2, "gates": 1, "isolate_network": False}
SERVING = ("node", "gate", "inspector")


def serving(stack: Any, components: tuple[str, ...] = SERVING) -> dict[str, str]:
    return {i.name: i.ops_url for i in stack.instances() if i.component in components and i.running and i.ops_url}


# ---- module fixtures: the experiments ------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _no_adhoc_leftovers(stack: Any) -> Any:
    """Belt and braces: whatever an experiment left running is stopped before the stack goes."""
    yield
    stop_all = getattr(stack, "stop_all_adhoc", None)
    if callable(stop_all):
        stop_all()


@pytest.fixture(scope="module")
def secrets(stack: Any) -> list[str]:
    return [p for p in (pg_password(stack),) if p]


@pytest.fixture(scope="module")
def lifecycle(stack: Any) -> Outcome:
    return run_experiment(lambda: lifecycle_experiment(stack), needs_adhoc=stack)


@pytest.fixture(scope="module")
def env_run(stack: Any) -> Outcome:
    if isinstance(stack, PodIdentity):  # §2.4 on the stack's own pods, §2.3 on ad-hoc pods
        return run_experiment(lambda: pod_platform_env_experiment(stack))
    return run_experiment(lambda: env_experiment(stack), needs_adhoc=stack)


def env_judged(outcome: Outcome, observation: str, judge: Any) -> Judgement:
    """``judged`` for the environment checks: an observation the platform cannot make is not applicable."""
    def one(run: Any) -> Judgement:
        if observation in run.not_applicable:
            return not_applicable(run.not_applicable[observation])
        if observation in run.not_made:
            return unknown(run.not_made[observation])
        return judge(run)
    return judged(outcome, one)


@pytest.fixture(scope="module")
def sigterm(stack: Any, run_dir: Path) -> Outcome:
    history = run_dir / "conformance" / "histories" / "2.2-sigterm.jsonl"
    return run_experiment(lambda: sigterm_experiment(stack, history))


@pytest.fixture(scope="module")
def under_load(stack: Any) -> Outcome:
    return run_experiment(lambda: metrics_under_load(stack))


# ---- §2.1 health and readiness -------------------------------------------------------------------------
@check_id("2.1-health-endpoints")
def test_health_endpoints(stack, run_dir, secrets, cid):
    statuses = {}
    for name, url in serving(stack).items():
        path, status = health_status(url)
        statuses[name if path == "/healthz" else f"{name}{path}"] = status
    conclude(run_dir, cid, judge_endpoints(statuses, "/healthz"), secrets)


@check_id("2.1-ready-endpoints")
def test_ready_endpoints(stack, run_dir, secrets, cid):
    converged = wait_until_converged(stack, stack.spec.timers.failover_budget() + 5)
    state = stack.cluster_state()
    detail = f"{len(state.nodes)} live nodes, {len(state.unconverged())} unconverged shards"
    statuses = {name: http_status(f"{url}/ready") for name, url in serving(stack).items()}
    conclude(run_dir, cid, judge_ready_matches_cluster(statuses, converged, detail), secrets)


@check_id("2.1-ready-before-cluster-ready")
def test_ready_before_cluster_ready(lifecycle, run_dir, secrets, cid):
    def judge(run: Any) -> Judgement:
        start = {n: [(t, s) for t, s in tl if t <= (run.t_all_ready or t)] for n, tl in run.timelines.items()}
        return judge_ready_before_cluster_ready(start, run.t_start)
    conclude(run_dir, cid, judged(lifecycle, judge), secrets)


@check_id("2.1-ready-drops-on-etcd-loss")
def test_ready_drops_on_etcd_loss(lifecycle, run_dir, secrets, cid):
    def judge(run: Any) -> Judgement:
        if run.t_etcd_cut is None:
            return unknown("etcd was never cut: " + ("; ".join(run.notes) or "the cluster never became ready"))
        tl = run.timelines
        gate = (judge_ready_drops(tl["gate"], run.t_key_gone, gate_budget(run), "the node's lease expired",
                                  until=run.t_etcd_heal)
                if run.t_key_gone else unknown("the node's lease never expired in etcd during the cut"))
        return judge_all({
            "node": judge_ready_drops(tl["node"], run.t_etcd_cut, node_budget(run), "etcd loss",
                                      until=run.t_etcd_heal),
            "gate": gate,
            "recovery": judge_ready_returns(tl["node"], run.t_etcd_heal, run.failover_budget + 10.0,
                                            "etcd came back"),
        })
    conclude(run_dir, cid, judged(lifecycle, judge), secrets)


@check_id("2.1-ready-drops-on-sigterm")
def test_ready_drops_on_sigterm(lifecycle, run_dir, secrets, cid):
    def judge(run: Any) -> Judgement:
        if run.t_term is None:
            return unknown("the node was never sent SIGTERM: " + "; ".join(run.notes))
        j = judge_ready_drops(run.timelines["node"], run.t_term, 1.0, "SIGTERM", until=run.t_restart)
        if not run.inflight_at_term:
            return Judgement(j.verdict, j.evidence + " (no call was in flight, so shutdown may have been too quick "
                             "to observe /ready while draining)", j.data)
        return j
    conclude(run_dir, cid, judged(lifecycle, judge), secrets)


@check_id("2.1-ready-after-restart")
def test_ready_after_restart(lifecycle, run_dir, secrets, cid):
    def judge(run: Any) -> Judgement:
        if run.t_restart is None:
            return unknown("the node was never restarted: " + ("; ".join(run.notes) or "it did not stop"))
        return judge_ready_returns(run.timelines["node"], run.t_restart, 30.0, "restart")
    conclude(run_dir, cid, judged(lifecycle, judge), secrets)


# ---- §2.2 graceful shutdown ----------------------------------------------------------------------------
@check_id("2.2-sigterm-refuses-new-calls")
def test_sigterm_refuses_new_calls(lifecycle, run_dir, secrets, cid):
    conclude(run_dir, cid, judged(lifecycle, lambda run: judge_refuses_new_calls(run.new_call)), secrets)


@check_id("2.2-sigterm-drains-in-flight")
def test_sigterm_drains_in_flight(lifecycle, run_dir, secrets, cid):
    def judge(run: Any) -> Judgement:
        if not run.inflight_at_term:
            return unknown("no call could be kept in flight at SIGTERM")
        return judge_drains_in_flight(run.inflight, run.exit_code, run.exit_s, run.grace)
    conclude(run_dir, cid, judged(lifecycle, judge), secrets)


@check_id("2.2-sigterm-exit-within-grace")
def test_sigterm_exit_within_grace(sigterm, run_dir, secrets, cid):
    conclude(run_dir, cid, judged(sigterm, lambda run: judge_exit(run.rc, run.t_exit - run.t_term, run.grace)),
             secrets)


@check_id("2.2-sigterm-releases-shards")
def test_sigterm_releases_shards(sigterm, run_dir, secrets, cid):
    conclude(run_dir, cid, judged(sigterm, lambda run: judge_releases_shards(
        run.samples, run.t_term, run.t_exit, run.owned_before)), secrets)


@check_id("2.2-sigterm-no-acked-write-lost")
def test_sigterm_no_acked_write_lost(sigterm, run_dir, secrets, cid):
    def judge(run: Any) -> Judgement:
        if run.writes is None:
            return unknown("the workload history was not checked")
        text = f"{run.acked} acknowledged increments across the SIGTERM and restart of {run.victim}: " + (
            "no loss, every read saw them" if run.writes.passed else run.writes.reason())
        return Judgement(Verdict(str(run.writes.verdict)), text, {"checks": run.writes.to_list()})
    conclude(run_dir, cid, judged(sigterm, judge), secrets)


# ---- §2.3 configuration, §2.4 pod identity -------------------------------------------------------------
@check_id("2.3-env-etcd-endpoints")
def test_env_etcd_endpoints(env_run, run_dir, secrets, cid):
    conclude(run_dir, cid, env_judged(env_run, "etcd", lambda run: judge_etcd_override(
        run.observations.get("etcd"), run.expected["etcd_env"], run.expected["etcd_dead"],
        "its config names an etcd endpoint where nothing listens; only GOVERSE_ETCD_ENDPOINTS names the real one")),
        secrets)


@check_id("2.3-env-node-id")
def test_env_node_id(env_run, run_dir, secrets, cid):
    conclude(run_dir, cid, env_judged(env_run, "nodeid", lambda run: judge_identity(
        run.observations.get("nodeid"), run.expected["node_id"], "GOVERSE_NODE_ID (no --node-id)")), secrets)


@check_id("2.3-env-postgres-password")
def test_env_postgres_password(env_run, run_dir, secrets, cid):
    conclude(run_dir, cid, env_judged(env_run, "pgpass", lambda run: judge_registered(
        run.observations.get("pgpass"), "its config has no PostgreSQL password and a node opens PostgreSQL "
                                        "before it registers; only GOVERSE_POSTGRES_PASSWORD has it")), secrets)


@check_id("2.3-env-validated")
def test_env_validated(env_run, run_dir, secrets, cid):
    conclude(run_dir, cid, env_judged(env_run, "invalid", lambda run: judge_rejected(
        run.observations.get("invalid"), INVALID_VARIABLE)), secrets)


@check_id("2.4-pod-name-node-id")
def test_pod_name_node_id(env_run, run_dir, secrets, cid):
    conclude(run_dir, cid, judged(env_run, lambda run: judge_identity(
        run.observations.get("pod"), run.expected.get("pod_name", POD_NAME),
        "POD_NAME (no --node-id, no GOVERSE_NODE_ID)")), secrets)


@check_id("2.4-pod-ip-advertise")
def test_pod_ip_advertise(env_run, run_dir, secrets, cid):
    conclude(run_dir, cid, judged(env_run, lambda run: judge_advertise(
        run.observations.get("pod"), run.expected["pod_advertise"], "POD_IP (no advertise_addr configured)")),
        secrets)


# ---- §2.5 metrics ---------------------------------------------------------------------------------------
def _sum_calls(per_node: dict[str, Any]) -> float | None:
    sums = [metric_sum(s, "goverse_method_calls_total") for s in per_node.values() if s]
    present = [v for v in sums if v is not None]
    return sum(present) if present else None


@check_id("2.5-method-call-metrics")
def test_method_call_metrics(under_load, run_dir, secrets, cid):
    conclude(run_dir, cid, judged(under_load, lambda r: judge_method_calls(
        _sum_calls(r[0]), _sum_calls(r[1]), r[2])), secrets)


def gauge_settle_s(t: Timers) -> float:
    """How long after convergence a node's shard gauges may lag: a node sets them on its own
    management tick (Goverse: every 5 s), so two ticks and a margin, not the reference stack's."""
    return 2 * t.tick + 2.0


@check_id("2.5-shard-gauges")
def test_shard_gauges(stack, run_dir, secrets, cid):
    wait_until_converged(stack, stack.spec.timers.failover_budget() + 5)
    last: list[Judgement] = []

    def judged_now() -> bool:
        per_node = {n: read_metrics(u) or [] for n, u in serving(stack, ("node",)).items()}
        last[:] = [judge_shard_gauges(per_node, stack.spec.shards)]
        return last[0].verdict == Verdict.PASS

    # the gauges are judged as they are once the stack's own tick had its chance to set them
    wait_for("shard gauges sum to the shard count", judged_now, gauge_settle_s(stack.spec.timers), interval=0.25)
    conclude(run_dir, cid, last[0], secrets)


@check_id("2.5-process-metrics")
def test_process_metrics(stack, run_dir, secrets, cid):
    per = {n: read_metrics(u) or [] for n, u in serving(stack, ("node", "gate")).items()}
    conclude(run_dir, cid, judge_process_metrics(per), secrets)


@check_id("2.5-pod-info-metric")
def test_pod_info_metric(stack, env_run, run_dir, secrets, cid):
    def judge(run: Any) -> Judgement:
        obs = run.observations.get("pod")
        if obs is None or not obs.registered:
            # the metric's absence can still be shown on the stack's own nodes (Goverse has none)
            per_node = {n: read_metrics(u) for n, u in serving(stack, ("node",)).items()}
            return judge_pod_info_elsewhere(per_node, "the POD_NAME node did not run, so its own metrics could "
                                                      "not be read (see 2.4-pod-name-node-id)")
        pod_name = run.expected.get("pod_name", POD_NAME)
        return judge_pod_info(run.pod_metrics, pod_name, f"the POD_NAME={pod_name} node")
    conclude(run_dir, cid, judged(env_run, judge), secrets)


@check_id("2.5-readiness-metrics")
def test_readiness_metrics(stack, run_dir, secrets, cid):
    wait_until_converged(stack, stack.spec.timers.failover_budget() + 5)
    urls = serving(stack, ("node", "gate"))
    per = {n: read_metrics(u) or [] for n, u in urls.items()}
    ready = {n: http_status(f"{u}/ready") == 200 for n, u in urls.items()}
    conclude(run_dir, cid, judge_readiness_metrics(per, ready), secrets)


# ---- §2.6 logs ---------------------------------------------------------------------------------------------
def _read(path: str | None) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace") if path else ""
    except OSError:
        return ""


def instance_log(stack: Any, inst: Instance) -> str:
    """What the instance logged: the platform's logs (Kubernetes: the pod logs API) or its log file."""
    if isinstance(stack, InstanceLogs):
        return stack.instance_log(inst.name)
    return _read(inst.log_path)


@check_id("2.6-json-logs")
def test_json_logs(stack, run_dir, secrets, cid):
    logs = {i.name: instance_log(stack, i) for i in stack.instances() if i.component in SERVING and i.log_path}
    conclude(run_dir, cid, judge_json_logs(logs), secrets)


@check_id("2.6-log-level")
def test_log_level(stack, env_run, run_dir, secrets, cid):
    info_log = "\n".join(instance_log(stack, i) for i in stack.instances("node"))
    def judge(run: Any) -> Judgement:
        quiet = run.observations.get("quiet")
        if quiet is None or not quiet.registered:  # silence of a node that never ran proves nothing
            return unknown("the LOG_LEVEL=warn node did not register, so its silence shows nothing"
                           + (f": {quiet.log_tail}" if quiet is not None and quiet.log_tail else ""))
        return judge_log_level(run.quiet_log, "warn", info_log, "info")
    conclude(run_dir, cid, env_judged(env_run, "quiet", judge), secrets)


@check_id("2.6-no-secrets-in-logs")
def test_no_secrets_in_logs(stack, run_dir, secrets, cid):
    """Last on purpose: it also covers what the other checks' ad-hoc instances logged."""
    if not secrets:
        conclude(run_dir, cid, unknown("the stack's PostgreSQL password is not known to the harness"), secrets)
    if isinstance(stack, InstanceLogs):  # the pods' logs join the run directory before it is searched
        stack.collect_logs()
    needles = [s.encode() for s in secrets]
    roots = {Path(run_dir), Path(getattr(stack, "run_dir", run_dir))}
    files = sorted({p for r in roots for p in r.rglob("*") if p.is_file()})
    hits = [str(p) for p in files if any(n in p.read_bytes() for n in needles)]
    conclude(run_dir, cid, judge_no_secret(hits, len(files)), secrets)
