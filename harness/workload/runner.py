"""Client load and the availability probe, run on one asyncio loop in a background thread.

Why open-loop and asyncio: the probe must keep its 20 Hz schedule while some calls hang until their
timeout (a dead owner), otherwise an outage would slow the probe and hide itself. Every call is its own
task; the schedule never waits for completions. One loop in one thread keeps a 2-core machine free for
the stack under test.

What is recorded (see harness/history.py): ``probe`` (Counter.Get over probe keys spread across shards),
``increment`` / ``read`` (Counter workload), ``deposit`` (Wallet reliable calls, with deliberate retries
of the same call_id) and, after the scenario, ``final-read`` / ``final-balance`` per key.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from harness import random as hrand
from harness import wire
from harness.history import Recorder
from harness.sharding import keys_covering_shards, shard_of
from harness.workload.gate_client import CallOutcome, GateClient


@dataclass(frozen=True)
class WorkloadSpec:
    """How much load, over which keys. Rates are total operations per second (open loop)."""

    shards: int = 64
    probe_hz: float = 20.0
    probe_keys: int = 32
    counter_keys: int = 16
    counter_rate: float = 40.0
    read_ratio: float = 0.25
    wallet_keys: int = 4
    wallet_rate: float = 0.0  # 0 disables the wallet workload (needs the reliable-call route)
    retry_ratio: float = 0.3  # share of acknowledged deposits re-sent with the same call_id
    # re-send a deposit whose outcome was unknown (info) with the same call_id, as a client that must
    # know does: a wallet op retries it before a new deposit, k seconds after its k-th attempt (a
    # failover takes seconds), until one attempt is answered ok, at most 8 attempts. Where duplicate
    # bugs live: a committed-but-unanswered deposit applied again (seeded bug no-dedup).
    retry_unknown: bool = False
    max_amount: int = 5
    timeout: float = 8.0
    key_prefix: str = "gvh"
    # Workload aimed at the fault: right before every fault the nemesis applies, ``burst_at_inject``
    # increments at once over the first ``burst_keys`` counter keys (hot keys: per-object locks queue
    # them inside the owner), plus a quarter as many deposits when wallets run; the fault lands
    # ``burst_lead_ms`` later, with the burst in flight. 0 disables it.
    burst_at_inject: int = 0
    burst_keys: int = 4
    burst_lead_ms: float = 20.0
    # the type the counter ops call (setting object_type): Counter's methods and messages on any
    # registered name, e.g. a Goverse node's PersistentCounter
    counter_type: str = "Counter"


class GatePicker:
    """Round-robin over gates, skipping a gate for ``cooloff`` s after a connection failure — the way a
    client library with several gate addresses fails over."""

    def __init__(self, gates: list[str], cooloff: float = 0.5) -> None:
        self.gates = list(gates)
        self._down_until: dict[str, float] = {}
        self._rr = itertools.cycle(range(len(gates)))
        self.cooloff = cooloff

    def pick(self) -> str:
        now = time.monotonic()
        for _ in range(len(self.gates)):
            g = self.gates[next(self._rr)]
            if self._down_until.get(g, 0.0) <= now:
                return g
        return self.gates[next(self._rr)]

    def report(self, gate: str, outcome: CallOutcome) -> None:
        if outcome.code == "CONNECT" or outcome.code == "NOT_READY":
            self._down_until[gate] = time.monotonic() + self.cooloff

    def set_gates(self, gates: list[str]) -> None:
        """Replace the gate list (a client's endpoint refresh after gates were scaled)."""
        self.gates = list(gates)
        self._rr = itertools.cycle(range(len(self.gates)))


def interleave(keys: list[str], owner_of: Callable[[str], str | None]) -> list[str]:
    """``keys`` reordered so the keys of each owner are spread evenly over the cycle: the j-th of an
    owner's n keys goes to position (j + 0.5) / n of the cycle (ties: owners in first-seen order).
    A cycle of 33 keys over 3 owners then probes each owner every third probe, never in runs."""
    groups: dict[str | None, list[str]] = {}
    for k in keys:
        groups.setdefault(owner_of(k), []).append(k)
    ranked = [((j + 0.5) / len(g), gi, k) for gi, g in enumerate(groups.values()) for j, k in enumerate(g)]
    return [k for _, _, k in sorted(ranked)]


class Workload:
    """Drives the stack through its gates and records everything into ``recorder``.

    Use ``with workload.running(): ...`` around the fault; then ``final_reads()``.
    """

    def __init__(self, recorder: Recorder, gate_urls: dict[str, str], spec: WorkloadSpec,
                 run_tag: str | None = None, grpc_gates: Callable[[], dict[str, str]] | None = None) -> None:
        self.recorder = recorder
        self.gate_urls = dict(gate_urls)
        # reliable calls over the gates' gRPC listeners (real Goverse), see GateClient; a callable so
        # that set_gates (gates scaled) can fetch the new gates' addresses too
        self._grpc_source = grpc_gates
        self.grpc_gates = dict(grpc_gates() if grpc_gates is not None else {})
        self.spec = spec
        self.rng = hrand.fork("workload")  # reproducible from the run seed
        tag = run_tag or uuid.uuid4().hex[:6]
        p = f"{spec.key_prefix}-{tag}"
        self.probe_keys = keys_covering_shards(f"{p}-probe-", spec.probe_keys, spec.shards)
        self.counter_keys = keys_covering_shards(f"{p}-ctr-", spec.counter_keys, spec.shards)
        self.wallet_keys = [f"{p}-wallet-{i}" for i in range(spec.wallet_keys)]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._acked_calls: list[tuple[str, str, int]] = []  # (wallet, call_id, amount) for retries
        # (due, wallet, call_id, amount, attempts): deposits of unknown outcome to re-send (retry_unknown)
        self._unknown_calls: list[tuple[float, str, str, int, int]] = []
        self._burst_counter_keys: list[str] = []  # aim_burst: the burst's keys instead of the first ones
        self._burst_wallets: list[str] = []
        self._picker: GatePicker | None = None
        self._client: GateClient | None = None
        self._lag: dict[str, float] = {}  # worst lateness (s) per source since the last lag sample
        self._burst_tasks: set[asyncio.Task[Any]] = set()

    def spread_probe_keys(self, owner_of: Callable[[str], str | None]) -> None:
        """Order the probe cycle so each owner's keys are evenly spaced in it (:func:`interleave`).

        Why: the probe cycles its keys in a fixed order; in hash order one node's keys come in
        irregular runs, so when only that node is cut the gaps between probes of its keys vary
        from one to several probe periods, and the end of its outage is bracketed that coarsely.
        Call before :meth:`start`."""
        if self._thread is not None:
            raise RuntimeError("spread_probe_keys: the workload is already running")
        self.probe_keys = interleave(self.probe_keys, owner_of)

    # ---- lifecycle ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def running(self, probe: bool = True, load: bool = True) -> Iterator[Workload]:
        self.start(probe=probe, load=load)
        try:
            yield self
        finally:
            self.stop()

    def start(self, probe: bool = True, load: bool = True) -> None:
        if self._thread is not None:
            raise RuntimeError("workload already running")
        self._started.clear()
        self._thread = threading.Thread(target=self._thread_main, args=(probe, load), name="workload",
                                        daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("workload loop did not start within 10 s")

    def stop(self, timeout: float | None = None) -> None:
        """Stop issuing new calls and wait for in-flight ones (bounded by the call timeout)."""
        if self._thread is None:
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout if timeout is not None else self.spec.timeout + 5)
        self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise RuntimeError(f"workload crashed: {err!r}") from err

    def set_gates(self, gate_urls: dict[str, str]) -> None:
        """Point clients at a new set of gates, also while running — what a client's endpoint list
        (a Kubernetes Service, DNS) does after gates were scaled: added gates get calls from now on,
        removed ones none. Until this is called, clients of a removed gate fail over only through
        :class:`GatePicker`'s cool-off on connection errors."""
        if not gate_urls:
            raise ValueError("set_gates: at least one gate is required")
        urls = dict(gate_urls)

        grpc = dict(self._grpc_source()) if self._grpc_source is not None else {}

        def apply() -> None:
            self.gate_urls = urls
            if grpc:
                self.grpc_gates.update(grpc)
            if self._client is not None:
                self._client.gate_urls.update(urls)
                self._client.set_grpc_gates(grpc)
            if self._picker is not None:
                self._picker.set_gates(sorted(urls))

        loop = self._loop
        if self._thread is not None and loop is not None and loop.is_running():
            done = threading.Event()

            def apply_and_signal() -> None:
                apply()
                done.set()
            loop.call_soon_threadsafe(apply_and_signal)
            if not done.wait(5):
                raise RuntimeError("workload loop did not apply the new gate list within 5 s")
        else:
            apply()

    def _thread_main(self, probe: bool, load: bool) -> None:
        try:
            asyncio.run(self._main(probe, load))
        except BaseException as exc:  # noqa: BLE001 - surfaced in stop()
            self._error = exc
            self._started.set()

    async def _main(self, probe: bool, load: bool) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        picker = self._picker = GatePicker(sorted(self.gate_urls))
        async with GateClient(self.gate_urls, timeout=self.spec.timeout, grpc_gates=self.grpc_gates) as client:
            self._client = client
            tasks: set[asyncio.Task[Any]] = set()
            schedules = []
            if probe and self.spec.probe_hz > 0:
                schedules.append(self._schedule(self.spec.probe_hz, self._probe_op(client, picker), tasks,
                                                "probe"))
            if load and self.spec.counter_rate > 0:
                schedules.append(self._schedule(self.spec.counter_rate, self._counter_op(client, picker),
                                                tasks, "counter"))
            if load and self.spec.wallet_rate > 0:
                schedules.append(self._schedule(self.spec.wallet_rate, self._wallet_op(client, picker),
                                                tasks, "wallet"))
            if schedules:
                schedules.append(self._watch_lag())
            self._started.set()
            await asyncio.gather(*schedules)
            self._client = None  # no burst starts once the schedules ended
            tasks |= self._burst_tasks
            if tasks:
                await asyncio.wait(tasks, timeout=self.spec.timeout + 2)

    async def _schedule(self, hz: float, make_op: Any, tasks: set[asyncio.Task[Any]], source: str) -> None:
        """Fire ``make_op()`` at a fixed rate without waiting for completions (open loop).

        How late each op fires against its schedule is kept (``_lag``) and recorded by
        :meth:`_watch_lag`: a starved harness invokes probes late, and a measurement it took then is
        not exact to the probe period."""
        assert self._stop is not None
        period = 1.0 / hz
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        while not self._stop.is_set():
            late = loop.time() - next_t
            if late > self._lag.get(source, 0.0):
                self._lag[source] = late
            task = asyncio.ensure_future(make_op())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_t += period
            delay = next_t - loop.time()
            if delay < -1.0:  # fell far behind (e.g. machine stalled): resynchronise, don't burst
                next_t = loop.time()
                delay = 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=max(0.0, delay))

    LAG_TICK_S = 0.1  # event-loop lag probe interval
    LAG_SAMPLE_S = 0.5  # how often the worst lag (and the load average) goes into the history

    async def _watch_lag(self) -> None:
        """Measure the harness's own scheduling lag and record it as ``harness-lag`` samples.

        Every ``LAG_TICK_S`` a timer's overshoot is the event loop's lag; together with the schedulers'
        lateness, the worst of the last ``LAG_SAMPLE_S`` is recorded with the 1-minute load average:
        ``{"lag_ms", "loop_ms", "probe_ms", ..., "load1"}``. The scenario judges these (verdict
        *unknown* when the harness was starved in a judged phase, docs/definitions.md)."""
        assert self._stop is not None
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not self._stop.is_set():
            t0 = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.LAG_TICK_S)
            if self._stop.is_set():
                break
            over = loop.time() - t0 - self.LAG_TICK_S
            self._lag["loop"] = max(self._lag.get("loop", 0.0), over)
            if loop.time() - last >= self.LAG_SAMPLE_S:
                last = loop.time()
                lag, self._lag = self._lag, {}
                value: dict[str, float] = {f"{k}_ms": round(max(0.0, v) * 1000, 1) for k, v in lag.items()}
                value["lag_ms"] = max(value.values(), default=0.0)
                value["load1"] = round(os.getloadavg()[0], 2)
                self.recorder.sample("harness-lag", value, process="harness")

    # ---- objects active before the fault -------------------------------------------------------
    def warm(self, keys: list[str] | None = None, timeout: float = 10.0) -> int:
        """Read each of ``keys`` (default: every counter key) once through the running workload's
        client, recorded as ``read`` ops of process ``warm``, and return how many answered. Why: a
        node's first call on a key activates its object (a load from PostgreSQL before the write), so
        under a slowed PostgreSQL link a cold key costs two round trips where a warm one costs one;
        a scenario that needs calls held for exactly one round trip warms the keys first. Thread-safe;
        0 when the workload is not running."""
        loop, stop = self._loop, self._stop
        if self._thread is None or loop is None or stop is None or stop.is_set():
            return 0
        fut = asyncio.run_coroutine_threadsafe(self._warm(list(keys or self.counter_keys)), loop)
        try:
            return fut.result(timeout=timeout)
        except TimeoutError:
            fut.cancel()
            return 0

    async def _warm(self, keys: list[str]) -> int:
        client, picker = self._client, self._picker
        if client is None or picker is None:
            return 0
        gate = asyncio.Semaphore(16)  # a bounded wave, not one call per key at once

        async def one(key: str) -> bool:
            async with gate:
                out = await self._record(client, picker, "warm", "read", key, None, "Get",
                                         wire.new("counter.GetRequest"))
                return out.type == "ok"
        return sum(await asyncio.gather(*(one(k) for k in keys)))

    # ---- a burst aimed at the fault ------------------------------------------------------------
    def burst(self, fault: Any = None) -> int:
        """Fire the configured burst and return once every call of it was invoked, plus the lead time
        (so the fault lands while they are in flight). Thread-safe (the nemesis calls it from the
        scenario's thread); a no-op returning 0 when disabled or the workload is not running."""
        n = self.spec.burst_at_inject
        loop, stop = self._loop, self._stop
        if n <= 0 or self._thread is None or loop is None or stop is None or stop.is_set():
            return 0
        fut = asyncio.run_coroutine_threadsafe(self._burst(n), loop)
        try:
            fired = fut.result(timeout=2.0)
        except Exception:  # noqa: BLE001 - a burst that could not start must not block the fault
            fut.cancel()
            return 0
        self.recorder.log("burst of writes before the fault", fault=str(fault) if fault is not None else None,
                          calls=fired, lead_ms=self.spec.burst_lead_ms)
        if self.spec.burst_lead_ms > 0:
            threading.Event().wait(self.spec.burst_lead_ms / 1000)  # sleep-ok: the lead is the subject
        return fired

    async def _burst(self, n: int) -> int:
        client, picker = self._client, self._picker
        if client is None or picker is None:
            return 0
        keys = (self._burst_counter_keys or self.counter_keys)[:max(1, self.spec.burst_keys)]
        deposits = n // 4 if self.spec.wallet_rate > 0 else 0
        invoked = asyncio.Event()
        count = 0

        async def one(i: int) -> None:
            nonlocal count
            count += 1
            if count == n + deposits:
                invoked.set()
            if i >= n:
                await self._wallet_op(client, picker, self._burst_wallets or None, f"burst-{i}")()
                return
            amount = self.rng.randint(1, self.spec.max_amount)
            await self._record(client, picker, f"burst-{i}", "increment", keys[i % len(keys)], amount,
                               "Increment", wire.new("counter.IncrementRequest", amount=amount))
        for i in range(n + deposits):
            task = asyncio.ensure_future(one(i))
            self._burst_tasks.add(task)
            task.add_done_callback(self._burst_tasks.discard)
        await invoked.wait()
        return n + deposits

    # ---- operations --------------------------------------------------------------------------
    async def _record(self, client: GateClient, picker: GatePicker, process: str, f: str, key: str,
                      value: Any, method: str, request: Any, obj_type: str | None = None,
                      call_id: str | None = None) -> CallOutcome:
        obj_type = obj_type or self.spec.counter_type
        gate = picker.pick()
        op_id = self.recorder.invoke(process, f, key=key, value=value, node=gate)
        if call_id is None:
            out = await client.call(gate, obj_type, key, method, request)
        else:
            out = await client.reliable_call(gate, call_id, obj_type, key, method, request)
        picker.report(gate, out)
        result: Any = None
        if out.type == "ok" and out.message is not None:
            d = wire.to_dict(out.message)
            if obj_type == self.spec.counter_type:
                result = d.get("value")
            elif f == "final-balance":
                result = d.get("balance")
            else:
                result = {"balance": d.get("balance"), "status": out.reliable_status}
        self.recorder.complete(op_id, out.type, process, f, key=key, value=result,
                               error=None if out.type == "ok" else f"{out.code}: {out.error}",
                               node=gate, extra=out.extra or None)
        return out

    def _probe_op(self, client: GateClient, picker: GatePicker) -> Any:
        keys = itertools.cycle(self.probe_keys)
        count = itertools.count()

        def make() -> Any:
            key = next(keys)
            if next(count) % len(self.probe_keys) == 0:
                # shift the gate rotation once per cycle: with an even key count and strict round-robin,
                # each probe key would always go through the same gate, and a gate with a stale view
                # would never be compared with another on the same key (O, M)
                picker.pick()
            return self._record(client, picker, "probe-0", "probe", key, None, "Get",
                                wire.new("counter.GetRequest"))
        return make

    def _counter_op(self, client: GateClient, picker: GatePicker) -> Any:
        workers = itertools.cycle(range(8))

        def make() -> Any:
            key = self.rng.choice(self.counter_keys)
            proc = f"client-{next(workers)}"
            if self.rng.random() < self.spec.read_ratio:
                return self._record(client, picker, proc, "read", key, None, "Get",
                                    wire.new("counter.GetRequest"))
            amount = self.rng.randint(1, self.spec.max_amount)
            return self._record(client, picker, proc, "increment", key, amount, "Increment",
                                wire.new("counter.IncrementRequest", amount=amount))
        return make

    def _wallet_op(self, client: GateClient, picker: GatePicker, wallets: list[str] | None = None,
                   process: str = "wallet-0") -> Any:
        async def op() -> None:
            attempts = 0
            due = [c for c in self._unknown_calls if c[0] <= time.monotonic()] if wallets is None else []
            if due:
                self._unknown_calls.remove(due[0])
                _, wallet, call_id, amount, attempts = due[0]
            elif wallets is None and self._acked_calls and self.rng.random() < self.spec.retry_ratio:
                wallet, call_id, amount = self.rng.choice(self._acked_calls)
            else:
                wallet = self.rng.choice(wallets or self.wallet_keys)
                call_id = uuid.uuid4().hex
                amount = self.rng.randint(1, self.spec.max_amount)
            out = await self._record(client, picker, process, "deposit", wallet,
                                     {"amount": amount, "call_id": call_id}, "Deposit",
                                     wire.new("wallet.DepositRequest", amount=amount), obj_type="Wallet",
                                     call_id=call_id)
            if out.type == "ok":
                self._acked_calls.append((wallet, call_id, amount))
            elif self.spec.retry_unknown and (out.type == "info" or attempts) and attempts < 8:
                self._unknown_calls.append((time.monotonic() + attempts + 1.0, wallet, call_id, amount,
                                            attempts + 1))
        return op

    def aim_burst(self, shards: set[int], wallets: int = 2) -> tuple[list[str], list[str]]:
        """Aim the burst at the keys of ``shards`` (a victim's, from the shard map): its increments go
        to the counter keys there and its deposits to ``wallets`` wallet keys made to fall there (added
        to the workload's wallets, so the final balances read them). Returns (counter keys, wallets)."""
        self._burst_counter_keys = [k for k in self.counter_keys if shard_of(k, self.spec.shards) in shards]
        prefix = self.wallet_keys[0].rsplit("-", 1)[0] if self.wallet_keys else f"{self.spec.key_prefix}-wallet"
        aimed = [k for k in (f"{prefix}-aim{i}" for i in range(10 * self.spec.shards))
                 if shard_of(k, self.spec.shards) in shards][:wallets]
        self._burst_wallets = aimed
        self.wallet_keys += [k for k in aimed if k not in self.wallet_keys]
        return list(self._burst_counter_keys), aimed

    # ---- after the scenario --------------------------------------------------------------------
    def reads_through_each_gate(self, keys: list[str] | None = None, deadline_s: float = 3.0) -> None:
        """Read every key (default: the probe keys, one per shard) through *each* gate, retrying each
        (gate, key) until it answers or ``deadline_s`` passes; records ``gate-read`` ops with the gate
        as ``node``. Why per gate: clients spread over gates hide one gate that routes with a stale
        map (every_gate_routes judges it). Call after the cluster converged, with load stopped."""
        asyncio.run(self._reads_through_each_gate(list(keys or self.probe_keys), deadline_s))

    async def _reads_through_each_gate(self, keys: list[str], deadline_s: float) -> None:
        async with GateClient(self.gate_urls, timeout=self.spec.timeout, grpc_gates=self.grpc_gates) as client:
            async def one(gate: str, key: str) -> None:
                end = time.monotonic() + deadline_s
                while True:
                    op_id = self.recorder.invoke("route-check", "gate-read", key=key, node=gate)
                    out = await client.call(gate, "Counter", key, "Get", wire.new("counter.GetRequest"))
                    value = wire.to_dict(out.message).get("value") if out.type == "ok" and out.message else None
                    self.recorder.complete(op_id, out.type, "route-check", "gate-read", key=key, value=value,
                                           error=None if out.type == "ok" else f"{out.code}: {out.error}",
                                           node=gate, extra=out.extra or None)
                    if out.type == "ok" or time.monotonic() >= end:
                        return
                    await asyncio.sleep(0.25)  # sleep-ok: retry interval inside the deadline
            await asyncio.gather(*(one(g, k) for g in sorted(self.gate_urls) for k in keys))

    def final_reads(self, timeout: float = 30.0) -> dict[str, int | None]:
        """Read every counter key (and wallet balance) until it answers or ``timeout`` passes; records
        ``final-read`` / ``final-balance`` ops. Call after faults are healed and load has stopped."""
        return asyncio.run(self._final_reads(timeout))

    async def _final_reads(self, timeout: float) -> dict[str, int | None]:
        picker = GatePicker(sorted(self.gate_urls))
        deadline = time.monotonic() + timeout
        results: dict[str, int | None] = {}
        async with GateClient(self.gate_urls, timeout=self.spec.timeout, grpc_gates=self.grpc_gates) as client:
            async def one(key: str, obj_type: str) -> None:
                counter = obj_type == self.spec.counter_type
                f = "final-read" if counter else "final-balance"
                method, req = (("Get", wire.new("counter.GetRequest")) if counter
                               else ("GetBalance", wire.new("wallet.GetBalanceRequest")))
                while time.monotonic() < deadline:
                    out = await self._record(client, picker, "final", f, key, None, method, req,
                                             obj_type=obj_type)
                    if out.type == "ok" and out.message is not None:
                        d = wire.to_dict(out.message)
                        results[key] = d.get("value") if counter else d.get("balance")
                        return
                    await asyncio.sleep(0.1)  # sleep-ok: retry pacing for an unavailable key
                results[key] = None
            jobs = [one(k, self.spec.counter_type) for k in self.counter_keys]
            if self.spec.wallet_rate > 0:
                jobs += [one(k, "Wallet") for k in self.wallet_keys]
            await asyncio.gather(*jobs)
        return results
