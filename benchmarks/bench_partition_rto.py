"""How exact is the RTO of a short gates→node partition on the real reference stack?

Deploys the reference stack with network namespaces (3 nodes, 2 gates), probes it at 20 Hz over every
gate, and cuts every gate from ``node-0`` (``Partition("gates-node", target="node-0")``) ``--repeat``
times, each held ``--hold`` seconds through the nemesis, with a quiet stretch between cuts. Each
repetition is measured by the code that fills run.json (``harness.checkers.measure``) and compared with
the **true outage** of docs/definitions.md ("True outage of a fault on a real stack"):

    true outage = [first moment a call invoked to a cut key is not served within the SLO,
                   first moment from which such calls are served within the SLO again)

which this script brackets from a dense truth probe: ``--truth-hz`` (default 200 Hz) probes on
node-0's keys only, over the same gates, measured with the same definitions. Its bracket is one
truth period wide (5 ms), so ``|RTO(20 Hz) − RTO(truth)|`` is the error of the 20 Hz measurement, up
to 5 ms. The SLO is ``--slo-ms`` (default 100 ms: shorter than the cut, so a call the cut stalled is
not served in time; with the 1000 ms default a 0.5 s stall counts as served, and there is no outage
to measure).

Printed per repetition: the requested and recorded hold, when the fault took effect and was gone
relative to the nemesis stamps, the measured and true RTO and their difference, the stack's own
recovery after the heal (true end − t_heal: TCP retransmission of the answers the cut dropped), the
worst probe lag; last, how many repetitions were within one probe period and the largest error.

    python benchmarks/bench_partition_rto.py [--repeat 12] [--hold 0.5] [--slo-ms 100]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from harness.checkers.availability import MeasureParams, probe_samples
from harness.checkers.measure import measure_fault
from harness.faults.nemesis import Nemesis
from harness.faults.spec import Partition
from harness.history import History, Recorder
from harness.platforms.base import StackSpec
from harness.platforms.local.deploy import LocalDeployment, LocalPlatform
from harness.scenario import PROBE_HZ_PER_NODE
from harness.sharding import shard_of
from harness.waiting import WaitTimeout, wait_until
from harness.workload.runner import Workload, WorkloadSpec

GAP_S = 1.0  # quiet time between cuts after the truth probe has been clean for W
RECOVERY_TIMEOUT_S = 40.0  # after a slow heal TCP backoff can keep the stack down for seconds


def owner_fn(dep: LocalDeployment) -> Callable[[str], str | None]:
    """Key -> the node serving it now, from the stack's shard map (as ``Scenario`` spreads its probes)."""
    owners, shards = dep.shard_map(), dep.spec.shards

    def owner_of(key: str) -> str | None:
        target, current = owners.get(shard_of(key, shards), (None, None))
        return current or target
    return owner_of


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=12)
    ap.add_argument("--hold", type=float, default=0.5)
    ap.add_argument("--hz", type=float, default=PROBE_HZ_PER_NODE, help="probe rate per node (as scenarios)")
    ap.add_argument("--hash-order", action="store_true",
                    help="the old probe: --hz in total, keys in hash order (not spread by owner)")
    ap.add_argument("--truth-hz", type=float, default=200.0)
    ap.add_argument("--slo-ms", type=float, default=100.0)
    args = ap.parse_args()
    params = MeasureParams(slo_ms=args.slo_ms)
    period = 1 / args.hz  # the period at which the cut node's keys are probed
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; hold {args.hold} s, probe "
          f"{args.hz:g} Hz, truth {args.truth_hz:g} Hz, slo {args.slo_ms:g} ms, W {params.stable_s:g} s")
    platform = LocalPlatform()
    with tempfile.TemporaryDirectory(prefix="gvh-bench-") as d:
        dep = platform.deploy(StackSpec(isolate_network=True), Path(d))
        try:
            rec = Recorder(meta={"slo_ms": args.slo_ms})
            nemesis = Nemesis(platform.injector(dep), rec)
            gates = dep.gate_urls()
            hz = args.hz if args.hash_order else args.hz * dep.spec.nodes
            spec = WorkloadSpec(shards=dep.spec.shards, probe_hz=hz, probe_keys=32, counter_rate=0.0,
                                timeout=dep.spec.timers.call_timeout + 3)
            wl = Workload(rec, gates, spec, run_tag="benchp")
            owner_of = owner_fn(dep)
            if not args.hash_order:
                wl.spread_probe_keys(owner_of)
            cut_keys = [k for k in (f"benchtruth-{i}" for i in range(400)) if owner_of(k) == "node-0"][:24]
            truth_spec = WorkloadSpec(shards=dep.spec.shards, probe_hz=args.truth_hz, probe_keys=len(cut_keys),
                                      counter_rate=0.0, timeout=spec.timeout)
            truth = Workload(rec, gates, truth_spec, run_tag="bencht")
            truth.probe_keys = cut_keys
            with wl.running(load=False), truth.running(load=False):
                threading.Event().wait(GAP_S)  # sleep-ok: a steady baseline before the first cut
                for _ in range(args.repeat):
                    nemesis.apply(Partition("gates-node", target="node-0"), hold=args.hold)
                    t_heal = rec.now()
                    # the next cut only once the stack recovered (truth clean for W), so no repetition
                    # measures the previous one's recovery
                    try:
                        wait_until(functools.partial(clean_since, rec, set(cut_keys), params, t_heal),
                                   RECOVERY_TIMEOUT_S, "the truth probe to be clean for W after the heal")
                    except WaitTimeout as exc:  # a machine too loaded to serve in the SLO: say so, go on
                        print(f"  (after cut at {t_heal:.1f}s: {exc}; load {os.getloadavg()[0]:.1f})")
                    threading.Event().wait(GAP_S)  # sleep-ok: a short steady stretch before the next cut
            history = rec.history()
        finally:
            dep.teardown()
    return report(history, params, set(cut_keys), period, args)


