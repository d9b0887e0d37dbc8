"""The runtime experiments behind the §2 checks; each returns plain observations for the judges.

Why a few experiments shared by many checks: starting processes is what costs time on a 2-core box,
so one ad-hoc cluster's life (start, lose etcd, SIGTERM mid-call, restart) feeds six checks, one batch
of ad-hoc nodes with odd environments feeds the §2.3/§2.4 checks, and one graceful stop under load on
the shared stack feeds the §2.2 ones. Experiments never decide; if a step cannot be carried out the
observation stays empty and the judge says ``unknown``. Everything started is stopped in ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import budgets
from harness.checkers import check, no_lost_writes, reads_see_acknowledged
from harness.checkers.verdict import CheckResult
from harness.conformance.adhoc import AdhocCluster, pg_password, unsupported_reason, wait_for
from harness.conformance.judges_config import InstanceObservation
from harness.conformance.judges_lifecycle import CallObservation, OwnershipSample
from harness.conformance.judges_observability import Samples
from harness.conformance.live import BackgroundCall, ReadyPoller, call_counter, read_metrics, sampling
from harness.history import Recorder
from harness.platforms.base import LinkProxy, NodeAddr, SelfRestarting
from harness.ports import free_port
from harness.waiting import wait_until

Timeline = list[tuple[float, int | None]]


# ============================================================== ad-hoc cluster life (§2.1, §2.2)
@dataclass
class LifecycleRun:
    """Observations of one ad-hoc node (+ gate, inspector) from start to restart. Times are monotonic."""

    ttl: float
    tick: float
    grace: float
    failover_budget: float
    t_start: float = 0.0
    timelines: dict[str, Timeline] = field(default_factory=dict)
    t_all_ready: float | None = None
    t_etcd_cut: float | None = None
    t_key_gone: float | None = None
    t_etcd_heal: float | None = None
    inflight_at_term: bool = False
    t_term: float | None = None
    new_call: CallObservation | None = None
    inflight: CallObservation | None = None
    exit_code: int | None = None
    exit_s: float = 0.0
    t_restart: float | None = None
    notes: list[str] = field(default_factory=list)


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[-1].rstrip("/").rsplit(":", 1)
    return host, int(port)


def lifecycle_experiment(dep: Any) -> LifecycleRun:
    t = dep.spec.timers
    run = LifecycleRun(ttl=t.lease_ttl, tick=t.tick, grace=t.shutdown_grace, failover_budget=t.failover_budget())
    cluster = AdhocCluster.create(dep, "life")
    proxy = dep.link_proxy()
    try:
        etcd = proxy.add_link("etcd", _host_port(cluster.etcd_endpoints()[0]))
        pg = proxy.add_link("pg", dep.adhoc_postgres())
        node, gate, insp = cluster.node_addr("life-node"), cluster.gate_addr("life-gate"), cluster.inspector_addr()
        node_cfg = cluster.write("node", cluster.config([node], [gate], insp, etcd=[f"http://{etcd[0]}:{etcd[1]}"],
                                                        pg=pg))
        rest_cfg = cluster.write("rest", cluster.config([node], [gate], insp))
        with ReadyPoller({}) as poller:
            run.t_start = time.monotonic()
            procs = {"node": cluster.spawn("node", "node", node_cfg, args=["--node-id", node.id]),
                     "gate": cluster.spawn("gate", "gate", rest_cfg, args=["--gate-id", gate.id]),
                     "inspector": cluster.spawn("inspector", "inspector", rest_cfg)}
            hosts = {"node": cluster.host_of(procs["node"], node.host),
                     "gate": cluster.host_of(procs["gate"], gate.host),
                     "inspector": cluster.host_of(procs["inspector"], insp.host)}
            urls = {"node": f"http://{hosts['node']}:{node.ops_port}", "gate": f"http://{hosts['gate']}:{gate.ops_port}",
                    "inspector": f"http://{hosts['inspector']}:{insp.http_port}"}
            gate_api = f"http://{hosts['gate']}:{gate.http_port}"
            for name, url in urls.items():
                poller.add(name, url)
            ready_s = max(30.0, budgets.bootstrap(t))  # a one-node cluster still waits out its stability
            if not wait_for("node, gate and inspector /ready 200", lambda: all(
                    poller.last(n) == 200 or not procs[n].is_running() for n in urls), ready_s):
                run.notes.append(f"not every instance became ready within {ready_s:.0f} s")
            run.t_all_ready = time.monotonic()
            if all(poller.last(n) == 200 for n in urls):
                _etcd_loss(run, cluster, proxy, poller, procs["node"].pid, f"{hosts['node']}:{node.api_port}")
                if _serving_again(cluster, gate_api, run.failover_budget + 10.0):
                    _sigterm_mid_call(run, cluster, proxy, poller, procs["node"], gate_api)
                else:  # a call refused now would be refused for that, not for the SIGTERM: not judged
                    run.notes.append("the ad-hoc cluster did not serve again after etcd came back, so it was "
                                     "not sent SIGTERM")
                if run.exit_code is not None:
                    run.t_restart = time.monotonic()
                    again = cluster.spawn("node", "node", node_cfg, args=["--node-id", node.id])
                    # a pod comes back under a new IP: the poller follows it (a process keeps its address)
                    poller.retarget("node", f"http://{cluster.host_of(again, node.host)}:{node.ops_port}")
                    wait_for("restarted node /ready 200",
                             lambda: poller.seen_after("node", run.t_restart or 0.0, 200), ready_s)
            run.timelines = poller.snapshot()
    finally:
        cluster.stop_all()
        proxy.stop()
    return run


def _etcd_loss(run: LifecycleRun, cluster: AdhocCluster, proxy: LinkProxy, poller: ReadyPoller, pid: int | None,
               configured_advertise: str) -> None:
    """Black-hole the node's etcd link until its lease expired in etcd, then heal. The node's etcd key
    is found by its pid in the reference stack's info record, else by the advertise address its
    config gave it (real Goverse writes no info record)."""
    advertise = next((k[len("node/"):] for k, v in cluster.info_records().items()
                      if k.startswith("node/") and pid is not None and v.get("pid") == pid), None)
    if advertise is None and configured_advertise in cluster.registered_nodes():
        advertise = configured_advertise
    run.t_etcd_cut = time.monotonic()
    proxy.hold("etcd")
    try:
        wait_for("node /ready not 200 after etcd loss",
                 lambda: poller.not_ready_after("node", run.t_etcd_cut or 0.0), run.ttl + 2.0)
        if advertise is None:
            run.notes.append("the node's advertise address was not found in etcd; lease expiry not watched")
        elif wait_for("the node's lease expired in etcd", lambda: advertise not in cluster.registered_nodes(),
                      run.ttl + 5.0):
            run.t_key_gone = time.monotonic()
            # watch a little past the judge's budget, so a gate that stays 200 is seen staying 200
            wait_for("gate /ready not 200 after the node's lease expired",
                     lambda: poller.not_ready_after("gate", run.t_key_gone or 0.0), gate_budget(run) + 0.5)
    finally:
        proxy.clear("etcd")
        run.t_etcd_heal = time.monotonic()
    wait_for("node and gate /ready 200 after etcd came back",
             lambda: poller.seen_after("node", run.t_etcd_heal or 0.0, 200)
             and poller.seen_after("gate", run.t_etcd_heal or 0.0, 200), run.failover_budget + 10.0)


def gate_budget(run: LifecycleRun) -> float:
    """How long a gate may keep saying ready after a node's lease expired: its view refresh (a tick)
    plus margin for a loaded 2-core machine."""
    return 1.0 + 4 * run.tick


def node_budget(run: LifecycleRun) -> float:
    """How long a node may keep saying ready after losing etcd: its lease can be valid for a TTL after
    the last keepalive, plus margin."""
    return run.ttl + 1.0


def _serving_again(cluster: AdhocCluster, gate_api: str, timeout: float) -> bool:
    """Etcd says the cluster converged and a call through the gate succeeds (readiness endpoints may
    lie — that is what is under test)."""
    return wait_for("the ad-hoc cluster serves again",
                    lambda: cluster.view().state().converged
                    and call_counter(gate_api, f"cf-life-warm-{secrets.token_hex(2)}", timeout=2.0).ok,
                    timeout, interval=0.2)


#: how long PostgreSQL replies to the node are held while it is SIGTERMed: longer than the 1 s /ready
#: budget (so a /ready that stays 200 while draining is seen), shorter than the call timeout
PG_HOLD_MS = 2500.0


def _sigterm_mid_call(run: LifecycleRun, cluster: AdhocCluster, proxy: LinkProxy, poller: ReadyPoller,
                      proc: Any, gate_api: str) -> None:
    """Slow the node's PostgreSQL replies so a call is in flight, SIGTERM, probe, then let it finish."""
    tag = secrets.token_hex(3)
    before = proxy.bytes_up("pg")
    proxy.delay("pg", PG_HOLD_MS, "downstream")
    try:
        call = BackgroundCall(gate_api, f"cf-life-inflight-{tag}", timeout=run.grace + 10.0)
        run.inflight_at_term = wait_for("the call reached PostgreSQL (in flight in the node)",
                                        lambda: proxy.bytes_up("pg") > before and not call.done(), 5.0)
        run.t_term = time.monotonic()
        proc.signal(signal.SIGTERM)
        wait_for("node /ready not 200 after SIGTERM", lambda: poller.not_ready_after("node", run.t_term or 0.0),
                 1.5)
        run.new_call = call_counter(gate_api, f"cf-life-new-{tag}", timeout=1.5)
    finally:
        proxy.clear("pg")
    run.inflight = call.join(run.grace + 10.0)
    remaining = max(0.1, run.grace - (time.monotonic() - run.t_term))
    run.exit_code = proc.wait(remaining)
    run.exit_s = time.monotonic() - run.t_term
    if run.exit_code is None:  # still running past the grace: what Kubernetes would do
        cluster.stop("node", grace=0.0)
        run.exit_code = proc.returncode


