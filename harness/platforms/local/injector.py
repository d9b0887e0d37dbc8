"""Applies faults on the local platform (processes, signals; namespaces and cgroups where available).

Why resolution happens here: a target such as ``one-node`` is chosen when the fault runs, from the live
topology, with the seeded RNG; what was actually hit is returned so the history records it.

Each method builds on a primitive the deployment wired at deploy time (``LocalDeployment``: the
``partitioner``, the ``proxy`` carrying every node → PostgreSQL link, the ``pg_disk`` small filesystem
and ``pg_faultfs`` FUSE layer under PostgreSQL's data directory) or on a cgroup limit made on the spot.
What the deployment could not wire is in ``fault_unwired`` with the reason, and the fault raises
``Unsupported`` with it: the scenario becomes an explained skip. Every injection returns a heal that
leaves nothing behind, and limits are also registered with the deployment so its teardown heals them
even if the run is interrupted between inject and heal.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from harness.faults import outcomes as out
from harness.faults import spec
from harness.faults.handlers import Handlers
from harness.faults.nemesis import Injected
from harness.faults.plan import plan_link, plan_partition, plan_targets
from harness.platforms.actions import OperationsSource, OperatorActions
from harness.platforms.base import PlatformError, Unsupported
from harness.platforms.interpreter import Interpreter, pause_all, start_again
from harness.platforms.local.cgroups import apply_limits, heal_limits, throttled_counts
from harness.platforms.local.diskinject import inject_pg_disk
from harness.platforms.local.memfault import MemoryStressor, Supervisor, restore_oom_scores, set_oom_score_adj

if TYPE_CHECKING:
    from harness.platforms.local.deploy import LocalDeployment
    from harness.platforms.operations import Operations


def _local_operations(dep: LocalDeployment) -> OperationsSource:
    def make() -> Operations:
        from harness.platforms.local.operations import LocalOperations

        return LocalOperations(dep)
    return make


class LocalInjector(Interpreter):
    """Fault application for ``LocalDeployment`` (see harness/platforms/local/deploy.py)."""

    platform = "local"

    def __init__(self, deployment: LocalDeployment) -> None:
        self.dep = deployment
        self._links: Any = None  # firewall.LinkFilter, made on the first nft link fault
        self._held: list[str] = []  # fault proxy links whose PostgreSQL replies are held (Kill.hold_replies_ms)
        # operator actions (scale, roll-outs, rotation, backup/restore) go through LocalOperations;
        # unbound ones record no inner windows — a scenario binds its own (use_operations)
        self.actions = OperatorActions(_local_operations(deployment))

    def topology(self, running_only: bool = True) -> dict[str, str]:
        return {i.name: i.component for i in self.dep.instances() if i.running or not running_only}

    def _one(self, spec: str) -> list[str]:
        return plan_targets(spec, self.topology())

    def fault_handlers(self) -> Handlers:
        return Handlers(
            kill=self._inject_kill,
            restart=self._inject_restart,
            pause=self._inject_pause,
            partition=self._inject_partition,
            latency=self._inject_latency,
            timeout=self._inject_timeout,
            reset=self._inject_reset,
            cpu_stress=self._inject_cpu_stress,
            memory_pressure=self._inject_memory_pressure,
            disk=self._inject_disk,
        )

    # ---- preparation before the before-inject hooks (Nemesis.inject) ------------------------------------
    def prepare(self, fault: spec.Fault) -> None:
        """``Kill(hold_replies_ms > 0)``: hold PostgreSQL's replies to the target nodes from now on (the
        burst that the hooks fire then commits without answers); ``_inject_kill`` kills and clears."""
        if isinstance(fault, spec.Kill) and fault.hold_replies_ms > 0:
            self._held = self._hold_replies(self._one(fault.target))

    def unprepare(self, fault: spec.Fault) -> None:
        self._release_replies()

    def _hold_replies(self, targets: list[str]) -> list[str]:
        from harness.platforms.local import faultproxy

        topo = self.topology()
        proxy = self.dep.proxy
        links = [n for t in targets if topo.get(t) == "node" and (n := self._link_name(t, "postgres", topo))]
        if proxy is None or not links:
            raise Unsupported(f"holding PostgreSQL's replies needs the node -> postgres fault proxy link of "
                              f"{targets} (nodes only)")
        held: list[str] = []
        try:
            for name in links:
                proxy.set_toxic(name, faultproxy.HoldAfterCommit())  # transactions reach COMMIT, unanswered
                held.append(name)
        except BaseException:
            for name in held:
                with contextlib.suppress(Exception):
                    proxy.clear(name)
            raise
        return held

    def _release_replies(self) -> list[str]:
        held, self._held = self._held, []
        for name in held:
            with contextlib.suppress(Exception):
                self.dep.proxy.clear(name)
        return held

    def _inject_kill(self, fault: spec.Kill) -> Injected[out.KillDetail, out.KillHealed]:
        targets = self._one(fault.target)
        held_on: list[str] | None = None
        try:
            if fault.hold_replies_ms > 0:
                if not self._held:  # not prepared by the nemesis: hold from now on
                    self._held = self._hold_replies(targets)
                held_on = list(self._held)
                time.sleep(fault.hold_replies_ms / 1000)  # sleep-ok: the hold before the kill is the subject
            for t in targets:
                self.dep.kill(t, fault.signum)
        finally:
            self._release_replies()  # the killed process's connections are gone with what was held

        detail: out.KillDetail = {"signal": fault.signal, "how": f"{fault.signal} to the process"}
        if held_on is not None:
            detail["replies_held_on"] = held_on
        return Injected(targets, start_again(targets, self.dep.start), detail)

    def _inject_restart(self, fault: spec.Restart) -> Injected[out.RestartDetail, out.RestartHealed]:
        targets = self._one(fault.target)
        codes = {t: self.dep.stop(t, graceful=fault.graceful) for t in targets}
        return Injected(targets, start_again(targets, self.dep.start), {"graceful": fault.graceful, "exit_codes": codes,
                                        "how": "SIGTERM, SIGKILL after the grace period" if fault.graceful
                                        else "SIGKILL"})

    def _inject_pause(self, fault: spec.Pause) -> Injected[out.PauseDetail, out.PauseHealed]:
        targets = self._one(fault.target)
        return Injected(targets, pause_all(targets, self.dep.pause, self.dep.resume),
                        {"how": "SIGSTOP, SIGCONT at the heal"})

    # ---- network: partitions (nft/iptables in the namespaces) --------------------------------------
    def _inject_partition(self, fault: spec.Partition) -> Injected[out.PartitionDetail, out.PartitionHealed]:
        """Compute the shape's grudge over the live topology and install it; heal removes every drop.

        The grudge goes into the history (``detail["grudge"]``): who drops whom is what a reader of
        the report needs to understand what the cluster went through."""
        part = self.dep.partitioner
        if part is None:
            raise Unsupported("partitions need network namespaces: "
                              + self.dep.fault_unwired.get("partition", "no partitioner wired"))
        plan = plan_partition(fault, self.topology())
        grudge = plan.as_sets()
        part.apply(grudge)
        detail: out.PartitionDetail = {**plan.detail(), "how": f"{part.backend} drops in the hosts' network namespaces"}

        def heal() -> out.PartitionHealed:
            part.heal()
            return {"healed": sorted(grudge)}

        def verify() -> out.PartitionEvidence:
            return {"verified_cut": self._verify_cut(grudge)}
        return Injected(plan.targets, heal, detail, verify=verify)

    def _listen_addr(self, name: str) -> tuple[str, int] | None:
        """An address ``name`` listens on (its API, etcd client or PostgreSQL port), to test a cut."""
        from urllib.parse import urlsplit

        if name == "postgres" and self.dep.postgres is not None:
            return (self.dep.postgres.host, int(self.dep.postgres.port))
        url = self.dep.instance(name).api_url
        parts = urlsplit(url or "")
        return (parts.hostname, parts.port) if parts.hostname and parts.port else None

    CUT_PROBE_TIMEOUT_S = 0.25

    def _verify_cut(self, grudge: dict[str, set[str]]) -> out.CutEvidence:
        """Evidence that the drops bite, taken while the fault holds (the nemesis runs it on its own
        thread and records its times; it costs the fault's window nothing): a TCP connect from a host
        the grudge names, made inside that host's namespace, to a port its holder listens on must
        time out — dropped, not refused (a refusal is a host that answered). One pair is enough to
        show the rules are live; ``dropped`` is False when they were not."""
        from harness.platforms.local.firewall import connect_from

        for holder in sorted(grudge):
            addr = self._listen_addr(holder)
            if addr is None or not grudge[holder]:
                continue
            sender = sorted(grudge[holder])[0]
            host = self.dep.network.hosts.get(sender) if self.dep.network is not None else None
            if host is None:
                continue
            outcome = connect_from(host.ns, addr[0], int(addr[1]), self.CUT_PROBE_TIMEOUT_S)
            return {"from": sender, "to": holder, "addr": f"{addr[0]}:{addr[1]}", "outcome": outcome,
                    "dropped": outcome == "timeout"}
        return {"dropped": None, "why": "no holder with a known listening port"}

    # ---- network: link faults through the TCP fault proxy --------------------------------------------
    def _link_name(self, src: str, dst: str, topo: dict[str, str]) -> str | None:
        """The fault proxy link carrying ``src`` → ``dst``, or None when that pair is a direct
        connection: node → PostgreSQL always (deploy.py), gate → node, node/gate → etcd member when
        the stack was deployed with them in ``StackSpec.proxy_links``; a real Goverse node's first
        etcd endpoint (``node-i->etcd``) for ``node -> etcd-0``."""
        from harness.platforms.local.deploy import etcd_link_name, pg_link_name, proxy_link_name

        proxy = self.dep.proxy
        if proxy is None:
            return None
        links = proxy.links()
        if dst == "postgres" and topo.get(src) == "node":
            return pg_link_name(src) if pg_link_name(src) in links else None
        for name in (proxy_link_name(src, dst), etcd_link_name(src) if dst == "etcd-0" else None):
            if name is not None and name in links:
                return name
        return None

    def _proxy_links(self, link: spec.Link) -> list[str]:
        """The fault proxy links a link spec covers; Unsupported for links not wired through one.

        Wired (deploy.py): node → PostgreSQL always; gate → node, node → etcd and gate → etcd when
        the stack was deployed with ``StackSpec.proxy_links`` naming them. Links are checked to carry
        the client's traffic: a PostgreSQL or etcd link each (the client connects at start-up; a
        client that ignored the proxy address would make the fault a silent no-op); gate → node links
        together (a gate connects to a node on its first call there, so one idle pair is no evidence)."""
        proxy = self.dep.proxy
        if proxy is None:
            raise Unsupported("link faults need the TCP fault proxy (netem-based link faults are not "
                              "implemented): " + (self.dep.capabilities().get("latency") or "not wired"))
        topo = self.topology()
        names, lazy = [], []
        for src, dst in plan_link(link, topo):
            name = self._link_name(src, dst, topo)
            if name is None:
                why = getattr(self.dep, "fault_unwired", {}).get(f"{topo.get(src)}-{topo.get(dst)}")
                raise Unsupported(f"{src} -> {dst} is a direct connection, not wired through the fault proxy "
                                  "(this kernel has no netem): latency is injected on node -> postgres, and on "
                                  "gate -> node / node -> etcd / gate -> etcd when the stack is deployed with "
                                  "StackSpec(proxy_links=('gate-node', 'node-etcd', 'gate-etcd'))"
                                  + (f"; {why}" if why else ""))
            if topo.get(src) == "gate" and topo.get(dst) == "node":
                lazy.append(name)
            elif proxy.stats(name).accepted == 0:
                raise Unsupported(f"{src} does not connect to {dst} through its fault proxy link {name} (it "
                                  "ignored the proxy's address), so a fault on that link would do nothing")
            names.append(name)
        if lazy and not any(proxy.stats(n).accepted for n in lazy):
            raise Unsupported(f"no gate has called through its fault proxy links {lazy} yet (the dnat in the "
                              "gates' namespaces did not take), so a fault on them would do nothing")
        return names

    def _inject_toxic(self, link: spec.Link, toxic: Any,
                      figures: out.LinkFigures) -> Injected[out.LinkDetail, out.LinkHealed]:
        names = self._proxy_links(link)
        proxy = self.dep.proxy
        done: list[str] = []
        try:
            for name in names:
                proxy.set_toxic(name, toxic)
                done.append(name)
        except BaseException:
            for name in done:
                with contextlib.suppress(Exception):
                    proxy.clear(name)
            raise
        before = {n: proxy.stats(n).bytes_up + proxy.stats(n).bytes_down for n in names}

        def heal() -> out.LinkHealed:
            for name in names:
                proxy.clear(name)
            moved = {n: proxy.stats(n).bytes_up + proxy.stats(n).bytes_down - before[n] for n in names}
            return {"cleared": names, "bytes_during": moved}
        return Injected([n.split("->")[0] for n in names], heal, {**figures, "links": names, "via": "faultproxy",
                                                                      "how": "TCP fault proxy toxic"})

    def _inject_latency(self, fault: spec.Latency) -> Injected[out.LinkDetail, out.LinkHealed]:
        from harness.platforms.local import faultproxy

        toxic = faultproxy.Latency(ms=fault.ms, jitter_ms=fault.jitter_ms, direction=fault.direction)
        return self._inject_toxic(fault.link, toxic, {"ms": fault.ms, "jitter_ms": fault.jitter_ms,
                                                      "direction": fault.direction})

    def _inject_timeout(self, fault: spec.Timeout) -> Injected[out.LinkDetail, out.LinkHealed]:
        from harness.platforms.local import faultproxy

        if not self._all_proxied(fault.link):
            return self._inject_nft_link(fault.link, "drop")
        return self._inject_toxic(fault.link, faultproxy.Timeout(), {"toxic": "timeout"})

    def _inject_reset(self, fault: spec.Reset) -> Injected[out.LinkDetail, out.LinkHealed]:
        from harness.platforms.local import faultproxy

        if not self._all_proxied(fault.link):
            return self._inject_nft_link(fault.link, "reset")
        return self._inject_toxic(fault.link, faultproxy.ResetPeer(), {"toxic": "reset_peer"})

    def _all_proxied(self, link: spec.Link) -> bool:
        """Whether every pair of ``link`` goes through a fault proxy link (then black hole and reset
        are the proxy's toxics: nft rules on the destination's address would miss a proxied path)."""
        topo = self.topology()
        return all(self._link_name(src, dst, topo) is not None for src, dst in plan_link(link, topo))

    def _inject_nft_link(self, link: spec.Link, action: str) -> Injected[out.LinkDetail, out.LinkHealed]:
        """Black hole (``drop``) or reset on links not wired through a fault proxy — gate → node,
        node → etcd, node → node — as nft rules in each source host's namespace
        (``firewall.LinkFilter``): every TCP packet from the source to the destination's address is
        dropped, or answered with an RST to the sender."""
        from harness.platforms.local.firewall import LinkFilter

        net = self.dep.network
        if net is None or self.dep.partitioner is None:
            raise Unsupported("link faults outside node -> postgres need network namespaces: "
                              + self.dep.fault_unwired.get("partition", "the stack runs without them"))
        topo = self.topology()
        pairs = plan_link(link, topo)
        if any(self._link_name(src, dst, topo) is not None for src, dst in pairs):
            raise Unsupported(f"link {link!r} mixes links through the fault proxy with direct ones (nft); "
                              "ask for them as separate faults")
        if self._links is None:
            self._links = LinkFilter(net)
        links = self._links
        links.apply(pairs, action)  # type: ignore[arg-type]
        sources = sorted({src for src, _ in pairs})
        cleared = [f"{s}->{d}" for s, d in pairs]
        detail: out.LinkDetail = {"links": cleared, "via": "nft", "action": action,
                              "how": f"nft {action} in the sources' network namespaces"}

        def heal() -> out.LinkHealed:
            links.heal(sources)
            return {"cleared": cleared}
        return Injected(sources, heal, detail)

    # ---- cgroups: CPU starvation and memory pressure ----------------------------------------------------
    def _pid(self, name: str) -> int:
        pid = self.dep.process(name).pid
        if pid is None:
            raise PlatformError(f"{name} has no running process")
        return int(pid)

    def _inject_cpu_stress(self, fault: spec.CpuStress) -> Injected[out.CpuDetail, out.CpuHealed]:
        from harness.platforms.local.cgroups import CpuLimit

        targets = self._one(fault.target)
        limits = apply_limits("cpu", targets, lambda key, t: CpuLimit(self.dep.fault_prefix, key, self._pid(t),
                                                                      quota=fault.quota), self.dep.fault_limits)

        def heal() -> out.CpuHealed:
            throttled = throttled_counts(limits)
            heal_limits("cpu", limits, self.dep.fault_limits)
            return {"throttled": throttled}
        return Injected(targets, heal, {"quota": fault.quota, "how": "cgroup CPU quota"})

    def _inject_memory_pressure(self, fault: spec.MemoryPressure) -> Injected[out.MemoryDetail, out.MemoryHealed]:
        """A memory limit on the target and a stressor that fills the group (see
        :class:`MemoryStressor`), so the kernel OOM-kills the target; a supervisor (a watcher thread,
        as a kubelet would) restarts it at once — outside the limit, which stays for the fault's
        hold. Heal stops the stressor, removes the limit and reports the OOM kills and restarts."""
        from harness.platforms.local.cgroups import MemoryLimit

        targets = self._one(fault.target)
        limits = apply_limits("memory", targets,
                              lambda key, t: MemoryLimit(self.dep.fault_prefix, key, self._pid(t),
                                                         limit_mb=fault.limit_mb),
                              self.dep.fault_limits)
        supervisor = Supervisor(self.dep, limits)
        stressors: dict[str, MemoryStressor] = {}
        scores: dict[str, tuple[int, str]] = {}
        try:
            for t in limits:
                scores[t] = set_oom_score_adj(self._pid(t), "1000")
            self.dep.fault_limits[f"supervisor-{'+'.join(limits)}"] = supervisor
            supervisor.start()
            for t, lim in limits.items():
                st = MemoryStressor(self.dep.fault_prefix, t)
                self.dep.fault_limits[f"stressor-{t}"] = st
                stressors[t] = st.start(lim.group, fault.limit_mb)
        except BaseException:
            supervisor.heal()
            restore_oom_scores(self.dep, scores)
            self._heal_stressors(stressors)
            heal_limits("memory", limits, self.dep.fault_limits)
            raise

        def heal() -> out.MemoryHealed:
            supervisor.heal()
            restore_oom_scores(self.dep, scores)
            kills = {}
            for t, lim in limits.items():
                with contextlib.suppress(OSError):
                    kills[t] = lim.oom_kills()
            held = self._heal_stressors(stressors)
            heal_limits("memory", limits, self.dep.fault_limits)
            return {"oom_kills": {**supervisor.kills, **kills}, "restarts": supervisor.restarts,
                    "filled_mb": held}
        return Injected(targets, heal, {"limit_mb": fault.limit_mb,
                                        "how": "limit + tmpfs stressor in the group, target oom_score_adj 1000"})

    def _heal_stressors(self, stressors: dict[str, MemoryStressor]) -> dict[str, float]:
        held = {}
        for t, st in stressors.items():
            held[t] = st.heal()
            self.dep.fault_limits.pop(f"stressor-{t}", None)
        return held

    # ---- disk: PostgreSQL's own small filesystem and FUSE layer --------------------------------------
    def _inject_disk(self, fault: spec.DiskFault) -> Injected[out.DiskDetail, out.DiskHealed]:
        targets = self._one(fault.target)
        if targets != ["postgres"]:
            raise Unsupported(f"disk faults are wired under PostgreSQL's data directory only, not {targets}")
        injected = inject_pg_disk(fault, self.dep.pg_disk, self.dep.pg_faultfs, self.dep.fault_unwired)
        undo, pg = injected.heal, self.dep.postgres

        def heal() -> out.DiskHealed | None:
            # PostgreSQL PANICs when it cannot write its WAL; if it did not come back by itself (a startup
            # that fails on the full disk ends the postmaster), start it again once the disk is healed, as
            # its supervisor would on any real deployment — else every later scenario or explore segment
            # meets a stack without a database
            healed = undo() or {}
            if pg is not None and pg.ensure_running():
                healed = {**healed, "postgres_restarted": True}
            return healed
        injected.heal = heal
        return injected
