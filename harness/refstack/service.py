"""What node, gate and inspector processes share: etcd client and cluster view, the tick loop,
signal handling and start-up checks.

Why start-up checks raise ``StartupError``: the seed asks that bad configuration — including an etcd
that cannot be reached at start — ends the process with exit code 2 and one line naming the setting,
*before* anything is registered in etcd, so a crash-looping pod leaves no ghost membership behind.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable

from harness.refstack import metrics
from harness.refstack.config import Settings
from harness.refstack.coordination import ClusterView, Keys
from harness.refstack.etcd import EtcdClient, EtcdError, op_range

log = logging.getLogger(__name__)


class StartupError(Exception):
    """Cannot start with this configuration; ``str()`` names the setting (exit code 2)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class Service:
    component = "service"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cluster = settings.cluster
        self.keys = Keys(settings.cluster.prefix)
        request_timeout = max(0.5, min(2.0, settings.cluster.lease_ttl / 3))
        self.etcd = EtcdClient(settings.cluster.etcd_endpoints, timeout=request_timeout)
        self.view = ClusterView(self.etcd, self.keys, settings.cluster.shards)
        self.view.on_migration = lambda s, a, b: metrics.SHARD_MIGRATIONS.labels(from_node=a, to_node=b).inc()
        self.stopping = False
        self.started = time.monotonic()
        self._stop_requested: asyncio.Event | None = None
        self._view_failing = False
        metrics.announce(settings.version_tag, settings.bugs)
        ready = getattr(self, "ready", None)  # nodes and gates; the inspector has its own /ready
        if ready is not None:
            metrics.bind_readiness(ready)

    # ------------------------------------------------------------------ start-up
    async def check_etcd(self) -> None:
        try:
            await self.etcd.txn([], [op_range(self.keys.leader)], timeout=3.0)
        except EtcdError as exc:
            endpoints = ",".join(self.cluster.etcd_endpoints)
            raise StartupError("cluster.etcd.endpoints", f"no etcd endpoint reachable ({endpoints}): {exc}") from None

    # ------------------------------------------------------------------ signals
    def install_signals(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, self.on_sigterm)
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self.on_sighup)
        return self._stop_requested

    def request_stop(self, why: str) -> None:
        log.info("%s: starting graceful shutdown", why)
        if self._stop_requested is not None:
            self._stop_requested.set()

    def on_sigterm(self) -> None:
        if "ignore-sigterm" in self.settings.bugs:
            log.warning("SIGTERM received and ignored (seeded bug ignore-sigterm)")
            return
        self.request_stop("SIGTERM")

    def on_sighup(self) -> None:
        log.info("SIGHUP received")

    # ------------------------------------------------------------------- loops
    async def refresh_view(self) -> bool:
        try:
            await self.view.refresh(timeout=max(0.5, self.cluster.lease_ttl / 3))
        except EtcdError as exc:
            if not self._view_failing:
                log.warning("cannot refresh the cluster view: %s", exc)
                metrics.WATCH_RECONNECTIONS.labels(node_addr=self.settings.instance.advertise_addr,
                                                   outcome="reload_failed").inc()
            self._view_failing = True
            return False
        if self._view_failing:
            log.info("cluster view refreshed again")
            metrics.WATCH_RECONNECTIONS.labels(node_addr=self.settings.instance.advertise_addr,
                                               outcome="reconnected").inc()
        self._view_failing = False
        return True

    async def tick_loop(self, tick: Callable[[], Awaitable[None]]) -> None:
        period = self.cluster.tick
        while not self.stopping:
            t0 = time.monotonic()
            try:
                await tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("management tick failed")
            await asyncio.sleep(max(0.0, period - (time.monotonic() - t0)))  # sleep-ok: the tick period