# ===================================================================== environment (§2.3, §2.4)
@dataclass
class EnvRun:
    observations: dict[str, InstanceObservation] = field(default_factory=dict)
    expected: dict[str, str] = field(default_factory=dict)
    pod_metrics: Samples | None = None
    quiet_log: str = ""
    notes: list[str] = field(default_factory=list)
    #: observation name -> why it cannot be made on this platform (its checks are not applicable)
    not_applicable: dict[str, str] = field(default_factory=dict)
    #: observation name -> why it was not made although it could be (its checks are unknown)
    not_made: dict[str, str] = field(default_factory=dict)


POD_NAME = "env-pod-0"
POD_IP = "127.0.0.2"  # a loopback alias: reachable, and unlike anything a default would produce
INVALID_VARIABLE = "GOVERSE_POSTGRES_PORT"


def env_experiment(dep: Any, timeout: float = 25.0, with_pod: bool = True) -> EnvRun:
    """Start one node per override, each with a config that is wrong without it; watch them register.
    ``with_pod=False`` leaves out the ``POD_NAME``/``POD_IP`` node (a platform whose stack runs in pods
    observes §2.4 on the stack's own pods: :func:`pod_identity_experiment`)."""
    run = EnvRun()
    password = pg_password(dep)
    cluster = AdhocCluster.create(dep, "env")
    try:
        endpoints = ",".join(cluster.instance_etcd())
        dead_etcd = f"http://127.0.0.1:{free_port()}"  # nothing listens there (in a pod's own network too)
        plans: dict[str, tuple[dict[str, Any], dict[str, str | None], list[str], NodeAddr]] = {}

        def plan(name: str, mutate: Any, env: dict[str, str | None], with_id: bool = True) -> None:
            addr = cluster.node_addr(f"env-{name}") if name != "pod" else cluster.node_addr(POD_NAME)
            doc = cluster.config([addr])
            mutate(doc)
            plans[name] = (doc, env, ["--node-id", addr.id] if with_id else [], addr)

        plan("etcd", lambda d: d["cluster"]["etcd"].update(endpoints=[dead_etcd]),
             {"GOVERSE_ETCD_ENDPOINTS": endpoints})
        # the same node shows LOG_LEVEL (2.6-log-level): one process less to start on a small machine,
        # and neither variable bears on what the other check looks at (its id; its log's levels)
        plan("nodeid", lambda d: None, {"GOVERSE_NODE_ID": "env-nodeid", "LOG_LEVEL": "warn"}, with_id=False)
        plan("pgpass", lambda d: [d["postgres"].pop(k, None) for k in ("password_file", "password")],
             {"GOVERSE_POSTGRES_PASSWORD": password})
        plan("invalid", lambda d: None, {INVALID_VARIABLE: "not-a-port"})
        pod_ops = free_port()

        def pod(d: dict[str, Any]) -> None:
            entry = d["nodes"][0]
            port = entry["grpc_addr"].rsplit(":", 1)[1]
            entry.update(grpc_addr=f"0.0.0.0:{port}", http_addr=f"127.0.0.1:{pod_ops}")
            entry.pop("advertise_addr", None)
            run.expected["pod_advertise"] = f"{POD_IP}:{port}"

        if with_pod:
            plan("pod", pod, {"POD_NAME": POD_NAME, "POD_IP": POD_IP, "POD_NAMESPACE": "gvh-conformance",
                              "NODE_NAME": "local"}, with_id=False)
            run.expected.update(pod_name=POD_NAME)
        run.expected.update(node_id="env-nodeid", invalid_variable=INVALID_VARIABLE, etcd_env=endpoints,
                            etcd_dead=dead_etcd)
        procs = {name: cluster.spawn("node", name, cluster.write(name, doc), env=env, args=args)
                 for name, (doc, env, args, _addr) in plans.items()}
        deadline = time.monotonic() + timeout
        for name, proc in procs.items():
            addr = plans[name][3]
            expected = (run.expected["pod_advertise"] if name == "pod"
                        else f"{cluster.host_of(proc, addr.host)}:{addr.api_port}")
            run.observations[name] = cluster.observe(name, proc, max(0.5, deadline - time.monotonic()),
                                                     [password], expected_advertise=expected)
        if with_pod and run.observations["pod"].registered:
            run.pod_metrics = read_metrics(f"http://127.0.0.1:{pod_ops}")
        run.observations["quiet"] = run.observations["nodeid"]
        cluster.stop("nodeid", grace=5.0)  # its shutdown is part of what LOG_LEVEL=warn must keep quiet
        run.quiet_log = cluster.log("nodeid")
    finally:
        cluster.stop_all()
    return run


