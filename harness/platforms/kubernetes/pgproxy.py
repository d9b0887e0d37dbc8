"""The node pod's PostgreSQL fault proxy: a sidecar that runs the local platform's TCP fault proxy
(``local/faultproxy.py``) between a node and PostgreSQL, with a small HTTP control port the harness
switches toxics through.

Why a sidecar wired at deploy time: this kernel has no queueing disciplines (no ``tc netem``), so a
delay cannot be put on a pod's interface, and a DNAT redirect to a delaying proxy would catch only new
connections, not a node's pooled PostgreSQL sessions. So, as the local platform does, the node is given
the proxy's address from the start (``GOVERSE_POSTGRES_HOST=127.0.0.1``, ``GOVERSE_POSTGRES_PORT``) and
every one of its sessions goes through it; the proxy is idle (pass-through) until a Latency, Timeout or
Reset fault sets a toxic. Why in the pod rather than in the harness's process on the node: the
harness runs at low priority on a loaded machine, and every query of the stack would wait for it; in
the pod the proxy is scheduled like the node it serves, and its link dies with the pod as it would
with a machine.

Runs inside the refstack image: ``python -m harness.platforms.kubernetes.pgproxy --listen 15432
--upstream goverse-postgres:5432 --control 9190``. Standard library only (plus the fault proxy).

Control API (JSON): ``GET /healthz``; ``GET /link`` → ``{"toxics": [...], "stats": {...}}``;
``PUT /toxic`` with ``{"kind": "latency", "ms": 200, "jitter_ms": 0, "direction": "upstream"}``,
``{"kind": "timeout"}`` or ``{"kind": "reset"}`` (in force when the answer arrives); ``DELETE /toxic``
clears every toxic (held data flows again). Every answer is the link's state after the request.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harness.platforms.local import faultproxy

LINK = "postgres"
LISTEN_PORT = 15432  # on the pod's loopback: only the node container reaches it
CONTROL_PORT = 9190  # on the pod IP: the harness (pod network or port-forward) and the kubelet's probe
DIRECTIONS = ("upstream", "downstream", "both")


def toxic_from_json(doc: Any) -> faultproxy.Toxic:
    """A toxic from its JSON form; ``ValueError`` naming the field and what is allowed."""
    if not isinstance(doc, dict):
        raise ValueError("toxic: expected a JSON object with 'kind'")
    kind = doc.get("kind")
    if kind == "latency":
        ms, jitter = doc.get("ms"), doc.get("jitter_ms", 0)
        direction = doc.get("direction", "upstream")
        if not isinstance(ms, int | float) or isinstance(ms, bool) or ms < 0:
            raise ValueError(f"toxic latency: 'ms' must be a number >= 0, got {ms!r}")
        if not isinstance(jitter, int | float) or isinstance(jitter, bool) or jitter < 0:
            raise ValueError(f"toxic latency: 'jitter_ms' must be a number >= 0, got {jitter!r}")
        if direction not in DIRECTIONS:
            raise ValueError(f"toxic latency: 'direction' must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        return faultproxy.Latency(ms=float(ms), jitter_ms=float(jitter), direction=direction)
    if kind == "timeout":
        return faultproxy.Timeout()
    if kind == "reset":
        return faultproxy.ResetPeer()
    raise ValueError(f"toxic: 'kind' must be one of latency, timeout, reset, got {kind!r}")


def toxic_to_json(toxic: faultproxy.Toxic) -> dict[str, Any]:
    names = {faultproxy.Latency: "latency", faultproxy.Timeout: "timeout", faultproxy.ResetPeer: "reset",
             faultproxy.Bandwidth: "bandwidth", faultproxy.HoldAfterCommit: "hold_after_commit"}
    return {"kind": names[type(toxic)], **asdict(toxic)}


def link_state(proxy: faultproxy.FaultProxy) -> dict[str, Any]:
    return {"toxics": [toxic_to_json(t) for t in proxy.toxics(LINK)], "stats": asdict(proxy.stats(LINK))}


def make_handler(proxy: faultproxy.FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, code: int, doc: dict[str, Any]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/healthz":
                self._answer(200, {"ok": True})
            elif self.path == "/link":
                self._answer(200, link_state(proxy))
            else:
                self._answer(404, {"error": f"no {self.path}; GET /healthz, GET /link, PUT|DELETE /toxic"})

        def do_PUT(self) -> None:  # noqa: N802
            if self.path != "/toxic":
                self._answer(404, {"error": f"no {self.path}; PUT /toxic"})
                return
            try:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                toxic = toxic_from_json(json.loads(raw or b"null"))
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                self._answer(400, {"error": str(exc)})
                return
            proxy.set_toxic(LINK, toxic)
            self._answer(200, link_state(proxy))

        def do_DELETE(self) -> None:  # noqa: N802
            if self.path != "/toxic":
                self._answer(404, {"error": f"no {self.path}; DELETE /toxic"})
                return
            proxy.clear(LINK)
            self._answer(200, link_state(proxy))

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            if not self.path.startswith(("/healthz", "/link")):  # probes and reads would flood the log
                super().log_message(format, *args)

    return Handler


def serve(listen: tuple[str, int], upstream: tuple[str, int], control: tuple[str, int],
          ready: threading.Event | None = None, stop: threading.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT in the main thread). The proxy listens before the
    control port answers, so a probe that passes means both are up."""
    stop = stop or threading.Event()
    with faultproxy.FaultProxy(default_listen_host=listen[0]) as proxy:
        proxy.add_link(LINK, upstream, listen)
        server = ThreadingHTTPServer(control, make_handler(proxy))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="pgproxy-control", daemon=True)
        thread.start()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
        print(json.dumps({"msg": "pg fault proxy up", "listen": f"{listen[0]}:{listen[1]}",
                          "upstream": f"{upstream[0]}:{upstream[1]}", "control": f"{control[0]}:{control[1]}"}),
              flush=True)
        if ready is not None:
            ready.set()
        try:
            stop.wait()
        finally:
            server.shutdown()
            server.server_close()


def _addr(text: str, default_host: str, setting: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536 or not (host or default_host):
        raise SystemExit(f"{setting} {text!r}: expected {'' if default_host else 'HOST:'}PORT with a port 1-65535")
    return (host or default_host, int(port))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.platforms.kubernetes.pgproxy",
                                description="node -> PostgreSQL fault proxy sidecar with a control port")
    p.add_argument("--listen", default=str(LISTEN_PORT), help="[HOST:]PORT the node connects to (default 127.0.0.1)")
    p.add_argument("--upstream", required=True, help="HOST:PORT of PostgreSQL (the Service)")
    p.add_argument("--control", default=str(CONTROL_PORT), help="[HOST:]PORT of the control API (default 0.0.0.0)")
    args = p.parse_args(argv)
    serve(_addr(args.listen, "127.0.0.1", "--listen"), _addr(args.upstream, "", "--upstream"),
          _addr(args.control, "0.0.0.0", "--control"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
