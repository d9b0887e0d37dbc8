"""What a scenario holds while it runs: its history, workloads, nemesis, observers and result.

Why a context object: a scenario should read like a specification (given a stack, when this happens,
then these invariants hold within these budgets). Everything that is bookkeeping — recording the merged
history, sampling the shard map, healing faults at the end, writing the result for the report — lives
here so the scenario body states only the experiment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness import capabilities
from harness.checkers.availability import MeasureParams
from harness.checkers.measure import LAG_INDEPENDENT, lag_by_phase, measure, starvation
from harness.checkers.verdict import Check, Checker, CheckResult, Verdict, check
from harness.faults.nemesis import Injector, Nemesis
from harness.history import NO_COMPLETION, History, Recorder
from harness.platforms.actions import BindsOperations
from harness.platforms.base import Deployment, Platform, Unsupported
from harness.readiness_poll import PlacementRecorder, ReadinessPoller
from harness.sharding import shard_of
from harness.waiting import WaitTimeout, wait_until
from harness.workload.runner import Workload, WorkloadSpec

if TYPE_CHECKING:
    from harness.platforms.operations import Operations
    from harness.settings import Settings

log = logging.getLogger(__name__)


# The probe's rate per node of the stack: a cut of one node of three is probed at 20 Hz, so its RTO is
# bracketed to one 50 ms period (docs/definitions.md); 3 nodes -> 60 probes/s over the whole cycle.
PROBE_HZ_PER_NODE = 20.0
IN_FLIGHT_GRACE_S = 1.0  # an op in flight longer than this is judged as not (yet) successful


class Scenario:
    """One scenario's run: use ``workload()``, ``nemesis``, ``observing()``, then ``conclude()``."""

    def __init__(self, scenario_id: str, directory: Path, deployment: Deployment, injector: Injector,
                 settings: Settings | None, seed_tag: str, platform: Platform | None = None) -> None:
        self.id = scenario_id
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.deployment = deployment
        self.settings = settings
        self.platform = platform
        # the SLO and what the stack exposes travel with the history, so an offline rebuild judges
        # with the same SLO and says not-applicable for the same reasons
        slo_ms = float(getattr(settings, "slo_ms", None) or MeasureParams().slo_ms)
        spec = getattr(deployment, "spec", None)  # None: a scenario built without a stack (unit tests)
        self.capabilities = capabilities.for_spec(spec) if spec is not None else None
        starved_lag_ms = float(getattr(settings, "starved_lag_ms", None) or MeasureParams().starved_lag_ms)
        meta: dict[str, Any] = {"scenario": scenario_id, "slo_ms": slo_ms, "starved_lag_ms": starved_lag_ms}
        if self.capabilities is not None:
            meta[capabilities.META_KEY] = self.capabilities.to_meta()
        self.recorder = Recorder(self.dir / "history.jsonl", meta=meta)
        self.nemesis = Nemesis(injector, self.recorder)
        if platform is not None and isinstance(injector, BindsOperations):
            # operator-action faults record their inner windows and samples into this history
            injector.use_operations(lambda: platform.operations(deployment, self.recorder))
        self.workloads: list[Workload] = []
        self.extra: dict[str, Any] = {}
        self.result: CheckResult | None = None
        self.concluded = False
        self._tag = seed_tag

    # ---- building blocks -------------------------------------------------------------------------
    @property
    def counter_type(self) -> str:
        """The object type the counter workloads call (setting ``object_type``, default Counter)."""
        return str(getattr(self.settings, "object_type", None) or "Counter")

    def workload(self, **overrides: Any) -> Workload:
        """A counter (and optionally wallet) workload plus the 20 Hz probe, over every gate."""
        stack = self.deployment.spec
        spec = dataclasses.replace(WorkloadSpec(shards=stack.shards, timeout=stack.timers.call_timeout + 3,
                                                probe_hz=PROBE_HZ_PER_NODE * max(1, stack.nodes),
                                                counter_type=self.counter_type),
                                   **overrides)
        # real Goverse takes reliable calls only on its gates' gRPC listeners (reference: HTTP extension)
        grpc_gates = getattr(self.deployment, "gate_grpc_addrs", None)
        wl = Workload(self.recorder, self.deployment.gate_urls(), spec, run_tag=f"{self._tag}{len(self.workloads)}",
                      grpc_gates=grpc_gates if grpc_gates is not None and self.deployment.spec.stack == "goverse"
                      else None)
        self._spread_probes(wl)
        self.workloads.append(wl)
        if spec.burst_at_inject > 0:
            self.nemesis.before_inject.append(wl.burst)
        return wl

    def _spread_probes(self, wl: Workload) -> None:
        """Space each node's probe keys evenly in the probe cycle, by the shard map at this moment
        (docs/definitions.md, Availability): a cut of one node is then probed every ``nodes``-th
        probe, i.e. at ``PROBE_HZ_PER_NODE``. Without a readable shard map the hash order stays."""
        try:
            owners = self.deployment.shard_map()
        except Exception as exc:  # noqa: BLE001 - a stack that cannot say keeps the plain order
            log.info("probe keys in hash order: no shard map (%s)", exc)
            return
        shards = self.deployment.spec.shards

        def owner_of(key: str) -> str | None:
            target, current = owners.get(shard_of(key, shards), (None, None))
            return current or target

        wl.spread_probe_keys(owner_of)

    def operations(self, on_endpoints: Callable[[dict[str, str]], None] | None = None,
                   record: bool = True) -> Operations:
        """The platform's operator actions on this stack, recording their windows into this history
        (``record=False``: set-up steps outside the experiment; ``on_endpoints``: e.g. the workload's
        ``set_gates``, so clients follow a roll). A platform without them raises ``Unsupported``.

        Recorded ones are also handed to the nemesis, so operator-action faults (``ScaleTo``,
        ``UpdateConfig``…, applied with ``scenario.nemesis``) publish gates to the same workload."""
        if self.platform is None:
            raise Unsupported("this scenario was made without a platform: no operator actions")
        ops = self.platform.operations(self.deployment, self.recorder if record else None, on_endpoints)
        if record and isinstance(self.nemesis.injector, BindsOperations):
            self.nemesis.injector.use_operations(ops)  # the nemesis's operator actions use these from now on
        return ops

    @contextlib.contextmanager
    def observing(self, interval: float = 0.25, readiness: bool = False) -> Iterator[None]:
        """Sample the cluster's shard map into the history while the block runs (the C oracle).

        ``readiness``: also record every node's and gate's ``/ready`` answers and the shard map's settled
        owners, as they change (``harness/readiness_poll.py``), for ``ready_means_serving``."""
        stop = threading.Event()
        names = self.deployment.advertise_names()
        placement = PlacementRecorder(self.recorder, self.deployment.spec.shards) if readiness else None

        def loop() -> None:
            while not stop.is_set():
                try:
                    st = self.deployment.cluster_state()
                    if not st.nodes <= names.keys():  # a node joined (a scale-up, a replaced pod's new IP)
                        names.update(self.deployment.advertise_names())
                    self.recorder.sample("shardmap", st.summary(names))
                    if placement is not None:
                        placement.observe(st, self.deployment.advertise_names())
                except Exception as exc:  # noqa: BLE001 - etcd may be the thing under fault
                    self.recorder.sample("shardmap", {"error": repr(exc)[:200]})
                stop.wait(interval)

        threads = [threading.Thread(target=loop, name="shardmap-sampler", daemon=True)]
        if readiness:
            poller = ReadinessPoller(self.recorder, lambda: self.deployment.instances())
            threads.append(threading.Thread(target=poller.run, args=(stop,), name="readiness-poller", daemon=True))
        for th in threads:
            th.start()
        try:
            yield
        finally:
            stop.set()
            for th in threads:
                th.join(5)

    def settle(self, seconds: float, why: str = "steady phase") -> None:
        """Keep the current phase running for ``seconds`` (a baseline or after-phase of the scenario)."""
        self.recorder.log(f"settle {seconds}s: {why}")
        threading.Event().wait(seconds)  # sleep-ok: a phase's length is the subject here

    def settle_clean(self, seconds: float, why: str, timeout: float, fs: tuple[str, ...] = ("probe",)) -> bool:
        """``settle`` for the after phase, then keep observing (up to ``timeout``) until every probe of
        the last ``seconds`` (at least a whole recovery window, w + W + 0.5 s) succeeded (``fs``: the
        op kinds judged — the chaos scenarios add writes, whose recovery after a heal they check).

        Why: a disturbance may start late (a lease that ran out during a fault expires just after the
        heal), and a history that ends inside a dip, or before a whole recovery window, reads as
        "never recovered" even when the stack recovers a moment later. False (and a log line) if the
        tail never came clean."""
        self.settle(seconds, why)
        # the tail must hold a whole recovery as the measurement defines it (w + W, docs/definitions.md)
        m = MeasureParams()
        tail = max(seconds, m.window_s + m.stable_s + 0.5)
        if self.wait_ops_ok(timeout, fs, window_s=tail, lag_s=0.0):
            return True
        self.recorder.log(f"{', '.join(fs)} ops not clean for {tail:g}s within {timeout:g}s of the after phase")
        return False

    def wait_ops_ok(self, timeout: float, fs: tuple[str, ...] = ("probe",), window_s: float = 1.0,
                    lag_s: float = 1.0) -> bool:
        """Until every ``fs`` op invoked in the ``window_s`` before the last ``lag_s`` completed ok (at
        least a handful of them), or ``timeout`` (then False). An op still in flight counts as not ok
        once it is ``IN_FLIGHT_GRACE_S`` old (a call hanging on a cut node is the opposite of recovered);
        a younger one is not judged yet."""
        def ok() -> bool:
            h = self.recorder.history()
            recent = [o for o in h.ops(fs) if h.end - window_s - lag_s <= o.t_invoke <= h.end - lag_s
                      and not (o.error == NO_COMPLETION and h.end - o.t_invoke < IN_FLIGHT_GRACE_S)]
            return len(recent) >= 5 and all(o.type == "ok" for o in recent)
        try:
            wait_until(ok, timeout, f"{', '.join(fs)} ops to succeed again", interval=0.25)
        except WaitTimeout:
            return False
        return True

    def wait_converged(self, timeout: float) -> float:
        t0 = time.monotonic()
        self.deployment.wait_converged(timeout)
        took = time.monotonic() - t0
        self.recorder.log("converged", waited_s=round(took, 3))
        return took

    # ---- verdict ---------------------------------------------------------------------------------
    def conclude(self, *checkers: Checker, extra: dict[str, Any] | None = None) -> CheckResult:
        """Heal anything left, run the checkers over the history and write the scenario's result.

        A run whose harness was starved (its own scheduling lag over ``starved_lag_ms`` while it
        measured) cannot be judged on timing: its verdict is ``unknown`` with the reason (the checks'
        details stay in the reason and checks.json) — unless a check judged on values and real-time
        order alone (``LAG_INDEPENDENT``: lost writes, stale reads, ...) failed: lag cannot fake that
        evidence, so the verdict is ``fail``, and the reason says the timing was not judged."""
        self.nemesis.heal_all()
        if extra:
            self.extra.update(extra)
        history = self.recorder.history()
        result = check(history, *checkers)
        self.extra["harness_lag"] = lag_by_phase(history)
        self.extra["starved_lag_ms"] = MeasureParams.for_history(history).starved_lag_ms
        starved = starvation(history)
        if starved is not None:
            self.extra["starved"] = {"t": starved.t, "lag_ms": starved.lag_ms, "worst_ms": starved.worst_ms,
                                     "threshold_ms": starved.threshold_ms}
            evidence = [c for c in result.checks if c.verdict is Verdict.FAIL and c.name in LAG_INDEPENDENT]
            checks_said = ("; the checks passed" if result.passed
                           else f"; the checks said: {result.explain()}")
            result = CheckResult((*result.checks, Check("measurement_valid", Verdict.UNKNOWN, starved.reason,
                                                        self.extra["starved"])))
            self.result = result
            if evidence:  # a lost write is lost however late the harness was: fail, timing not judged
                self.extra["starved"]["kept_fail_of"] = [c.name for c in evidence]
                names = ", ".join(c.name for c in evidence)
                self._write(history, result, verdict="fail",
                            reason=f"{names} failed (judged on values and order, valid under lag); timing "
                                   f"checks not judged: {starved.reason}{checks_said}")
            else:
                self._write(history, result, reason=starved.reason + checks_said, verdict="unknown")
        else:
            self.result = result
            self._write(history, result, reason=None if result.passed else result.explain())
        self.concluded = True
        if self.result.verdict is Verdict.NOT_APPLICABLE:  # fails nothing, passes nothing: an explained skip
            pytest.skip(f"not applicable: {self.result.reason()}")
        return self.result

    def record_outcome(self, verdict: str, reason: str) -> None:
        """For the plugin: a scenario that raised, was skipped, or never concluded still gets a result."""
        if self.concluded:
            return
        self.nemesis.heal_all()
        for wl in self.workloads:
            with contextlib.suppress(Exception):
                wl.stop()
        history = self.recorder.history()
        self._write(history, None, reason=reason, verdict=verdict)
        self.concluded = True

    def _write(self, history: History, result: CheckResult | None, reason: str | None,
               verdict: str | None = None) -> None:
        from harness.report.results import ScenarioResult, write_scenario_result

        m = measure(history)
        self.recorder.close()
        sr = ScenarioResult.from_check(
            scenario_id=self.id,
            result=result,
            measurements=m,
            history=history,
            reason=reason,
            verdict=verdict,
            extra=self.extra,
        )
        write_scenario_result(self.dir, sr, history, checks=result, measurements=m)


@contextlib.contextmanager
def unsupported_is_skip() -> Iterator[None]:
    """A fault or operation this platform cannot apply is an explained skip (the reason lands in the
    report and the run summary), never a silent pass."""
    try:
        yield
    except Unsupported as exc:
        pytest.skip(f"unsupported on this platform: {exc}")