#: the observations only the environment batch makes (§2.3, 2.6-log-level): on a platform whose stack
#: runs in pods §2.4 is observed on the stack's own pods, these on ad-hoc pods
ENV_BATCH = ("etcd", "nodeid", "pgpass", "invalid", "quiet")


def _quietly(probe: Any) -> bool:
    try:
        return bool(probe())
    except Exception:  # noqa: BLE001 - the thing observed may be slow or restarting: try again
        return False


def pod_identity_experiment(dep: Any, instance: str = "node-0", timeout: float = 30.0) -> EnvRun:
    """§2.4 on a platform whose nodes *are* pods: the stack's own node pod gets ``POD_NAME`` and
    ``POD_IP`` from the downward API and neither a node id nor an advertise address from anything
    else (the manifests give none), so the id and address it registered in etcd show whether it
    took them from there. Its ``/metrics`` feed 2.5-pod-info-metric."""
    import etcd3gw

    run = EnvRun()
    ident = dep.pod_identity(instance)
    inst = dep.instance(instance)
    port = int((inst.api_url or "").rsplit(":", 1)[-1])
    run.expected.update(pod_name=ident["POD_NAME"], pod_advertise=f"{ident['POD_IP']}:{port}",
                        node_id=ident["POD_NAME"], invalid_variable=INVALID_VARIABLE)
    host, eport = dep.endpoints().etcd[0].split("://", 1)[-1].rsplit(":", 1)
    client = etcd3gw.client(host=host, port=int(eport), timeout=2.0)
    info_prefix = f"{dep.spec.prefix.rstrip('/')}/refstack/info/node/"
    seen: dict[str, Any] = {}

    def look() -> bool:
        """The pod's membership key (by its IP) and the info record under that address."""
        registered = dep.cluster_state().nodes
        seen["advertise"] = next((a for a in registered if a.rsplit(":", 1)[0] == ident["POD_IP"]), None)
        records: dict[str, dict[str, Any]] = {}
        for value, meta in client.get_prefix(info_prefix):
            key = meta["key"].decode() if isinstance(meta["key"], bytes) else str(meta["key"])
            with contextlib.suppress(ValueError):
                records[key[len(info_prefix):]] = json.loads(value)
        seen["node_id"] = records.get(seen["advertise"] or "", {}).get("id")
        return seen["advertise"] is not None and seen["node_id"] is not None

    t0 = time.monotonic()
    # a running pod registers within its start-up; a loaded etcd may answer late (a read error is a miss)
    wait_for(f"{ident['POD_NAME']} registered in etcd", lambda: _quietly(look), timeout, interval=0.25)
    run.observations["pod"] = InstanceObservation(name=ident["POD_NAME"], registered=seen.get("advertise") is not None,
                                                  advertise=seen.get("advertise"), node_id=seen.get("node_id"),
                                                  waited_s=round(time.monotonic() - t0, 2))
    ops_url = inst.ops_url

    def metrics_read() -> bool:
        run.pod_metrics = read_metrics(ops_url) if ops_url else None
        return run.pod_metrics is not None

    wait_for("the node's /metrics answered", metrics_read, 10.0 if ops_url else 0.0, interval=0.5)
    return run


