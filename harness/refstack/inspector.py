"""The reference inspector: a read-only JSON view of the cluster from etcd.

Why it exists: operators (and the harness's convergence oracle) need one place that says who is alive,
who leads and who owns each shard. Unlike Goverse's inspector it needs no gRPC sink. ``/ready`` is
not latched: it is 200 only while every shard has target == current and that owner is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from harness.refstack.httpserve import error_response, json_response, metrics_response, serve
from harness.refstack.service import Service
from harness.refstack.sharding import balance_counts, full_map, is_converged

log = logging.getLogger(__name__)


class Inspector(Service):
    component = "inspector"

    async def run(self) -> int:
        stop = self.install_signals()
        await self.check_etcd()
        await self.refresh_view()
        app = web.Application()
        for path, handler in (("/healthz", self._healthz), ("/ready", self._ready), ("/shards", self._shards),
                              ("/nodes", self._nodes), ("/gates", self._gates), ("/leader", self._leader),
                              ("/cluster", self._cluster), ("/metrics", self._metrics)):
            app.router.add_get(path, handler)
        runner = await serve(app, self.settings.instance.http_addr, "inspector.http_addr")
        task = asyncio.create_task(self.tick_loop(self.refresh_view_quiet), name="view")
        log.info("inspector serving on %s", self.settings.instance.http_addr)
        try:
            await stop.wait()
        finally:
            self.stopping = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await runner.cleanup()
            await self.etcd.close()
        return 0

    async def refresh_view_quiet(self) -> None:
        await self.refresh_view()

    # ------------------------------------------------------------------ views
    def shard_list(self) -> list[dict[str, Any]]:
        table = full_map(self.view.state.shards, self.cluster.shards)
        return [{"shard": s, "target_node": e.target, "current_node": e.current, "flags": list(e.flags)}
                for s, e in sorted(table.items())]

    def node_list(self, kind: str) -> list[dict[str, Any]]:
        st = self.view.state
        members = st.nodes if kind == "node" else st.gates
        owned = balance_counts(st.shards, "current")
        out = []
        for adv in sorted(members):
            info = dict(st.info.get(f"{kind}/{adv}", {}))
            row: dict[str, Any] = {"advertise_addr": adv, "id": info.get("id", ""), "version": info.get("version", ""),
                                   "ops_addr": info.get("ops", "")}
            if kind == "node":
                row["shards"] = owned.get(adv, 0)
                row["leader"] = adv == st.leader
            else:
                row["http_addr"] = info.get("http", "")
            out.append(row)
        return out

    def readiness(self) -> tuple[bool, str]:
        st = self.view.state
        if not st.loaded:
            return False, "cluster state not loaded"
        if not st.nodes:
            return False, "no nodes registered"
        if not is_converged(st.shards, self.cluster.shards, st.nodes):
            table = full_map(st.shards, self.cluster.shards)
            bad = sum(1 for e in table.values() if not (e.current and e.target == e.current and e.current in st.nodes))
            return False, f"{bad} shards not settled on a live node"
        return True, ""

    # --------------------------------------------------------------- handlers
    async def _healthz(self, request: web.Request) -> web.Response:
        return json_response({"status": "healthy"})

    async def _ready(self, request: web.Request) -> web.Response:
        ok, why = self.readiness()
        if ok:
            return json_response({"status": "ready"})
        return json_response({"status": "not ready", "reason": why}, 503)

    async def _shards(self, request: web.Request) -> web.Response:
        if not self.view.state.loaded:
            return error_response("cluster state not loaded", "NOT_READY", 503)
        return json_response(self.shard_list())

    async def _nodes(self, request: web.Request) -> web.Response:
        return json_response(self.node_list("node"))

    async def _gates(self, request: web.Request) -> web.Response:
        return json_response(self.node_list("gate"))

    async def _leader(self, request: web.Request) -> web.Response:
        st = self.view.state
        return json_response({"leader": st.leader, "alive": st.leader in st.nodes})

    async def _cluster(self, request: web.Request) -> web.Response:
        ok, why = self.readiness()
        st = self.view.state
        return json_response({"revision": st.revision, "shards": self.shard_list(), "nodes": self.node_list("node"),
                              "gates": self.node_list("gate"), "leader": st.leader, "ready": ok, "reason": why})

    async def _metrics(self, request: web.Request) -> web.Response:
        return metrics_response()
