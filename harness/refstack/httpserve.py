"""HTTP plumbing shared by node, gate and inspector: JSON bodies the way Goverse writes them, ops
endpoints, and listeners.

Why one place: Goverse writes every body with Go's ``json.Encoder`` (so a trailing newline), errors as
``{"error", "code"}``, and the ops endpoints have fixed shapes (contract §2.1, §3); the harness compares
those bytes across stacks, so they are produced by exactly one function each.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from harness.refstack.config import listen_hostport

log = logging.getLogger(__name__)

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, X-Client-ID, Authorization, X-Goverse-Auth",
}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Like Go's ``json.NewEncoder(w).Encode(v)``: compact JSON plus a newline."""
    return web.Response(text=json.dumps(body, separators=(",", ":")) + "\n", status=status,
                        content_type="application/json", headers=headers)


def error_response(message: str, code: str, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": message, "code": code}, status, headers)


def metrics_response() -> web.Response:
    resp = web.Response(body=generate_latest())
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def ops_app(*, ready: Callable[[], tuple[bool, str]], stopped: Callable[[], bool], gate_style: bool,
            extra: dict[str, Callable[[web.Request], Any]] | None = None) -> web.Application:
    """/healthz /ready /metrics. ``gate_style``: Goverse's gate ops port shapes (GET only, NOT_READY
    error bodies); otherwise the node's (any method, ``{"status": ...}``)."""

    async def healthz(request: web.Request) -> web.Response:
        if gate_style:
            if request.method != "GET":
                return error_response("method not allowed", "METHOD_NOT_ALLOWED", 405)
            if stopped():
                return error_response("Gate server is stopped", "NOT_READY", 503)
        return json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        ok, why = ready()
        if gate_style:
            if request.method != "GET":
                return error_response("method not allowed", "METHOD_NOT_ALLOWED", 405)
            if ok:
                return json_response({"status": "ready"})
            return error_response(why or "Cluster is not ready", "NOT_READY", 503)
        if ok:
            return json_response({"status": "ready"})
        return json_response({"status": "not ready", "reason": why}, 503)

    async def metrics(request: web.Request) -> web.Response:
        return metrics_response()

    app = web.Application()
    app.router.add_route("*", "/healthz", healthz)
    app.router.add_route("*", "/ready", readyz)
    app.router.add_get("/metrics", metrics)
    for path, handler in (extra or {}).items():
        app.router.add_get(path, handler)
    return app


async def serve(app: web.Application, addr: str, setting: str) -> web.AppRunner:
    """Start ``app`` on ``addr`` (``host:port``; empty host = all interfaces)."""
    host, port = listen_hostport(addr, setting)
    # callers drain their own calls first; whatever is still open after 2 s is cut
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, backlog=1024)
    await site.start()
    log.info("listening on %s:%s (%s)", host, port, setting)
    return runner
