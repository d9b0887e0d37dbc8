"""A reference gate: Goverse's HTTP client API (contract §2.1), routing each call to the shard's
current owner from its view of etcd.

Error classification is part of the contract the harness relies on:
- the gate did NOT forward the call (no live owner, shard migrating, connection refused) ->
  ``CALL_FAILED`` (500) with Goverse's message (§2.6): it definitely did not happen;
- the node answered that it refused the call (not the owner, stopped, fenced) -> ``CALL_FAILED``;
- the call was forwarded and then timed out or the connection broke, or the node reports that its
  write's outcome is unknown -> ``CALL_TIMEOUT`` (504): it may or may not have happened.
Like Goverse, the gate never retries. Responses served by a node carry ``X-Goverse-Node`` (node id)
and ``X-Goverse-Epoch`` (the node's ownership epoch for the shard) for the single-ownership oracle.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import time
import uuid
from typing import Any

import aiohttp
from aiohttp import web
from google.protobuf import any_pb2

from harness.refstack import metrics
from harness.refstack.config import Settings
from harness.refstack.coordination import Registration
from harness.refstack.etcd import EtcdError
from harness.refstack.httpserve import CORS_HEADERS, error_response, json_response, ops_app, serve
from harness.refstack.service import Service, StartupError
from harness.refstack.sharding import RouteError, full_map, route
from harness.waiting import Deadline

log = logging.getLogger(__name__)

API = "/api/v1/"
SSE_HEARTBEAT_SECONDS = 30.0


class ClientError(Exception):
    """A bad client request: (HTTP status, code, message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Gate(Service):
    component = "gate"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        inst = settings.instance
        self.me = inst.advertise_addr
        self.gate_id = inst.id
        self.shards = settings.cluster.shards
        info = {"id": inst.id, "advertise": self.me, "http": inst.http_addr, "ops": inst.ops_addr,
                "version": settings.version_tag, "pid": os.getpid()}
        self.registration = Registration(
            self.etcd, {self.keys.gate(self.me): self.me,
                        self.keys.info_key("gate", self.me): json.dumps(info, separators=(",", ":"))},
            settings.cluster.lease_ttl)
        self.session: aiohttp.ClientSession | None = None
        self.inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._ready_once = False
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = asyncio.Event()
        self._op_metrics: dict[tuple[str, str, str], Any] = {}

    # =============================================================== lifecycle
    async def run(self) -> int:
        stop = self.install_signals()
        try:
            await self.check_etcd()
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=256, keepalive_timeout=60,
                                               enable_cleanup_closed=True),
                json_serialize=json.dumps)
            await self._listen()
            try:
                await self.registration.register()
            except EtcdError as exc:
                raise StartupError("cluster.etcd.endpoints", f"cannot register in etcd: {exc}") from None
        except BaseException:
            await self._close_resources()
            raise
        await self.refresh_view()
        log.info("gate %s serving clients on %s (shards %d)", self.gate_id, self.settings.instance.http_addr,
                 self.shards)
        self._tasks = [asyncio.create_task(self.registration.run(), name="keepalive"),
                       asyncio.create_task(self.tick_loop(self.tick), name="view")]
        await stop.wait()
        return await self.shutdown()

    async def _listen(self) -> None:
        inst = self.settings.instance
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        try:
            self._runners.append(await serve(app, inst.http_addr, "gates[].http_addr"))
            if inst.ops_addr:
                ops = ops_app(ready=self.ready, stopped=lambda: self.stopping, gate_style=True)
                self._runners.append(await serve(ops, inst.ops_addr, "gates[].ops_addr"))
        except OSError as exc:
            raise StartupError("gates[].http_addr/ops_addr", f"cannot listen: {exc.strerror or exc}") from None

    async def tick(self) -> None:
        if "gate-watch-not-resumed" in self.settings.bugs and self._view_failing:
            return  # seeded bug: the view's 'watch' died with its connection and nothing restarts it
        if await self.refresh_view():
            metrics.update_shard_gauges(self.view.state.shards, set(self.view.state.nodes))

    async def shutdown(self) -> int:
        grace = Deadline(self.cluster.shutdown_grace)
        self.stopping = True
        self._closing.set()  # ends push streams
        log.info("shutting down: draining %d in-flight calls", self.inflight)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=max(0.1, grace.remaining() - 2.0))
        for task in self._tasks:
            task.cancel()
        try:
            await asyncio.wait_for(self.registration.revoke(), timeout=max(0.1, grace.remaining() - 0.5))
        except (TimeoutError, EtcdError) as exc:
            log.warning("lease revoke failed (it will expire): %s", exc)
        await self._close_resources()
        return 0

    async def _close_resources(self) -> None:
        for runner in self._runners:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        if self.session is not None:
            with contextlib.suppress(Exception):
                await self.session.close()
        with contextlib.suppress(Exception):
            await self.etcd.close()

    # ============================================================ readiness
    def ready(self) -> tuple[bool, str]:
        if self._ready_once and "ready-latched" in self.settings.bugs:
            return True, ""
        ok, why = self._ready_now()
        metrics.set_ready(self.gate_id, ok)
        if ok:
            self._ready_once = True
        return ok, why

    def _ready_now(self) -> tuple[bool, str]:
        if self.stopping:
            return False, "Gate server is stopped"
        if not self.registration.alive():
            return False, "Cluster is not ready: no live etcd lease"
        st = self.view.state
        if not st.loaded:
            return False, "Cluster is not ready: shard mapping not available"
        table = full_map(st.shards, self.shards)
        without = sum(1 for e in table.values() if not e.current or e.current not in st.nodes)
        if without:
            return False, f"Cluster is not ready: {without} shards have no live current node"
        return True, ""

    # ============================================================== routing
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=CORS_HEADERS)
        path = request.path
        try:
            if path == API + "events/stream":
                if request.method != "GET":
                    raise ClientError(405, "METHOD_NOT_ALLOWED", "method not allowed: use GET")
                return await self._sse(request)
            for op, nparts in (("call", 3), ("reliable-call", 3), ("create", 2), ("delete", 2)):
                base = f"{API}objects/{op}/"
                if path.startswith(base):
                    if request.method != "POST":
                        raise ClientError(405, "METHOD_NOT_ALLOWED", "method not allowed: use POST")
                    parts = path[len(base):].split("/")
                    if op == "delete" and len(parts) > 2:
                        raise ClientError(400, "INVALID_PARAMETERS", "object id must not contain '/'")
                    if len(parts) != nparts or not all(parts):
                        shape = "{type}/{id}/{method}" if nparts == 3 else "{type}/{id}"
                        raise ClientError(400, "INVALID_PATH", f"invalid path: expected {base}{shape}")
                    return await getattr(self, "_op_" + op.replace("-", "_"))(request, *parts)
            raise ClientError(404, "INVALID_PATH", f"unknown path {path}")
        except ClientError as exc:
            return error_response(str(exc), exc.code, exc.status, CORS_HEADERS)

    async def _read_json(self, request: web.Request) -> dict[str, Any]:
        try:
            raw = await request.read()
        except Exception as exc:  # noqa: BLE001 - a broken client body
            raise ClientError(400, "INVALID_BODY", f"failed to read request body: {exc}") from None
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ClientError(400, "INVALID_JSON", f"invalid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ClientError(400, "INVALID_JSON", "invalid JSON: expected an object")
        return body

    @staticmethod
    def _check_any(b64: Any) -> str:
        if b64 is None:
            b64 = ""
        if not isinstance(b64, str):
            raise ClientError(400, "INVALID_BODY", "request must be a base64 string")
        try:
            raw = base64.b64decode(b64, validate=True)
        except ValueError as exc:
            raise ClientError(400, "INVALID_BASE64", f"invalid base64 in request: {exc}") from None
        try:
            any_pb2.Any().ParseFromString(raw)
        except Exception as exc:  # noqa: BLE001 - protobuf DecodeError
            raise ClientError(400, "INVALID_PROTOBUF", f"invalid protobuf Any in request: {exc}") from None
        return b64

    def _route(self, object_id: str) -> str:
        st = self.view.state
        _, owner = route(st.shards if st.loaded else None, st.nodes, object_id, self.shards)
        return owner

    async def _forward(self, op: str, owner: str, payload: dict[str, Any],
                       timeout: float) -> tuple[dict[str, Any] | None, str | None]:
        """(node's JSON answer, None) or (None, 'failed:<msg>' | 'unknown:<msg>')."""
        assert self.session is not None
        t0 = time.perf_counter()
        status = "error"
        try:
            async with self.session.post(
                f"http://{owner}/internal/v1/{op}", json=payload,
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=min(2.0, timeout)),
            ) as resp:
                data = await resp.json(loads=json.loads, content_type=None)
            status = "success" if data.get("ok") else "error"
            return data, None
        except aiohttp.ClientConnectorError as exc:
            return None, f"failed:failed to get connection to node {owner}: {exc.os_error or exc}"
        except aiohttp.ConnectionTimeoutError:
            return None, f"failed:failed to get connection to node {owner}: connect timeout"
        except (TimeoutError, aiohttp.ServerTimeoutError):
            status = "timeout"
            metrics.OPERATION_TIMEOUTS.labels(node_addr=owner, operation=op).inc()
            return None, (f"unknown:remote {op} on node {owner} timed out after {timeout:g}s "
                          "(outcome unknown)")
        except (aiohttp.ClientError, ValueError) as exc:
            return None, f"unknown:remote {op} failed on node {owner} after sending: {exc!r} (outcome unknown)"
        finally:
            key = (owner, op, status)
            hist = self._op_metrics.get(key)
            if hist is None:
                hist = metrics.OPERATION_DURATION.labels(node_addr=owner, operation=op, status=status)
                self._op_metrics[key] = hist
            hist.observe(time.perf_counter() - t0)

    def _begin(self) -> None:
        if self.stopping:
            raise ClientError(500, "CALL_FAILED", "gate server is stopped")
        self.inflight += 1
        self._idle.clear()

    def _end(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    @staticmethod
    def _node_headers(data: dict[str, Any]) -> dict[str, str]:
        headers = dict(CORS_HEADERS)
        if data.get("node"):
            headers["X-Goverse-Node"] = str(data["node"])
        if data.get("epoch") is not None:
            headers["X-Goverse-Epoch"] = str(data["epoch"])
        return headers

    @staticmethod
    def _failure(message: str, fail_code: str, headers: dict[str, str]) -> web.Response:
        if "not found" in message:  # Goverse: any error text containing "not found" -> 404
            return error_response(message, "OBJECT_NOT_FOUND", 404, headers)
        return error_response(message, fail_code, 500, headers)

    async def _plain(self, op: str, object_id: str, payload: dict[str, Any], timeout: float,
                     fail_code: str) -> tuple[dict[str, Any] | None, web.Response | None]:
        self._begin()
        try:
            try:
                owner = self._route(object_id)
            except RouteError as exc:
                return None, self._failure(str(exc), fail_code, dict(CORS_HEADERS))
            data, err = await self._forward(op, owner, payload, timeout)
        finally:
            self._end()
        if err is not None:
            kind, _, msg = err.partition(":")
            if kind == "unknown":
                return None, error_response(msg, "CALL_TIMEOUT", 504, dict(CORS_HEADERS))
            return None, self._failure(msg, fail_code, dict(CORS_HEADERS))
        assert data is not None
        headers = self._node_headers(data)
        if data.get("ok"):
            return data, None
        msg = str(data.get("error", "call failed"))
        if data.get("kind") == "unknown":
            return None, error_response(msg, "CALL_TIMEOUT", 504, headers)
        return None, self._failure(msg, fail_code, headers)

    async def _op_call(self, request: web.Request, type_name: str, object_id: str, method: str) -> web.Response:
        body = await self._read_json(request)
        b64 = self._check_any(body.get("request"))
        data, failure = await self._plain("call", object_id, {"type": type_name, "id": object_id, "method": method,
                                                              "request": b64}, self.cluster.call_timeout, "CALL_FAILED")
        if failure is not None:
            return failure
        assert data is not None
        return json_response({"response": data["response"]}, headers=self._node_headers(data))

    async def _op_create(self, request: web.Request, type_name: str, object_id: str) -> web.Response:
        data, failure = await self._plain("create", object_id, {"type": type_name, "id": object_id},
                                          self.cluster.create_timeout, "CREATE_FAILED")
        if failure is not None:
            return failure
        assert data is not None
        return json_response({"id": object_id}, headers=self._node_headers(data))

    async def _op_delete(self, request: web.Request, type_name: str, object_id: str) -> web.Response:
        data, failure = await self._plain("delete", object_id, {"type": type_name, "id": object_id},
                                          self.cluster.delete_timeout, "DELETE_FAILED")
        if failure is not None:
            return failure
        assert data is not None
        return json_response({"success": True}, headers=self._node_headers(data))

    async def _op_reliable_call(self, request: web.Request, type_name: str, object_id: str,
                                method: str) -> web.Response:
        """Extension: reliable calls over HTTP (Goverse has them over gRPC only). Always 200 once the
        request is well-formed, with Goverse's status names; SKIPPED = never executed, safe to retry."""
        body = await self._read_json(request)
        call_id = body.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise ClientError(400, "INVALID_BODY", "call_id is required (a non-empty string)")
        b64 = self._check_any(body.get("request"))
        self._begin()
        try:
            try:
                owner = self._route(object_id)
            except RouteError as exc:
                return json_response({"response": "", "status": "SKIPPED", "error": str(exc)}, headers=CORS_HEADERS)
            payload = {"type": type_name, "id": object_id, "method": method, "call_id": call_id, "request": b64}
            data, err = await self._forward("reliable-call", owner, payload, self.cluster.call_timeout)
        finally:
            self._end()
        if err is not None:
            kind, _, msg = err.partition(":")
            status = "UNKNOWN" if kind == "unknown" else "SKIPPED"
            return json_response({"response": "", "status": status, "error": msg}, headers=CORS_HEADERS)
        assert data is not None
        headers = self._node_headers(data)
        if data.get("ok"):
            return json_response({"response": data.get("response", ""), "status": data.get("status", "UNKNOWN"),
                                  "error": data.get("error", "")}, headers=headers)
        failure = data.get("kind")
        status = {"unknown": "UNKNOWN", "rejected": "SKIPPED"}.get(str(failure), "FAILED")
        return json_response({"response": "", "status": status, "error": str(data.get("error", ""))}, headers=headers)

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        """Push stream shape (register event, heartbeats); the reference objects never push."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "Connection": "keep-alive", **CORS_HEADERS})
        await resp.prepare(request)
        client_id = f"{self.me}/{uuid.uuid4().hex}"
        await resp.write(f"event: register\ndata: {json.dumps({'clientId': client_id})}\n\n".encode())
        try:
            while not self.stopping:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), SSE_HEARTBEAT_SECONDS)
                if self.stopping:
                    break
                await resp.write(b"event: heartbeat\ndata: {}\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp
