"""Turn a grudge into real packet drops inside the hosts' network namespaces (nft, else iptables).

Why inside each namespace: a rule in host A's own namespace drops exactly what A receives, so the
grudge maps one-to-one onto rules (A drops packets *from* the hosts it holds a grudge against; Jepsen's
``net/drop-all!``), one-way cuts are just a grudge held by one side, and healing is deleting one table
per namespace — nothing in the root namespace (where the harness itself lives) is ever touched.

Fault proxies: a host may also be reached through a TCP fault proxy in the root namespace (its
*aliases*: ``(bridge ip, proxy port)`` pairs). Traffic through a proxy carries the proxy's address, not
the peer's, so "A drops B" also installs:

- in A: drop input from each of B's aliases (``ip saddr P tcp sport port``) — A stops hearing B's
  replies on connections A made to B through the proxy;
- in B: drop output to each of A's aliases (``ip daddr P tcp dport port``) — what B sends to A through
  the proxy never leaves B, which is what "A does not hear B" means on that path.

So a cut on a proxied link bites the same as a cut on the direct link.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from harness.platforms.base import PlatformError, Unsupported
from harness.platforms.local.netns import Network, sh

Backend = Literal["nft", "iptables"]
Addr = tuple[str, int]


@dataclass
class HostDrops:
    """What one host drops. Empty means "no rules at all" for that host."""

    from_ips: set[str] = field(default_factory=set)
    from_aliases: set[Addr] = field(default_factory=set)
    to_aliases: set[Addr] = field(default_factory=set)

    def empty(self) -> bool:
        return not (self.from_ips or self.from_aliases or self.to_aliases)


def plan(
    grudge: Mapping[str, Iterable[str]],
    ips: Mapping[str, str],
    aliases: Mapping[str, Iterable[Addr]] | None = None,
) -> dict[str, HostDrops]:
    """Per-host drops for ``grudge`` (pure). ``ips``: host → its address on the bridge; ``aliases``:
    host → (ip, port) pairs by which it is reached through proxies."""
    aliases = aliases or {}
    out: dict[str, HostDrops] = {}
    for holder, dropped in grudge.items():
        for peer in dropped:
            for h in (holder, peer):
                if h not in ips:
                    raise PlatformError(f"grudge names {h!r}, which is not a host of this network")
            if holder == peer:
                continue
            out.setdefault(holder, HostDrops()).from_ips.add(ips[peer])
            out[holder].from_aliases.update(aliases.get(peer, ()))
            peer_aliases_of_holder = set(aliases.get(holder, ()))
            if peer_aliases_of_holder:
                out.setdefault(peer, HostDrops()).to_aliases.update(peer_aliases_of_holder)
    return {h: d for h, d in out.items() if not d.empty()}


def _ports_by_ip(addrs: Iterable[Addr]) -> dict[str, list[int]]:
    by_ip: dict[str, list[int]] = {}
    for ip, port in sorted(addrs):
        by_ip.setdefault(ip, []).append(port)
    return by_ip


def render_nft(table: str, drops: HostDrops) -> str:
    """An ``nft -f`` script that atomically replaces ``table`` with these drops (pure)."""
    lines = [f"add table inet {table}", f"delete table inet {table}"]
    if drops.empty():
        return "\n".join(lines) + "\n"
    lines.append(f"table inet {table} {{")
    lines.append("  chain input {")
    lines.append("    type filter hook input priority -10; policy accept;")
    if drops.from_ips:
        lines.append(f"    ip saddr {{ {', '.join(sorted(drops.from_ips))} }} drop")
    for ip, ports in _ports_by_ip(drops.from_aliases).items():
        lines.append(f"    ip saddr {ip} tcp sport {{ {', '.join(map(str, ports))} }} drop")
    lines.append("  }")
    lines.append("  chain output {")
    lines.append("    type filter hook output priority -10; policy accept;")
    for ip, ports in _ports_by_ip(drops.to_aliases).items():
        lines.append(f"    ip daddr {ip} tcp dport {{ {', '.join(map(str, ports))} }} drop")
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_iptables(chain: str, drops: HostDrops) -> list[list[str]]:
    """iptables argv lists that install the drops in chains ``<chain>-in`` / ``<chain>-out`` (pure).
    Run them after :func:`iptables_heal_cmds`."""
    cin, cout = f"{chain}-in", f"{chain}-out"
    cmds: list[list[str]] = [["iptables", "-w", "-N", cin], ["iptables", "-w", "-N", cout]]
    for ip in sorted(drops.from_ips):
        cmds.append(["iptables", "-w", "-A", cin, "-s", ip, "-j", "DROP"])
    for ip, port in sorted(drops.from_aliases):
        cmds.append(["iptables", "-w", "-A", cin, "-s", ip, "-p", "tcp", "--sport", str(port), "-j", "DROP"])
    for ip, port in sorted(drops.to_aliases):
        cmds.append(["iptables", "-w", "-A", cout, "-d", ip, "-p", "tcp", "--dport", str(port), "-j", "DROP"])
    cmds.append(["iptables", "-w", "-I", "INPUT", "1", "-j", cin])
    cmds.append(["iptables", "-w", "-I", "OUTPUT", "1", "-j", cout])
    return cmds


def iptables_heal_cmds(chain: str) -> list[list[str]]:
    """Commands that remove our chains; each may fail harmlessly when already gone."""
    cmds = []
    for hook, c in (("INPUT", f"{chain}-in"), ("OUTPUT", f"{chain}-out")):
        cmds += [["iptables", "-w", "-D", hook, "-j", c], ["iptables", "-w", "-F", c],
                 ["iptables", "-w", "-X", c]]
    return cmds


def detect_backend(ns: str | None = None) -> Backend:
    """``nft`` if the binary works (in ``ns`` when given), else ``iptables``; Unsupported if neither."""
    wrap = ["ip", "netns", "exec", ns] if ns else []
    if shutil.which("nft") and sh([*wrap, "nft", "list", "tables"], check=False).returncode == 0:
        return "nft"
    if shutil.which("iptables") and sh([*wrap, "iptables", "-w", "-S"], check=False).returncode == 0:
        return "iptables"
    raise Unsupported("neither nft nor iptables works here (install nftables or iptables)")


class Partitioner:
    """Applies grudges to a :class:`Network`'s hosts; :meth:`heal` removes every drop.

    Host aliases come from ``Host.aliases`` (set by whoever wires fault proxies), or ``extra_aliases``.
    """

    def __init__(
        self,
        network: Network,
        backend: Backend | None = None,
        extra_aliases: Mapping[str, Iterable[Addr]] | None = None,
    ) -> None:
        self.network = network
        self.table = network.prefix
        self.extra_aliases = {h: list(a) for h, a in (extra_aliases or {}).items()}
        self._backend = backend
        self._active: dict[str, HostDrops] = {}

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            any_ns = next(iter(self.network.hosts.values())).ns if self.network.hosts else None
            self._backend = detect_backend(any_ns)
        return self._backend

    def aliases(self) -> dict[str, list[Addr]]:
        out = {name: list(h.aliases) for name, h in self.network.hosts.items()}
        for h, extra in self.extra_aliases.items():
            out.setdefault(h, []).extend(extra)
        return out

    def plan(self, grudge: Mapping[str, Iterable[str]]) -> dict[str, HostDrops]:
        ips = {name: h.ip for name, h in self.network.hosts.items()}
        return plan(grudge, ips, self.aliases())

    def apply(self, grudge: Mapping[str, Iterable[str]]) -> dict[str, HostDrops]:
        """Replace whatever drops are in force with those of ``grudge``; returns the per-host plan."""
        drops = self.plan(grudge)
        self.heal()
        try:
            self._each(lambda host: self._install(host, drops[host]), list(drops))
            self._active.update(drops)
        except BaseException:
            self.heal()
            raise
        return drops

    @staticmethod
    def _each(fn: Callable[[str], None], hosts: list[str]) -> None:
        """Run ``fn(host)`` for every host at once (one thread each), so a partition takes effect —
        and heals — within about one ``nft`` invocation instead of one per host in turn: the recorded
        t_inject / t_heal then bound the moment of effect tightly. Raises the first error after all
        have finished."""
        if len(hosts) <= 1:
            for h in hosts:
                fn(h)
            return
        with ThreadPoolExecutor(max_workers=min(16, len(hosts)), thread_name_prefix="nft") as ex:
            futures = [ex.submit(fn, h) for h in hosts]
        for f in futures:
            exc = f.exception()
            if exc is not None:
                raise exc

    def heal(self) -> None:
        """Remove every drop this partitioner may have installed, on every host (idempotent)."""
        errors: list[str] = []
        # the hosts whose drops this partitioner installed, when it knows them (the heal that ends a
        # fault: fewer nft runs, so t_heal follows the requested hold closely); else every host
        hosts = sorted(self._active) or list(self.network.hosts)

        def clear(name: str) -> None:
            try:
                self._install(name, HostDrops())
            except PlatformError as exc:  # a namespace that is already gone has no rules left
                errors.append(str(exc))
        self._each(clear, hosts)
        self._active.clear()
        if errors and any("No such file" not in e and "Cannot open network namespace" not in e
                          for e in errors):
            raise PlatformError("heal failed: " + "; ".join(errors))

    def active(self) -> dict[str, HostDrops]:
        return dict(self._active)

    def rules(self, host: str) -> str:
        """What is installed in ``host`` right now, as the firewall tool prints it."""
        h = self.network.hosts[host]
        if self.backend == "nft":
            return h.run(["nft", "list", "ruleset"]).stdout
        return h.run(["iptables", "-w", "-S"]).stdout

    def _install(self, name: str, drops: HostDrops) -> None:
        h = self.network.hosts[name]
        if self.backend == "nft":
            run_in_netns(h.ns, ["nft", "-f", "-"], render_nft(self.table, drops))
            return
        for cmd in iptables_heal_cmds(self.table):
            h.run(cmd, check=False)
        if not drops.empty():
            for cmd in render_iptables(self.table, drops):
                h.run(cmd)


_CLONE_NEWNET = 0x40000000


def _join_netns(ns: str) -> int:
    """Move the calling thread into network namespace ``ns`` (setns(2)); 0, or the errno of a refusal
    (a missing namespace raises FileNotFoundError). Callers run it on a fresh thread: it stays there."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"{NETNS_DIR}/{ns}", os.O_RDONLY)
    try:
        return 0 if libc.setns(fd, _CLONE_NEWNET) == 0 else int(ctypes.get_errno())
    finally:
        os.close(fd)


