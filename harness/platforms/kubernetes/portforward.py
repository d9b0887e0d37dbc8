"""Local TCP listeners that forward to a pod port through the API server (the client's portforward).

Why not ``kubectl port-forward``: no subprocess to babysit (pytest-kind-ng's loop restarts it
needlessly), and the target pod is resolved *per connection*: when a gate pod is replaced, the next
connection goes to the pod that now holds that gate's slot, so a client sees a restart as a dropped
connection, not as a dead endpoint.

Direct mode (``ip_of``): when this machine routes to pod IPs (the binaries cluster, where pods sit
behind a local bridge), each connection goes straight to the pod's IP instead of through the API
server's port-forward stream — which resets concurrent new connections under load and adds latency
that the availability and latency checks would count against the stack.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class PortForward:
    """``127.0.0.1:<local_port>`` -> ``<pod>:<remote_port>``; ``pod`` is asked per connection (its answer
    kept ``POD_TTL_S``, so a restart is seen within that).

    Bounded: at most ``MAX_CONNECTIONS`` connections are relayed at once; one more is closed at once
    (the client sees a reset, and the log says why). Why: each connection is a thread, and resolving
    its pod asks the API server; when a starved API server answers slowly while clients retry at the
    probe rate, unbounded threads piled up to several thousand in one run and starved the whole
    machine — a harness that melts down measures nothing."""

    MAX_CONNECTIONS = 256
    POD_TTL_S = 0.5

    def __init__(self, core: Any, namespace: str, pod: Callable[[], str], remote_port: int,
                 ip_of: Callable[[str], str] | None = None) -> None:
        self.core = core
        self.ip_of = ip_of
        self.namespace = namespace
        self.pod = pod
        self.remote_port = remote_port
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.local_port: int = self._sock.getsockname()[1]
        self._closed = threading.Event()
        self._slots = threading.BoundedSemaphore(self.MAX_CONNECTIONS)
        self._pod_lock = threading.Lock()
        self._pod_cache: tuple[str, float] | None = None
        self.refused_busy = 0
        self._thread = threading.Thread(target=self._accept, name=f"pf-{self.local_port}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.local_port}"

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{self.address}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                self.refused_busy += 1
                if self.refused_busy == 1 or self.refused_busy % 1000 == 0:
                    log.warning("port-forward %s -> %s:%s: %d connections refused, %d already relayed",
                                self.local_port, self.namespace, self.remote_port, self.refused_busy,
                                self.MAX_CONNECTIONS)
                with contextlib.suppress(OSError):
                    conn.close()
                continue
            threading.Thread(target=self._serve_bounded, args=(conn,), daemon=True).start()

    def _serve_bounded(self, conn: socket.socket) -> None:
        try:
            self._serve(conn)
        finally:
            self._slots.release()

    def _resolve(self) -> str:
        """The pod for a new connection: ``pod()``, remembered ``POD_TTL_S`` (one API call per period
        instead of one per connection)."""
        with self._pod_lock:
            hit = self._pod_cache
            if hit is not None and time.monotonic() - hit[1] < self.POD_TTL_S:
                return hit[0]
        name = self.pod()
        with self._pod_lock:
            self._pod_cache = (name, time.monotonic())
        return name

    def _serve(self, conn: socket.socket) -> None:
        from kubernetes.stream import portforward

        try:
            name = self._resolve()
            if self.ip_of is not None:
                remote: Any = socket.create_connection((self.ip_of(name), self.remote_port), timeout=5)
                remote.settimeout(None)
                try:
                    _relay(conn, remote, self._closed)
                finally:
                    for s in (conn, remote):
                        with contextlib.suppress(OSError):
                            s.close()
                return
            pf = portforward(self.core.connect_get_namespaced_pod_portforward, name, self.namespace,
                             ports=str(self.remote_port))
            remote = pf.socket(self.remote_port)
        except Exception as exc:  # noqa: BLE001 - the client sees a closed connection; say why in the log
            with self._pod_lock:
                self._pod_cache = None  # the pod may have been replaced: ask again next time
            log.debug("port-forward to %s:%s failed: %s", self.namespace, self.remote_port, exc)
            conn.close()
            return
        try:
            _relay(conn, remote, self._closed)
        finally:
            for s in (conn, remote):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._sock.close()


def _relay(a: Any, b: Any, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes (select with a short tick to notice ``stop``)."""
    pair = {a: b, b: a}
    while not stop.is_set():
        readable, _, _ = select.select(list(pair), [], [], 0.5)
        for s in readable:
            try:
                data = s.recv(65536)
            except OSError:
                return
            if not data:
                return
            pair[s].sendall(data)