def pod_platform_env_experiment(dep: Any, timeout: float = 60.0) -> EnvRun:
    """§2.4 on the stack's own pods (:func:`pod_identity_experiment`), §2.3 and 2.6-log-level on ad-hoc
    pods (:func:`env_experiment` without its ``POD_NAME`` node: the pods get theirs from the downward
    API). ``timeout`` covers scheduling and starting five pods at once on a small cluster. A platform
    without ad-hoc instances makes the batch's checks not applicable; a batch that failed makes them
    unknown — the §2.4 observations stand either way."""
    run = pod_identity_experiment(dep)
    reason = unsupported_reason(dep)
    if reason:
        run.not_applicable = dict.fromkeys(ENV_BATCH, reason)
        return run
    try:
        batch = env_experiment(dep, timeout=timeout, with_pod=False)
    except Exception as exc:  # noqa: BLE001 - the batch's checks say unknown, the pod's stand
        run.not_made = dict.fromkeys(ENV_BATCH, f"the environment batch failed: {type(exc).__name__}: {exc}")
        return run
    run.observations.update({k: v for k, v in batch.observations.items() if k in ENV_BATCH})
    run.expected.update({k: batch.expected[k] for k in ("node_id", "etcd_env", "etcd_dead")})
    run.quiet_log = batch.quiet_log
    run.notes += batch.notes
    return run