def clean_since(rec: Recorder, keys: set[str], params: MeasureParams, t_heal: float) -> bool:
    """The truth probes of the last W + 0.2 s (all invoked after the heal) were all served in time."""
    now = rec.now()
    span = params.stable_s + 0.2
    if now - t_heal < span:
        return False
    recent = [s for s in probe_samples(rec.history(), params) if s.key in keys and s.t >= now - span]
    return bool(recent) and all(s.ok for s in recent)


def report(history: History, params: MeasureParams, truth_keys: set[str], period: float,
           args: argparse.Namespace) -> int:
    samples = probe_samples(history, params)
    probe = [s for s in samples if s.key not in truth_keys]
    dense = [s for s in samples if s.key in truth_keys]
    lags = [(e.t, e.value["lag_ms"]) for e in history.samples("harness-lag") if isinstance(e.value, dict)]
    faults = history.faults()
    within = n_starved = 0
    worst = 0.0
    for i, w in enumerate(faults):
        nxt = faults[i + 1].t_start if i + 1 < len(faults) else None
        m = measure_fault(probe, params, w, nxt)
        t = measure_fault(dense, params, w, nxt)
        res = w.result or {}
        lag = max((v for ts, v in lags if w.t_start - 0.5 <= ts <= (w.t_stop or ts) + 3.0), default=None)
        err = None if m.rto_s is None or t.rto_s is None else m.rto_s - t.rto_s
        ok = err is not None and abs(err) <= period
        starved = lag is not None and lag > params.starved_lag_ms  # a scenario's verdict: unknown
        if starved:
            n_starved += 1
        else:
            within += ok
            if err is not None:
                worst = max(worst, abs(err))
        t_stop = w.t_stop if w.t_stop is not None else float("nan")
        after = None if t.t_recovered is None else t.t_recovered - t_stop
        apply_ms, heal_ms = (w.t_start - w.params["apply_began_at"]) * 1000, (t_stop - res["heal_began_at"]) * 1000
        print(f"#{i + 1:2d} hold {w.actual_hold_s:.3f} (asked {w.requested_hold_s}) apply {apply_ms:4.1f} ms "
              f"heal {heal_ms:4.1f} ms"
              f" | RTO {_f(m.rto_s)} ({m.status}) true {_f(t.rto_s)} err {_f(err)} "
              f"{'starved' if starved else 'ok ' if ok else 'OFF'}"
              f" | dip {_f(_rel(m.t_dip, w.t_start))} true {_f(_rel(t.t_dip, w.t_start))}"
              f" | stack recovery after heal {_f(after)} | lag {lag} ms")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"within one probe period ({period:.3f} s) of the true outage: {within}/{len(faults) - n_starved} "
          f"(+{n_starved} starved: harness lag > {params.starved_lag_ms:g} ms, a scenario says unknown); "
          f"largest |RTO - true| {worst:.3f} s")
    return 0


def _rel(t: float | None, t0: float) -> float | None:
    return None if t is None else t - t0


def _f(x: float | None) -> str:
    return "  -   " if x is None else f"{x:+.3f}" if x < 0 else f"{x:.3f}"


if __name__ == "__main__":
    sys.exit(main())