NETNS_DIR = "/run/netns"  # where `ip netns add` pins named namespaces


def connect_from(ns: str, ip: str, port: int, timeout: float) -> str:
    """``"connected"``, ``"timeout"`` (dropped) or ``"refused: …"``: a TCP connect to ``ip:port`` made
    from inside network namespace ``ns``.

    Why a thread that joins the namespace with setns(2) rather than ``ip netns exec python …``: no
    process to start, so the evidence that a cut bites costs milliseconds plus ``timeout`` and can run
    while the fault holds (the nemesis records its own timestamps) instead of stretching the fault's
    window. The namespace is per thread; the thread ends with the probe."""
    import socket
    import threading

    out: list[str] = []

    def probe() -> None:
        try:
            err = _join_netns(ns)
            if err:
                raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            socket.create_connection((ip, port), timeout=timeout).close()
            out.append("connected")
        except TimeoutError:
            out.append("timeout")
        except OSError as exc:
            out.append(f"refused: {exc}")

    th = threading.Thread(target=probe, name=f"connect-from-{ns}", daemon=True)
    th.start()
    th.join(timeout + 5)
    return out[0] if out else "error: the probe thread did not finish"


def run_in_netns(ns: str, argv: list[str], input: str | None = None, timeout: float = 20.0) -> None:
    """Run ``argv`` inside network namespace ``ns``, forked from a fresh thread that joined it with
    setns(2) — one exec fewer than ``ip netns exec`` (which execs ``ip``, joins, then execs the tool),
    so a partition's rules go in and out faster. Raises :class:`PlatformError` with stderr on failure.
    A fresh thread every time: a thread that joined a namespace stays in it."""
    import subprocess
    import threading

    done: list[subprocess.CompletedProcess[str] | BaseException] = []

    def work() -> None:
        try:
            err = _join_netns(ns)
            if err:
                raise PlatformError(f"setns({ns}): {os.strerror(err)}")
            done.append(subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            done.append(exc)

    th = threading.Thread(target=work, name=f"in-{ns}", daemon=True)
    th.start()
    th.join(timeout + 5)
    if not done:
        raise PlatformError(f"{' '.join(argv)} in {ns} did not finish within {timeout}s")
    r = done[0]
    if isinstance(r, FileNotFoundError) and not os.path.exists(f"{NETNS_DIR}/{ns}"):
        raise PlatformError(f"Cannot open network namespace {ns}: No such file or directory")
    if isinstance(r, FileNotFoundError):
        raise Unsupported(f"{argv[0]} is not installed")
    if isinstance(r, BaseException):
        raise r
    if r.returncode != 0:
        raise PlatformError(f"{' '.join(argv)} in {ns} failed ({r.returncode}): {r.stderr.strip()}")


def render_dnat_nft(table: str, rules: Mapping[Addr, Addr]) -> str:
    """An ``nft -f`` script that atomically replaces ``table`` with output-hook ``dnat`` rules (pure):
    TCP to ``(ip, port)`` goes to the address it maps to instead — how a host's connections to a
    peer are sent through a fault proxy when the host learns the peer's address at run time (a gate
    from etcd). Priority -100 (nat) runs before the filters at -20/-10, so a partition's output drops
    see the proxy's address (an alias of the peer) and its input drops the proxy's replies."""
    lines = [f"add table ip {table}", f"delete table ip {table}"]
    if not rules:
        return "\n".join(lines) + "\n"
    lines += [f"table ip {table} {{", "  chain output {", "    type nat hook output priority -100; policy accept;"]
    for (ip, port), (to_ip, to_port) in sorted(rules.items()):
        lines.append(f"    ip daddr {ip} tcp dport {port} dnat to {to_ip}:{to_port}")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


LinkAction = Literal["drop", "reset"]


def render_link_nft(table: str, rules: Mapping[str, LinkAction]) -> str:
    """An ``nft -f`` script that atomically replaces ``table`` with per-destination rules on the
    output hook (pure): ``drop`` black-holes TCP to that IP (the sender retransmits into the void),
    ``reset`` answers every TCP packet to it with an RST to the local sender (new connects are
    refused, open connections abort on their next send). Only packets in the *original* direction
    of a connection (conntrack) are hit: the link is the source's calls to the destination, so the
    destination's own connections to the source (and their replies) still flow."""
    lines = [f"add table inet {table}", f"delete table inet {table}"]
    if not rules:
        return "\n".join(lines) + "\n"
    lines += [f"table inet {table} {{", "  chain output {", "    type filter hook output priority -20; policy accept;"]
    for ip, action in sorted(rules.items()):
        verdict = "drop" if action == "drop" else "reject with tcp reset"
        lines.append(f"    ip daddr {ip} meta l4proto tcp ct direction original {verdict}")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


class LinkFilter:
    """Link faults (black hole, reset) on links that do not go through a fault proxy — gate → node,
    node → etcd — as nft rules in the *source* host's namespace, in their own table
    (``<prefix>lnk``), so they combine with a partition (``Partitioner``'s table) without either
    replacing the other. ``apply`` and ``heal`` touch all source hosts at once."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self.table = f"{network.prefix}lnk"
        self._rules: dict[str, dict[str, LinkAction]] = {}

    def apply(self, pairs: Iterable[tuple[str, str]], action: LinkAction) -> dict[str, dict[str, LinkAction]]:
        """Add ``action`` on TCP from each source host to each destination host's IP."""
        want = {h: dict(r) for h, r in self._rules.items()}
        for src, dst in pairs:
            if src not in self.network.hosts or dst not in self.network.hosts:
                raise Unsupported(f"link {src} -> {dst}: both ends must be hosts with their own namespace")
            want.setdefault(src, {})[self.network.hosts[dst].ip] = action
        changed = [h for h in want if want[h] != self._rules.get(h)]
        try:
            Partitioner._each(lambda h: run_in_netns(self.network.hosts[h].ns, ["nft", "-f", "-"],
                                                     render_link_nft(self.table, want[h])), changed)
        except BaseException:
            self.heal(changed)
            raise
        self._rules = want
        return {h: dict(r) for h, r in want.items()}

    def heal(self, hosts: Iterable[str] | None = None) -> None:
        """Remove the link rules from ``hosts`` (default: every host that has some); idempotent."""
        names = sorted(self._rules) if hosts is None else sorted(set(hosts))
        Partitioner._each(lambda h: run_in_netns(self.network.hosts[h].ns, ["nft", "-f", "-"],
                                                 render_link_nft(self.table, {})), names)
        for h in names:
            self._rules.pop(h, None)
