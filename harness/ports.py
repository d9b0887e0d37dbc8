"""Free TCP ports for services we start (platform-neutral: the local platform, the reference stack's
local cluster and conformance's ad-hoc instances all pick ports here)."""

from __future__ import annotations

import secrets
import socket
import threading
from collections import deque
from pathlib import Path

# Ports this process handed out lately. A port is only *checked* free, not reserved, until its service
# binds it; without this memory two calls in a row (a node's API and ops ports) could return the same
# port, and the second listener fails with EADDRINUSE (CI met it: one in a few hundred stacks).
_HANDED: deque[int] = deque(maxlen=4096)
_HANDED_LOCK = threading.Lock()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago.

    Why not simply ``bind(0)``: the kernel hands out ports from the ephemeral range, the same range it
    uses for the local side of outgoing connections, so between picking the port and the service
    binding it a client connection can take it (EADDRINUSE at start-up). Ports are therefore drawn at
    random *below* the ephemeral range. If ``host`` is not an address of this network namespace
    (e.g. one inside another namespace) the check is done on 127.0.0.1: such a host has no listeners
    of ours yet."""
    low, _ = _ephemeral_range()
    rng = secrets.SystemRandom()
    for candidate in (host, "127.0.0.1"):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((candidate, 0))
        except OSError:
            continue
        for _ in range(200):
            port = rng.randrange(10000, max(10001, low))
            with _HANDED_LOCK:
                if port in _HANDED:
                    continue
            if _bindable(candidate, port):
                with _HANDED_LOCK:
                    _HANDED.append(port)
                return port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((candidate, 0))
            return int(s.getsockname()[1])
    raise OSError(f"cannot find a free TCP port on {host}")