# ================================================================== graceful stop under load (§2.2)
@dataclass
class SigtermRun:
    victim: str
    grace: float
    rc: int | None = None
    t_term: float = 0.0
    t_exit: float = 0.0
    owned_before: int = 0
    samples: list[OwnershipSample] = field(default_factory=list)
    writes: CheckResult | None = None
    acked: int = 0
    restarted: bool = False
    notes: list[str] = field(default_factory=list)


def sigterm_experiment(dep: Any, history_path: Path) -> SigtermRun:
    """SIGTERM one node of the shared stack while clients write through the gates, watch etcd, then
    start it again and wait for convergence (the stack is left as it was found)."""
    from harness.workload.runner import Workload, WorkloadSpec

    nodes = sorted(i.name for i in dep.instances("node") if i.running)
    run = SigtermRun(victim=nodes[-1], grace=dep.spec.timers.shutdown_grace)
    t = dep.spec.timers

    # the victim is followed by its advertise address, taken before the SIGTERM: a name mapping may
    # forget a terminating instance (a deleted pod leaves the live pod list at once) and would then
    # read its keys, still in etcd, as released
    victim_addr = next((a for a, n in dep.advertise_names().items() if n == run.victim), None)

    def sample() -> OwnershipSample:
        if victim_addr is None:
            smap = dep.shard_map()
            return OwnershipSample(time.monotonic(), run.victim in dep.live_nodes(),
                                   sum(1 for _tg, cur in smap.values() if cur == run.victim))
        state = dep.cluster_state()
        return OwnershipSample(time.monotonic(), victim_addr in state.nodes,
                               sum(1 for _tg, cur in state.shards.values() if cur == victim_addr))

    recorder = Recorder(history_path, meta={"scenario": "conformance.2.2-sigterm"})
    spec = WorkloadSpec(shards=dep.spec.shards, timeout=t.call_timeout + 3, counter_rate=30.0, probe_hz=10.0)
    wl = Workload(recorder, dep.gate_urls(), spec, run_tag=f"cf{secrets.token_hex(2)}")

    def acked() -> int:
        return sum(1 for o in recorder.history().ops("increment") if o.type == "ok")

    try:
        with sampling(sample) as samples, wl.running():
            wait_for("baseline: 20 acknowledged writes", lambda: acked() >= 20, 10.0)
            run.owned_before = sample().owned
            if isinstance(dep, SelfRestarting):  # Kubernetes: SIGTERM by pod deletion, the pod comes back
                term = dep.terminate(run.victim)
                run.t_term, run.t_exit, run.rc = term.t_sigterm, term.t_exit, term.code
            else:
                run.t_term = time.monotonic()
                run.rc = dep.stop(run.victim, graceful=True)
                run.t_exit = time.monotonic()
            wait_for("an etcd sample after the exit", lambda: any(s.t > run.t_exit for s in samples), 5.0)
            dep.start(run.victim)
            try:
                dep.wait_converged(t.failover_budget() + 10.0)
                run.restarted = True
            except TimeoutError as exc:
                run.notes.append(f"the stack did not converge after restarting {run.victim}: {exc}")
            base = acked()
            wait_for("10 more acknowledged writes after convergence", lambda: acked() >= base + 10, 10.0)
        run.samples = list(samples)
        wl.final_reads()
        run.acked = acked()
        run.writes = check(recorder.history(), no_lost_writes(), reads_see_acknowledged())
    finally:
        recorder.close()
        if not any(i.running for i in dep.instances("node") if i.name == run.victim):
            dep.start(run.victim)
    return run


def metrics_under_load(dep: Any, calls: int = 30) -> tuple[dict[str, Samples | None], dict[str, Samples | None], int]:
    """Node metrics before and after ``calls`` Counter increments through the first gate."""
    nodes = {i.name: i.ops_url for i in dep.instances("node") if i.running and i.ops_url}
    before = {n: read_metrics(u) for n, u in nodes.items()}
    gate = next(iter(dep.gate_urls().values()))
    tag = secrets.token_hex(3)
    ok = sum(1 for i in range(calls) if call_counter(gate, f"cf-metrics-{tag}-{i}", timeout=5.0).ok)
    after = {n: read_metrics(u) for n, u in nodes.items()}
    return before, after, ok


def wait_until_converged(dep: Any, timeout: float) -> bool:
    try:
        wait_until(lambda: dep.cluster_state().converged, timeout, "shard map converged", interval=0.1)
        return True
    except TimeoutError:
        return False


__all__ = ["EnvRun", "LifecycleRun", "SigtermRun", "env_experiment", "lifecycle_experiment",
           "metrics_under_load", "pod_identity_experiment", "pod_platform_env_experiment", "sigterm_experiment",
           "wait_until_converged"]
