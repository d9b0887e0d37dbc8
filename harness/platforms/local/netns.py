"""Network namespaces on a private bridge: one "host" per stack instance on this machine.

Why: partitions must be real packet drops between real hosts, and a single loopback interface cannot
express "node-0 cannot reach etcd but the gate can". Each host is a network namespace with one veth on a
private bridge in the root namespace; the bridge has an IP too, so the root namespace (the harness, its
fault proxies, its probes) reaches every host and every host reaches the harness. There is no default
route: nothing from inside can leave this machine's private /24.

Every OS object carries the run prefix (``gvh`` + 6 hex digits): namespaces ``<prefix>-<host>``, bridge
``<prefix>br``, veths ``<prefix>v<i>``. :func:`cleanup_leftovers` finds them by that prefix after a
crash; :func:`claim_prefix` / :func:`dead_prefixes` tell a sweeper which prefixes belong to runs that
are gone (so it never tears down a parallel run that is still alive).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from harness import random as hrand
from harness.platforms.base import PlatformError, Unsupported

_CONNECT = (
    "import socket,sys\n"
    "socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()\n"
)
PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{1,9}$")
OWNERS_DIR = Path("/run/goverse-harness/owners")


def sh(
    argv: Sequence[str], *, input: str | None = None, check: bool = True, timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    """Run a tool, capture its output, and on failure raise :class:`PlatformError` with stderr."""
    try:
        proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise Unsupported(f"{argv[0]} is not installed") from exc
    if check and proc.returncode != 0:
        raise PlatformError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def check_prefix(prefix: str) -> str:
    """Interface names are limited to 15 bytes, so a prefix is 2–10 lowercase letters/digits."""
    if not PREFIX_RE.match(prefix):
        raise ValueError(f"prefix {prefix!r} must match {PREFIX_RE.pattern} (it goes into interface names)")
    return prefix


# --- run ownership -------------------------------------------------------------------------------


def claim_prefix(prefix: str) -> None:
    """Record that this process owns ``prefix`` (idempotent), so sweepers spare a live run."""
    OWNERS_DIR.mkdir(parents=True, exist_ok=True)
    (OWNERS_DIR / check_prefix(prefix)).write_text(f"{os.getpid()}\n")


def release_prefix(prefix: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (OWNERS_DIR / prefix).unlink()


def dead_prefixes(tag: str = "gvh") -> list[str]:
    """Prefixes starting with ``tag`` whose owning process is gone: safe to sweep."""
    out: list[str] = []
    if not OWNERS_DIR.is_dir():
        return out
    for mark in OWNERS_DIR.iterdir():
        if not mark.name.startswith(tag):
            continue
        try:
            pid = int(mark.read_text().strip())
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            out.append(mark.name)
        except PermissionError:
            pass  # alive, someone else's
    return sorted(out)


# --- subnet choice -------------------------------------------------------------------------------


def used_ipv4_networks() -> list[ipaddress.IPv4Network]:
    """Networks of every IPv4 address in the root namespace (to avoid colliding with them)."""
    out = sh(["ip", "-4", "-o", "addr", "show"], check=False).stdout
    return [ipaddress.IPv4Interface(m).network for m in re.findall(r"inet (\S+)", out)]


def pick_subnet(base: str = "10.77.0.0/16", used: Sequence[ipaddress.IPv4Network] | None = None) -> str:
    """A free /24 inside ``base``, chosen at random (not seeded: parallel runs must not agree)."""
    used = used_ipv4_networks() if used is None else list(used)
    candidates = [
        n for n in ipaddress.ip_network(base).subnets(new_prefix=24)
        if n.network_address.packed[-2] not in (0, 255) and not any(n.overlaps(u) for u in used)
    ]
    if not candidates:
        raise PlatformError(f"no free /24 left in {base}")
    return str(candidates[int.from_bytes(os.urandom(2), "big") % len(candidates)])


# --- hosts and the network -------------------------------------------------------------------------


@dataclass
class Host:
    """One namespace on the bridge."""

    name: str  #: logical name, e.g. "node-0"
    ns: str  #: namespace name, "<prefix>-node-0"
    ip: str  #: address on the private bridge
    veth: str  #: root-namespace end of its veth pair
    aliases: list[tuple[str, int]] = field(default_factory=list)
    """(ip, port) pairs by which this host is *also* reached (fault proxies in the root namespace)."""

    @property
    def wrap(self) -> list[str]:
        """The command prefix that runs a program inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns]

    def run(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run a command in the namespace (captured; raises :class:`PlatformError` on failure)."""
        return sh([*self.wrap, *argv], **kw)

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start a long-running process in the namespace."""
        return subprocess.Popen([*self.wrap, *argv], **kw)

    def can_connect(self, ip: str, port: int, timeout: float = 1.0) -> bool:
        """Whether a TCP connect from inside this host to ``ip:port`` completes within ``timeout``.
        Why: a partition or a black hole must be *shown* to bite, not assumed to."""
        r = self.run([sys.executable, "-c", _CONNECT, ip, str(port), str(timeout)], check=False,
                     timeout=timeout + 15)
        return r.returncode == 0


class Network:
    """A private bridge with an IP in the root namespace, and hosts (namespaces) attached to it.

    Use as a context manager, or call :meth:`teardown` (idempotent) in a ``finally``."""

    def __init__(self, prefix: str | None = None, subnet: str | None = None) -> None:
        if os.geteuid() != 0:
            raise Unsupported("network namespaces need root (euid 0)")
        self.prefix = check_prefix(prefix or hrand.run_prefix())
        self.subnet = ipaddress.IPv4Network(subnet or pick_subnet())
        if self.subnet.prefixlen > 29:
            raise ValueError(f"subnet {self.subnet} is too small")
        self.bridge = f"{self.prefix}br"
        self.bridge_ip = str(self.subnet.network_address + 1)
        self.hosts: dict[str, Host] = {}
        self._next = 0
        claim_prefix(self.prefix)
        try:
            sh(["ip", "link", "add", self.bridge, "type", "bridge"])
            sh(["ip", "addr", "add", f"{self.bridge_ip}/{self.subnet.prefixlen}", "dev", self.bridge])
            sh(["ip", "link", "set", self.bridge, "up"])
        except BaseException:
            self.teardown()
            raise

    def add_host(self, name: str) -> Host:
        """Create the namespace ``<prefix>-<name>`` with ``lo`` up and ``eth0`` on the bridge."""
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
            raise ValueError(f"bad host name {name!r}")
        i = self._next
        self._next += 1
        addr = self.subnet.network_address + 2 + i
        if addr >= self.subnet.broadcast_address:
            raise PlatformError(f"subnet {self.subnet} is full")
        host = Host(name=name, ns=f"{self.prefix}-{name}", ip=str(addr), veth=f"{self.prefix}v{i}")
        peer = f"{self.prefix}p{i}"
        self.hosts[name] = host  # registered first so teardown removes a half-built host
        sh(["ip", "netns", "add", host.ns])
        sh(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", peer])
        sh(["ip", "link", "set", peer, "netns", host.ns])
        sh(["ip", "link", "set", host.veth, "master", self.bridge])
        sh(["ip", "link", "set", host.veth, "up"])
        batch = "\n".join([
            "link set lo up",
            f"link set {peer} name eth0",
            f"addr add {host.ip}/{self.subnet.prefixlen} dev eth0",
            "link set eth0 up",
        ])
        sh(["ip", "-n", host.ns, "-batch", "-"], input=batch + "\n")
        return host

    def host(self, name: str) -> Host:
        return self.hosts[name]

    def teardown(self) -> None:
        """Kill what still runs in our namespaces, delete them (their veths go with them) and the
        bridge. Safe to call twice, and after a partial setup."""
        for host in list(self.hosts.values()):
            _kill_ns_pids(host.ns)
            sh(["ip", "netns", "delete", host.ns], check=False)
            sh(["ip", "link", "delete", host.veth], check=False)
        self.hosts.clear()
        sh(["ip", "link", "delete", self.bridge], check=False)
        release_prefix(self.prefix)

    def __enter__(self) -> Network:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.teardown()


def _kill_ns_pids(ns: str) -> None:
    out = sh(["ip", "netns", "pids", ns], check=False).stdout
    for pid in out.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def list_namespaces(prefix: str) -> list[str]:
    out = sh(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0].startswith(prefix)]


def list_links(prefix: str) -> list[str]:
    out = sh(["ip", "-o", "link", "show"], check=False).stdout
    names = [m.split("@")[0] for m in re.findall(r"^\d+: (\S+?):", out, re.M)]
    return [n for n in names if n.startswith(prefix)]


def leftovers(prefix: str) -> list[str]:
    """Namespaces and links of ``prefix`` that still exist (empty after a clean teardown)."""
    return [f"netns {n}" for n in list_namespaces(prefix)] + [f"link {n}" for n in list_links(prefix)]


def cleanup_leftovers(prefix: str) -> list[str]:
    """Remove every namespace and link whose name starts with ``prefix`` (and kill processes still in
    those namespaces). Returns what was removed. Pass a run's full prefix, or a tag from
    :func:`dead_prefixes`: a bare ``gvh`` would also tear down parallel runs that are alive."""
    removed = []
    for ns in list_namespaces(prefix):
        _kill_ns_pids(ns)
        sh(["ip", "netns", "delete", ns], check=False)
        removed.append(f"netns {ns}")
    for link in list_links(prefix):
        sh(["ip", "link", "delete", link], check=False)
        removed.append(f"link {link}")
    if len(prefix) > 3:
        release_prefix(prefix)
    return removed
