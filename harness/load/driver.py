"""The load driver a scenario uses: run locust against the scenario's stack, mark phases, merge the raw
samples into the scenario's history, read back the final values, and produce the numbers and plots.

Why a driver object per scenario: the scenario body should read like the experiment ("steady load;
roll every node; then compare the phases"), while the bookkeeping that must never be skipped lives here
— locust stopped on every exit path, every sample merged (completeness recorded), every phase written
into the history so the load numbers can be re-derived offline like every other verdict.

Profiles: ``short`` (CI: each phase a few seconds) and ``release`` (minutes per phase, for release load
reports); ``GVH_LOAD_PROFILE`` picks one, and ``GVH_LOAD_SCALE`` (duration multiplier), ``GVH_LOAD_RATE``
(baseline offered req/s), ``GVH_LOAD_WORKERS`` (locust workers; 0 = one local process),
``GVH_LOAD_KEYS``, ``GVH_LOAD_DIST``, ``GVH_LOAD_MIX`` and ``GVH_LOAD_USER_RATE`` adjust it.

``GVH_LOAD_PG_LATENCY_MS`` adds that much latency on every node → PostgreSQL link (through the stack's
TCP fault proxy) for the whole load scenario: a stand-in for "a slower release", used to prove that
``goverse-harness load-report --compare`` flags a regression. It is recorded in the history and the
report, so such a run can never pass for a normal one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import wire
from harness.checkers.load_analysis import CPU_SAMPLE, PHASE_LOG, RUN_LOG, SAMPLES_LOG, LoadAnalysis, analyze
from harness.history import Event
from harness.load.generator import GeneratorSpec, LocustGenerator, shapes_module
from harness.load.samples import SampleMerger, SampleStats, completeness, read_samples, read_usage
from harness.platforms.base import PostgresLinkDelay, Unsupported
from harness.workload.gate_client import GateClient
from harness.workload.lagwatch import LagWatch

log = logging.getLogger(__name__)

INJECT_PG_LATENCY_ENV = "GVH_LOAD_PG_LATENCY_MS"


@dataclass(frozen=True)
class LoadProfile:
    """Rates and durations of the load scenarios (seconds, requests per second)."""

    name: str = "short"
    rate: float = 150.0  # baseline offered rate, well below this machine's knee
    steady_s: float = 6.0
    step_start: float = 100.0
    step: float = 150.0  # 100 … 1000 req/s: past this machine's knee even when it is quiet
    steps: int = 7
    step_s: float = 4.0
    before_s: float = 3.0
    after_s: float = 4.0
    hold_s: float = 1.0
    warmup_s: float = 1.0  # trimmed from the start of every step (users spawning)
    keys: int = 200
    wallets: int = 20
    dist: str = "uniform"
    mix: str = "increment:6,read:3,deposit:1"
    user_rate: float = 5.0
    workers: int | None = None

    def scaled(self, factor: float) -> LoadProfile:
        if factor <= 0:
            raise ValueError(f"GVH_LOAD_SCALE must be > 0, got {factor}")
        return dataclasses.replace(self, steady_s=self.steady_s * factor, step_s=self.step_s * factor,
                                   before_s=self.before_s * factor, after_s=self.after_s * factor,
                                   hold_s=self.hold_s * factor)

    def has_op(self, op: str) -> bool:
        """Whether the mix issues ``op`` at all (e.g. no wallet checker without deposits)."""
        for part in self.mix.split(","):
            name, _, w = part.strip().partition(":")
            if name == op and float(w or 1) > 0:
                return True
        return False

    def step_shape(self) -> str:
        return (f"step:start={self.step_start:g},step={self.step:g},steps={self.steps},"
                f"step_s={self.step_s:g}")


PROFILES: dict[str, LoadProfile] = {
    "short": LoadProfile(),
    "release": LoadProfile(name="release", rate=200.0, steady_s=60.0, steps=8, step_s=30.0, before_s=30.0,
                           after_s=30.0, hold_s=20.0, warmup_s=3.0, keys=2000, wallets=200),
}


def profile_from_env(env: Mapping[str, str] | None = None) -> LoadProfile:
    """The profile named by ``GVH_LOAD_PROFILE`` (default short) with the ``GVH_LOAD_*`` overrides."""
    env = os.environ if env is None else env
    name = env.get("GVH_LOAD_PROFILE", "short")
    if name not in PROFILES:
        raise ValueError(f"GVH_LOAD_PROFILE={name!r}: expected one of {', '.join(PROFILES)}")
    p = PROFILES[name]
    if env.get("GVH_LOAD_SCALE"):
        p = p.scaled(float(env["GVH_LOAD_SCALE"]))
    over: dict[str, Any] = {}
    for var, fld, conv in (("GVH_LOAD_RATE", "rate", float), ("GVH_LOAD_KEYS", "keys", int),
                           ("GVH_LOAD_USER_RATE", "user_rate", float), ("GVH_LOAD_DIST", "dist", str),
                           ("GVH_LOAD_MIX", "mix", str), ("GVH_LOAD_WORKERS", "workers", int)):
        if env.get(var):
            over[fld] = conv(env[var])
    return dataclasses.replace(p, **over)


class LoadRun:
    """One locust run inside a scenario: its generator, schedule and start on the history clock."""

    def __init__(self, gen: LocustGenerator, shape: str, user_rate: float, t0: float) -> None:
        self.gen = gen
        self.shape = shape
        self.schedule = shapes_module().parse(shape)
        self.user_rate = user_rate
        self.t0 = t0  # history-clock time the shape started

    def offered_between(self, a: float, b: float) -> float | None:
        """Average offered rate over ``[a, b)`` of the history clock (users × per-user rate)."""
        if b <= a:
            return None
        sh = shapes_module()
        total = 0.0
        for st in self.schedule.stages:
            s0 = self.t0 + st.start_s
            s1 = self.t0 + st.end_s if st.end_s is not None else float("inf")
            overlap = min(b, s1) - max(a, s0)
            if overlap > 0:
                total += overlap * sh.offered_rate(st.rate, self.user_rate)
        return total / (b - a)


class LoadDriver:
    """Load for one scenario (``scenario`` is a :class:`harness.scenario.Scenario`)."""

    def __init__(self, scenario: Any, profile: LoadProfile | None = None) -> None:
        self.sc = scenario
        self.profile = profile or profile_from_env()
        self.recorder = scenario.recorder
        self.merger = SampleMerger(self.recorder)
        self.active: LoadRun | None = None
        self._n = 0
        self._injected: list[Callable[[], None]] = []
        self.injected: dict[str, Any] = {}
        self.plots: list[str] = []

    # ---- generator ---------------------------------------------------------------------------
    def spec(self, shape: str, **overrides: Any) -> GeneratorSpec:
        dep = self.sc.deployment
        p = self.profile
        tag = getattr(self.sc, "_tag", "") or "x"
        base = GeneratorSpec(gates=dep.gate_urls(), shape=shape, mix=p.mix, keys=p.keys, wallets=p.wallets,
                             dist=p.dist, prefix=f"lt{tag}r{self._n}", user_rate=p.user_rate,
                             timeout=dep.spec.timers.call_timeout + 3.0, workers=p.workers,
                             seed=int(getattr(self.sc.settings, "seed", 0) or 0),
                             counter_type=str(getattr(self.sc.settings, "object_type", None) or "Counter"))
        return dataclasses.replace(base, **overrides)

    @contextlib.contextmanager
    def running(self, shape: str, **overrides: Any) -> Iterator[LoadRun]:
        """locust runs ``shape`` for the block (a finite shape may end earlier: see :meth:`wait`);
        on exit — also on failure or Ctrl-C — it is stopped and its samples are merged."""
        if self.active is not None:
            raise RuntimeError("a load run is already active in this scenario")
        spec = self.spec(shape, **overrides)
        gen = LocustGenerator(spec, self.sc.dir / "load" / f"run-{self._n}")
        self._n += 1
        # the harness's own lag while the load runs: a starved machine makes the scenario unknown,
        # not a throughput/p99 failure (docs/definitions.md, harness starvation)
        with LagWatch(self.recorder, source="load",
                      pids=lambda: [p.pid for p in gen.processes if p.pid is not None and p.is_running()]):
            try:
                t0_wall = gen.start()
                run = LoadRun(gen, shape, spec.user_rate, self.recorder.from_wall(t0_wall))
                self.active = run
                self.recorder.log(RUN_LOG, shape=shape, t0=round(run.t0, 6), user_rate=spec.user_rate,
                                  workers=spec.n_workers, keys=spec.keys, wallets=spec.wallets, dist=spec.dist,
                                  mix=spec.mix, gates=sorted(spec.gates), prefix=spec.prefix,
                                  directory=str(gen.dir.relative_to(Path(self.sc.dir).resolve())),
                                  profile=self.profile.name)
                yield run
            finally:
                self.active = None
                gen.stop()
                self._collect(gen)

    def wait(self, run: LoadRun, slack_s: float = 30.0) -> None:
        """Block until a finite shape has run to its end (the load itself is the subject: no sleep)."""
        total = run.schedule.duration_s
        if total is None:
            raise ValueError(f"shape {run.shape!r} is open-ended: stop it by leaving the running() block")
        if not run.gen.wait(total + slack_s):
            raise TimeoutError(f"locust did not finish {run.shape!r} within {total + slack_s:.0f} s")

    def _collect(self, gen: LocustGenerator) -> None:
        stats = SampleStats()
        n = self.merger.merge(read_samples(gen.samples_dir, stats))
        for row in read_usage(gen.samples_dir):
            role = str(row.get("role", ""))
            proc = role if role.startswith("worker:") else str(row.get("process"))
            value = {k: v for k, v in row.items() if k not in ("t", "process")} | {"process": proc}
            self.recorder.add(Event(t=self.recorder.from_wall(float(row["t"])), type="sample", process="generator",
                                    f=CPU_SAMPLE, value=value))
        rec = completeness(gen.samples_dir)
        codes = {k: v for k, v in gen.exit_codes.items()}
        problems = [r["problem"] for r in rec if r.get("problem")]
        if not rec:
            problems.append("no generator process wrote a samples file")
        self.recorder.log(SAMPLES_LOG, run=gen.dir.name, samples=n, files=stats.files, bad_lines=stats.bad_lines,
                          exit_codes=codes, processes=rec, problem="; ".join(problems) or None)
        log.info("load: merged %d samples from %d files (%s)", n, stats.files, gen.dir)

    # ---- phases -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Mark the block as a named phase of the active run (offered rate from its schedule)."""
        run = self.active
        t_start = self.recorder.now()
        try:
            yield
        finally:
            t_end = self.recorder.now()
            offered = run.offered_between(t_start, t_end) if run is not None else None
            self.record_phase(name, t_start, t_end, offered, "phase")

    def record_phase(self, name: str, t_start: float, t_end: float, offered_rps: float | None,
                     kind: str = "phase") -> None:
        self.recorder.log(PHASE_LOG, name=name, t_start=round(t_start, 6), t_end=round(t_end, 6),
                          offered_rps=None if offered_rps is None else round(offered_rps, 3), kind=kind)

    def record_stages(self, run: LoadRun, warmup_s: float | None = None) -> None:
        """One ``stage`` phase per step of a finite shape, minus ``warmup_s`` at each step's start."""
        warm = self.profile.warmup_s if warmup_s is None else warmup_s
        sh = shapes_module()
        for st in run.schedule.stages:
            if st.end_s is None:
                continue
            a, b = run.t0 + st.start_s + warm, run.t0 + st.end_s
            if b > a:
                self.record_phase(st.name, a, b, sh.offered_rate(st.rate, run.user_rate), "stage")

    # ---- after the load -----------------------------------------------------------------------
    def final_reads(self, timeout: float = 60.0, concurrency: int = 32) -> dict[str, int | None]:
        """Read back every counter the load incremented and every wallet it deposited into, so the
        L and D checkers can compare final values with what was acknowledged."""
        history = self.recorder.history()
        counters = sorted({o.key for o in history.ops("increment", process_prefix="load-") if o.key})
        wallets = sorted({o.key for o in history.ops("deposit", process_prefix="load-") if o.key})
        return asyncio.run(self._final_reads(counters, wallets, timeout, concurrency))

    async def _final_reads(self, counters: list[str], wallets: list[str], timeout: float,
                           concurrency: int) -> dict[str, int | None]:
        gates = self.sc.deployment.gate_urls(only_running=True) or self.sc.deployment.gate_urls()
        names = sorted(gates)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        sem = asyncio.Semaphore(concurrency)
        out: dict[str, int | None] = {}
        tmo = self.sc.deployment.spec.timers.call_timeout + 3.0
        counter_type = str(getattr(self.sc.settings, "object_type", None) or "Counter")
        async with GateClient(gates, timeout=tmo, limit=concurrency) as client:
            async def one(i: int, key: str, wallet: bool) -> None:
                f = "final-balance" if wallet else "final-read"
                otype, method, req = (("Wallet", "GetBalance", wire.new("wallet.GetBalanceRequest")) if wallet
                                      else (counter_type, "Get", wire.new("counter.GetRequest")))
                attempt = 0
                while loop.time() < deadline:
                    gate = names[(i + attempt) % len(names)]
                    attempt += 1
                    async with sem:
                        op_id = self.recorder.invoke("final-load", f, key=key, node=gate)
                        res = await client.call(gate, otype, key, method, req)
                        value = None
                        if res.type == "ok" and res.message is not None:
                            d = wire.to_dict(res.message)
                            value = d.get("balance") if wallet else d.get("value")
                        self.recorder.complete(op_id, res.type, "final-load", f, key=key, value=value,
                                               error=None if res.type == "ok" else f"{res.code}: {res.error}",
                                               node=gate, extra=res.extra or None)
                    if res.type == "ok":
                        out[key] = value
                        return
                    await asyncio.sleep(0.1)  # sleep-ok: retry pacing for a key that is not served yet
                out[key] = None

            await asyncio.gather(*(one(i, k, False) for i, k in enumerate(counters)),
                                 *(one(i, k, True) for i, k in enumerate(wallets)))
        return out

    def analysis(self) -> LoadAnalysis:
        return analyze(self.recorder.history())

    def report(self) -> dict[str, Any]:
        """Analysis + plots for the scenario's result: ``extra`` for :meth:`Scenario.conclude` (the
        ``extra_plots`` names make report.html embed the load plots)."""
        from harness.load.plots import write_load_plots

        history = self.recorder.history()
        a = analyze(history)
        self.plots = write_load_plots(self.sc.dir, history, a)
        d = a.to_dict()
        if self.injected:
            d["injected"] = self.injected
            d["warnings"] = [f"INJECTED REGRESSION (not a real measurement of the stack): "
                             f"{describe_injection(self.injected)}", *d["warnings"]]
        flat: dict[str, Any] = {"load": d, "extra_plots": list(self.plots), "load_profile": self.profile.name}
        if a.total is not None:
            flat.update(load_ok_rps=round(a.total.ok_rps, 1), load_error_rate=a.total.error_rate,
                        load_p99_ms=a.total.p99)
        if a.knee is not None:
            flat["load_knee_rps"] = a.knee.get("offered_rps")
            flat["load_max_throughput_rps"] = d["max_throughput_rps"]
        return flat

    # ---- a deliberately slower stack, for proving regression detection ----------------------------
    def inject_from_env(self) -> None:
        ms = os.environ.get(INJECT_PG_LATENCY_ENV)
        if not ms:
            return
        dep = self.sc.deployment
        why = (f"{INJECT_PG_LATENCY_ENV} needs the stack's node → PostgreSQL fault proxy "
               "(local platform, fault_proxies on)")
        if not isinstance(dep, PostgresLinkDelay):
            raise RuntimeError(why)
        try:
            links, undo = dep.delay_postgres_links(float(ms))
        except Unsupported as exc:
            raise RuntimeError(f"{why}: {exc}") from exc
        self._injected.append(undo)
        self.injected = {"kind": "latency", "links": links, "ms": float(ms), "env": INJECT_PG_LATENCY_ENV}
        self.recorder.log("load-injected", **self.injected)
        log.warning("load: injected %s ms on %s (%s)", ms, links, INJECT_PG_LATENCY_ENV)

    def close(self) -> None:
        """Heal the injected latency (the generator is stopped by ``running()`` itself)."""
        for undo in self._injected:
            with contextlib.suppress(Exception):
                undo()
        self._injected.clear()


def describe_injection(d: dict[str, Any]) -> str:
    """``+20 ms latency (both directions) on node-0->postgres, ... (GVH_LOAD_PG_LATENCY_MS)``."""
    if d.get("kind") == "latency":
        return (f"+{d.get('ms', 0):g} ms latency (both directions) on {', '.join(d.get('links') or [])} "
                f"({d.get('env', INJECT_PG_LATENCY_ENV)})")
    return str(d)
