"""Applies ``harness.faults`` on Kubernetes: pod deletion through the API, everything else through
Chaos Mesh, and a NetworkPolicy partition fallback when Chaos Mesh is absent.

Each ``inject`` returns ``Injected(targets, heal, detail)`` like the local injector; the nemesis records
the start and stop and guarantees heal. What this platform cannot do raises ``Unsupported`` with the
reason, which the scenario reports as a skip.
"""

from __future__ import annotations

import contextlib
import itertools
import signal as _signal
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

from harness.faults import outcomes as out
from harness.faults import spec
from harness.faults.handlers import Handlers
from harness.faults.nemesis import Injected
from harness.faults.plan import PartitionPlan, plan_link, plan_partition, plan_targets
from harness.platforms.actions import OperationsSource, OperatorActions
from harness.platforms.base import PlatformError, Unsupported
from harness.platforms.interpreter import Interpreter, pause_all, start_again
from harness.platforms.kubernetes import apply as k8s
from harness.platforms.kubernetes import chaos, naming, netpol, plan
from harness.platforms.kubernetes.deployment import KubernetesDeployment
from harness.waiting import wait_until

if TYPE_CHECKING:
    from harness.platforms.local.cgroups import Hierarchy, L

_counter = itertools.count()
# the detail types _run_crs takes: each has ``experiments``
D = TypeVar("D", out.CpuDetail, out.DiskDetail, out.LinkDetail, out.MemoryDetail, out.PartitionDetail)
H = TypeVar("H", bound=Mapping[str, Any])


class KubernetesInjector(Interpreter):
    platform = "Kubernetes"

    def __init__(self, deployment: KubernetesDeployment, chaos_timeout: float = 60.0,
                 operations: OperationsSource | None = None) -> None:
        self.dep = deployment
        self.chaos_timeout = chaos_timeout
        # operator actions go through the platform's Operations contract: Unsupported (an explained
        # skip) until this platform has an implementation or a scenario binds one (use_operations)
        self.actions = OperatorActions(operations)

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

    def topology(self) -> dict[str, str]:
        return {i.name: i.component for i in self.dep.instances()}

    def _name(self, what: str) -> str:
        return f"gvh-{self.dep.run_id}-{what}-{next(_counter)}"

    def _need_chaos_mesh(self, what: str, capability: str | None = None) -> None:
        """Unsupported without Chaos Mesh, with the deployment's reason for ``capability`` when it has one
        (the physical one: why node access cannot stand in)."""
        if not self.dep.chaos.available():
            why = self.dep.capabilities().get(capability) if capability else None
            raise Unsupported(why or f"{what} needs Chaos Mesh, which is not installed in this cluster")

    def _run_crs(self, crs: list[dict[str, Any]], targets: list[str], detail: D,
                 healed: Callable[[out.ChaosRecovered], H]) -> Injected[D, H]:
        """Apply the experiments; the heal deletes them and returns ``healed(what the deletion did)``."""
        scoped = [chaos.scope(cr, self.dep.namespace, self.dep.run_id) for cr in crs]
        applied: list[dict[str, Any]] = []
        try:
            for cr in scoped:
                self.dep.chaos.inject(cr, timeout=self.chaos_timeout)
                applied.append(cr)
        except BaseException:
            for cr in applied:
                self.dep.chaos.recover(cr, timeout=self.chaos_timeout)
            raise

        def heal() -> H:
            clean = [self.dep.chaos.recover(cr, timeout=self.chaos_timeout) for cr in applied]
            return healed({"recovered": all(clean), "forced": [c["metadata"]["name"] for c, ok in zip(applied, clean,
                                                                                                     strict=True)
                                                               if not ok]})

        # every detail type _run_crs takes has ``experiments`` (D's constraints): the cast adds only that key
        return Injected(targets, heal, cast(D, {**detail, "experiments": [c["metadata"]["name"] for c in scoped]}))

    # --- pod lifecycle -------------------------------------------------------------------------------

    def _inject_kill(self, fault: spec.Kill) -> Injected[out.KillDetail, out.KillHealed]:
        if fault.signum not in (_signal.SIGKILL, _signal.SIGTERM):
            raise Unsupported(f"Kubernetes can only SIGKILL (grace 0) or SIGTERM (graceful delete), not {fault.signal}")
        targets = plan_targets(fault.target, self.topology())
        if fault.signum == _signal.SIGKILL and self.dep.node_access():
            return self._kill_held_down(targets, fault)
        for t in targets:
            self.dep.kill(t, fault.signum)
        return Injected(targets, start_again(targets, self.dep.start),
                        {"signal": fault.signal, "how": "pod deletion"})

    def _kill_held_down(self, targets: list[str], fault: spec.Kill) -> Injected[out.KillDetail, out.KillHealed]:
        """SIGKILL from the node, and the pod kept down until heal, as the local platform keeps a killed
        process down until ``start``: the kubelet restarts the container in place within a second or two,
        under the same name and IP, which would make every kill a quick restart (and hide a stack that
        fails over slowly, ``--bug slow-failover``). So the pod's network namespace is cut off first
        (every packet but loopback dropped: the restarted process can neither register in etcd nor be
        reached, like a machine that went down), then its processes are SIGKILLed; heal removes the cut
        and waits until the container was restarted and is ready."""
        from harness.platforms.kubernetes import nodeaccess

        uids = {t: self.dep.pod_uid(t) for t in targets}
        cut: list[str] = []

        def uncut() -> list[str]:
            gone = []
            for t in cut:
                try:
                    nodeaccess.nft_in_pod(uids[t], nodeaccess.heal_script())
                except Unsupported:
                    gone.append(t)  # the pod was replaced: its namespace (and the rules) went with it
            return gone

        try:
            for t in targets:
                nodeaccess.nft_in_pod(uids[t], nodeaccess.isolate_script())
                cut.append(t)
            for t in targets:
                self.dep.kill(t, fault.signum)
        except BaseException:
            uncut()
            raise

        def heal() -> out.KillHealed:
            gone = uncut()
            back = {t: self.dep.bring_back(t) for t in targets}
            return {"restarted": targets, "how_back": back, "pods_gone": gone}
        return Injected(targets, heal, {"signal": fault.signal,
                                        "how": "SIGKILL from the node, pod network cut until heal (node access)"})

    def _inject_restart(self, fault: spec.Restart) -> Injected[out.RestartDetail, out.RestartHealed]:
        targets = plan_targets(fault.target, self.topology())
        for t in targets:
            self.dep.restart(t, graceful=fault.graceful)
        codes = {t: self.dep.exit_codes.get(t) for t in targets}
        def healed() -> out.RestartHealed:
            return {"restarted": targets}
        return Injected(targets, healed,
                        {"graceful": fault.graceful, "exit_codes": codes,
                         "how": "graceful pod delete" if fault.graceful else "pod delete with grace 0"})

    def _inject_pause(self, fault: spec.Pause) -> Injected[out.PauseDetail, out.PauseHealed]:
        """Freeze the instances' containers' cgroups (SIGSTOP's effect on every process of the container);
        heal thaws them."""
        targets = plan_targets(fault.target, self.topology())
        heal = pause_all(targets, self.dep.pause, self.dep.resume)
        return Injected(targets, heal, {"how": "container cgroup freezer (node access)"})

    # --- network -------------------------------------------------------------------------------------

    def _inject_partition(self, fault: spec.Partition) -> Injected[out.PartitionDetail, out.PartitionHealed]:
        topo = self.topology()
        if self.dep.chaos.available():
            part = plan_partition(fault, topo)
            grudge = part.as_sets()
            pods = {h: self.dep.pod_name(h) for h in part.hosts}
            crs = plan.partition_crs(self._name("part"), grudge, pods, self.dep.namespace)
            detail: out.PartitionDetail = {**part.detail(), "how": "chaos-mesh"}

            def healed(recovered: out.ChaosRecovered) -> out.PartitionHealed:
                return {**recovered, "healed": sorted(grudge)}
            return self._run_crs(crs, part.targets, detail, healed)
        if self.dep.node_access():
            return self._node_partition(fault, topo)
        return self._netpol_partition(fault, topo)

    def _services(self) -> dict[str, tuple[list[str], str]]:
        """The components the stack reaches through a Service: Service -> (instances behind it, ClusterIP)."""
        out = {}
        members = {"goverse-postgres": ["postgres"],
                   "goverse-etcd": [f"etcd-{i}" for i in range(self.dep.spec.etcd_members)]}
        for svc, insts in members.items():
            obj: Any = self.dep.core.read_namespaced_service(svc, self.dep.namespace)
            ip = obj.spec.cluster_ip
            if ip and ip != "None":
                out[svc] = (insts, ip)
        return out

    def _node_partition(self, fault: spec.Partition,
                        topo: dict[str, str]) -> Injected[out.PartitionDetail, out.PartitionHealed]:
        """The local platform's nft drops, inside each pod's network namespace (from the node)."""
        from harness.platforms.kubernetes import nodeaccess
        from harness.platforms.local import firewall

        part = plan_partition(fault, topo)
        grudge = part.as_sets()
        hosts = part.hosts
        insts = {i.name: i for i in self.dep.instances()}
        ips = {h: insts[h].host for h in hosts if h in insts and insts[h].host}
        drops = firewall.plan(grudge, ips)
        for holder, svc_ips in nodeaccess.service_drops(grudge, self._services()).items():
            if holder in drops:
                drops[holder].from_ips |= svc_ips
        uids = {h: self.dep.pod_uid(h) for h in drops}
        installed: list[str] = []
        try:
            for h, d in sorted(drops.items()):
                nodeaccess.nft_in_pod(uids[h], firewall.render_nft(nodeaccess.TABLE, d))
                installed.append(h)
        except BaseException:
            for h in installed:
                nodeaccess.nft_in_pod(uids[h], nodeaccess.heal_script())
            raise

        def heal() -> out.PartitionHealed:
            gone = []
            for h in installed:
                try:
                    nodeaccess.nft_in_pod(uids[h], nodeaccess.heal_script())
                except Unsupported:
                    gone.append(h)  # the pod was replaced: its namespace (and the rules) went with it
            return {"healed": sorted(grudge), "pods_gone": gone}

        return Injected(part.targets, heal, {**part.detail(), "how": "nft in pod network namespaces (node access)"})

    def _netpol_partition(self, fault: spec.Partition,
                          topo: dict[str, str]) -> Injected[out.PartitionDetail, out.PartitionHealed]:
        keep = netpol.FALLBACK_SHAPES.get(fault.shape)
        if keep is None or fault.one_way:
            raise Unsupported(f"partition {fault.shape}{' one-way' if fault.one_way else ''} needs Chaos Mesh; "
                              "the NetworkPolicy fallback cuts one node from whole components only")
        victim = plan_partition(fault, topo).victim
        assert victim is not None  # every fallback shape is targeted: the plan resolved its victim
        pod = self.dep.pod_name(victim)
        pid = f"{self.dep.run_id}-{next(_counter)}"
        # what the policies enforce: the victim reaches only the kept components
        grudge = {victim: frozenset(h for h, c in topo.items() if c not in keep and h != victim)}
        enforced = PartitionPlan(fault.shape, False, victim, grudge)
        policies = netpol.quarantine_policies(self.dep.run_id, pid, "node", keep)
        for p in policies:
            k8s.apply(self.dep.dyn, p)
        k8s.patch_merge(self.dep.dyn, "v1", "Pod", pod, self.dep.namespace,
                        {"metadata": {"labels": {naming.QUARANTINE_LABEL: pid}}})

        def heal() -> out.PartitionHealed:
            try:
                k8s.patch_merge(self.dep.dyn, "v1", "Pod", pod, self.dep.namespace,
                                {"metadata": {"labels": {naming.QUARANTINE_LABEL: None}}})
            except Exception as exc:  # noqa: BLE001 - a pod restarted meanwhile has no label to remove
                if getattr(exc, "status", None) != 404:
                    raise
            for p in policies:
                k8s.delete(self.dep.dyn, "networking.k8s.io/v1", "NetworkPolicy", p["metadata"]["name"],
                           self.dep.namespace)
            return {"policies_deleted": len(policies), "healed": [victim]}
        return Injected([victim], heal, {**enforced.detail(), "how": "networkpolicy", "partition": pid})

    def _link_pods(self, link: tuple[str, str]) -> tuple[list[str], list[str], list[str]]:
        pairs = plan_link(link, self.topology())
        srcs = sorted({s for s, _ in pairs})
        dsts = sorted({d for _, d in pairs})
        return [self.dep.pod_name(s) for s in srcs], [self.dep.pod_name(d) for d in dsts], srcs + dsts

    def _inject_latency(self, fault: spec.Latency) -> Injected[out.LinkDetail, out.LinkHealed]:
        figures: out.LinkFigures = {"ms": fault.ms, "jitter_ms": fault.jitter_ms, "direction": fault.direction}
        if self._use_pg_proxy():
            return self._proxy_toxic(fault.link, {"kind": "latency", **figures}, figures)
        self._need_chaos_mesh("latency", "latency")
        if fault.direction != "upstream":
            raise Unsupported(f"latency direction {fault.direction!r}: the Chaos Mesh delay here delays the "
                              "source's packets to the destination (upstream) only")
        src, dst, targets = self._link_pods(fault.link)
        cr = plan.link_delay_cr(self._name("delay"), src, dst, self.dep.namespace, fault.ms, fault.jitter_ms)
        return self._run_crs([cr], targets, {"ms": fault.ms, "jitter_ms": fault.jitter_ms,
                                             "how": "chaos-mesh delay"}, _link_healed)

    def _inject_timeout(self, fault: spec.Timeout) -> Injected[out.LinkDetail, out.LinkHealed]:
        if self._use_pg_proxy():
            return self._proxy_toxic(fault.link, {"kind": "timeout"}, {"toxic": "timeout"})
        self._need_chaos_mesh("a link timeout", "timeout")
        src, dst, targets = self._link_pods(fault.link)
        return self._run_crs([plan.link_blackhole_cr(self._name("blackhole"), src, dst, self.dep.namespace)],
                             targets, {"how": "one-way partition"}, _link_healed)

    def _inject_reset(self, fault: spec.Reset) -> Injected[out.LinkDetail, out.LinkHealed]:
        if not self.dep.pg_proxied():
            raise Unsupported(self.dep.capabilities()["reset"] or "no TCP-reset fault here")
        return self._proxy_toxic(fault.link, {"kind": "reset"}, {"toxic": "reset_peer"})

    def _pod_uid_or_none(self, instance: str) -> str | None:
        try:
            return self.dep.pod_uid(instance)
        except Exception:  # noqa: BLE001 - no pod (404) or no slot: not the pod the toxic was set in
            return None

    def _use_pg_proxy(self) -> bool:
        """Link faults go to the node pods' PostgreSQL fault proxy (``pgproxy``) where it is wired and
        Chaos Mesh is absent; a cluster with Chaos Mesh keeps its NetworkChaos path."""
        return not self.dep.chaos.available() and self.dep.pg_proxied()

    def _proxy_toxic(self, link: spec.Link, toxic: dict[str, Any],
                     figures: out.LinkFigures) -> Injected[out.LinkDetail, out.LinkHealed]:
        """The local platform's fault proxy toxic, set in each source node's pg-proxy sidecar (wired at
        deploy time: every session of the node, pooled ones included, goes through it). Only
        node -> postgres is wired; a sidecar that has accepted no connection would make the fault a
        silent no-op (the node ignored the proxy's address), so that is ``Unsupported`` too."""
        pairs = plan_link(link, self.topology())
        topo = self.topology()
        for src, dst in pairs:
            if topo.get(src) != "node" or dst != "postgres":
                raise Unsupported(f"{src} -> {dst} is not wired through a fault proxy on Kubernetes: only "
                                  "node -> postgres is (the pg-proxy sidecar); a delay elsewhere needs netem "
                                  "(no qdiscs in this kernel) or Chaos Mesh")
        sources = sorted({s for s, _ in pairs})
        ctls = {s: self.dep.pg_proxy(s) for s in sources}
        before: dict[str, int] = {}
        for s, ctl in ctls.items():
            stats = ctl.state()["stats"]
            if not stats.get("accepted"):
                raise Unsupported(f"{s} does not connect to PostgreSQL through its pg-proxy sidecar (it ignored "
                                  "the proxy's address), so a fault on that link would do nothing")
            before[s] = int(stats["bytes_up"]) + int(stats["bytes_down"])
        uids = {s: self.dep.pod_uid(s) for s in sources}  # a replaced pod's proxy took the toxic with it
        done: list[str] = []
        try:
            for s, ctl in ctls.items():
                ctl.set_toxic(toxic)
                done.append(s)
        except BaseException:
            for s in done:
                with contextlib.suppress(Exception):
                    ctls[s].clear()
            raise
        names = [f"{s}->postgres" for s in sources]

        def heal() -> out.LinkHealed:
            cleared, gone, moved = [], [], {}
            for s, ctl in ctls.items():
                try:
                    stats = ctl.clear()["stats"]
                except PlatformError:
                    if self._pod_uid_or_none(s) == uids[s]:
                        raise  # the same pod, its proxy unreachable: the toxic may still hold
                    gone.append(s)  # the pod was replaced: its proxy (and the toxic) went with it
                    continue
                cleared.append(f"{s}->postgres")
                moved[f"{s}->postgres"] = int(stats["bytes_up"]) + int(stats["bytes_down"]) - before[s]
            healed: out.LinkHealed = {"cleared": cleared, "bytes_during": moved}
            if gone:
                healed["pods_gone"] = gone
            return healed

        return Injected(sources, heal, {**figures, "links": names, "via": "faultproxy",
                                        "how": "TCP fault proxy toxic (pg-proxy sidecar in the node pod)"})

    # --- resources -----------------------------------------------------------------------------------

    def _inject_cpu_stress(self, fault: spec.CpuStress) -> Injected[out.CpuDetail, out.CpuHealed]:
        if not self.dep.chaos.available() and self.dep.node_access():
            return self._node_cpu_limit(fault)
        self._need_chaos_mesh("CPU stress")
        targets = plan_targets(fault.target, self.topology())
        crs = [plan.cpu_stress_cr(self._name("cpu"), self.dep.pod_name(t), self.dep.namespace, fault.quota)
               for t in targets]
        return self._run_crs(crs, targets, {"how": "stress-ng contention (no live quota change on Kubernetes)"},
                             _cpu_healed)

    def _node_limits(self, kind: str, targets: list[str], make: Callable[[str, int, Hierarchy], L],
                     pids: dict[str, int]) -> dict[str, L]:
        """The local platform's cgroup limits on pods' containers from the node: each nested in its
        container's own cgroup (``nodeaccess.container_hierarchy``), registered in ``dep.limits`` (the
        teardown heals them) and healed again if one cannot be applied (``cgroups.apply_limits``)."""
        from harness.platforms.kubernetes import nodeaccess
        from harness.platforms.local.cgroups import apply_limits

        return apply_limits(kind, targets, lambda key, t: make(key, pids[t], nodeaccess.container_hierarchy(
            kind, pids[t])), self.dep.limits)

    def _node_memory_limit(self, fault: spec.MemoryPressure) -> Injected[out.MemoryDetail, out.MemoryHealed]:
        """The local platform's squeeze, in the pod: a ``MemoryLimit`` nested in the container's memory
        cgroup (v1), the container's process made the preferred OOM victim, and the ``MemoryStressor``
        filling the group, so the kernel OOM-kills the container; the kubelet restarts it (the
        supervisor the local platform has to provide itself) in a new container group, outside the
        limit. Heal stops the stressor, removes the group, and reports the OOM kills and the restart
        as the kubelet recorded it, then waits until the pod is ready again.

        How the kill is seen. The stressor fills the group to its limit, so the kill comes within a
        second of the injection (the target need not allocate anything: the stressor's own next page
        finds no room and the OOM killer takes the process with the highest badness, the target at
        ``oom_score_adj`` 1000). The container's runtime then kills what is left in its cgroups (the
        stressor) and removes them, our group with its ``oom_kill`` counter included — so the kill is
        read from the kernel log (the target's pid), and the container's end from the kubelet's record
        *of that container id*. The kubelet's restart may wait out its crash back-off (a node killed
        earlier in the module): the heal waits for the record, then for the restart in place, and
        replaces the pod if the back-off outlasts the failover budget (``bring_back``), as a SIGKILL's
        heal does. Found in CI: a heal that sampled the restart count at once said "did not bite"
        while the node had been OOM-killed and was in back-off."""
        from harness.platforms.kubernetes import nodeaccess
        from harness.platforms.local.cgroups import MemoryLimit, heal_limits
        from harness.platforms.local.memfault import MemoryStressor, kernel_oom_kills, set_oom_score_adj

        targets = plan_targets(fault.target, self.topology())
        prefix = f"gvh-{self.dep.run_id}"
        limits: dict[str, MemoryLimit] = {}
        stressors: dict[str, MemoryStressor] = {}
        before: dict[str, tuple[str, int, int, str]] = {}  # instance -> (pod uid, restarts, pid, old score)
        containers: dict[str, str] = {}  # instance -> the container id that was squeezed

        def heal_all() -> dict[str, float]:
            filled = {}
            for t, st in stressors.items():
                filled[t] = st.heal()
                self.dep.limits.pop(f"stressor-{t}", None)
            for uid, _n, pid, old in before.values():
                # only a process still in its pod gets its score back (an OOM-killed one's pid may be reused)
                if old and pid in nodeaccess.pod_pids(uid):
                    with contextlib.suppress(OSError), open(f"/proc/{pid}/oom_score_adj", "w", encoding="ascii") as f:
                        f.write(old)
            heal_limits("memory", limits, self.dep.limits)
            return filled

        for t in targets:  # what the heal compares with: the pod, its restart count, its process, its container
            uid = self.dep.pod_uid(t)
            containers[t] = self.dep.container_id(t) or ""
            before[t] = (uid, self.dep.restart_count(t), nodeaccess.container_pid(uid, containers[t]), "")
        limits.update(self._node_limits("memory", targets, lambda key, pid, h: MemoryLimit(
            prefix, key, pid, limit_mb=fault.limit_mb, hierarchy=h), {t: b[2] for t, b in before.items()}))
        try:
            for t, lim in limits.items():
                uid, n, pid, _ = before[t]
                before[t] = (uid, n, pid, set_oom_score_adj(pid, "1000")[1])
                st = MemoryStressor(prefix, t)
                self.dep.limits[f"stressor-{t}"] = st
                stressors[t] = st.start(lim.group, fault.limit_mb)
        except BaseException:
            heal_all()
            raise

        def heal() -> out.MemoryHealed:
            kills: dict[str, int | str] = {}
            for t, lim in limits.items():
                try:
                    kills[t] = lim.oom_kills()
                except OSError:
                    kills[t] = "group removed with its container"
            gone = {t for t, (uid, _n, pid, _old) in before.items() if pid not in nodeaccess.pod_pids(uid)}
            filled = heal_all()
            by_kernel = kernel_oom_kills({before[t][2] for t in gone})
            restarts: list[out.MemoryRestart] = []
            for t in sorted(gone):
                uid, n, pid, _old = before[t]
                # the kubelet notices a dead container at its next relist (~1 s; longer on a loaded machine)
                term = wait_until(partial(self.dep.container_ended, t, containers[t]), 60.0,
                                  f"the kubelet to record the end of {t}'s container", interval=0.2) or {}
                code = term.get("exit_code")
                self.dep.mark_killed(t, uid, n)
                back = self.dep.bring_back(t)
                # a container killed by signal N exits 128+N; the local supervisor records -N
                restarts.append({"target": t, "exit_code": -(code - 128) if code and code > 128 else code,
                                 "reason": term.get("reason"),
                                 "oom_killed_by_kernel": None if by_kernel is None else pid in by_kernel,
                                 "by": f"kubelet: {back}"})
            return {"oom_kills": kills, "oom_killed_pids": by_kernel, "restarts": restarts, "filled_mb": filled}
        return Injected(targets, heal, {"limit_mb": fault.limit_mb,
                                        "how": "limit + tmpfs stressor nested in the container's memory cgroup, "
                                               "target oom_score_adj 1000 (node access); the kubelet restarts it"})

    def _node_cpu_limit(self, fault: spec.CpuStress) -> Injected[out.CpuDetail, out.CpuHealed]:
        """A CFS quota on the pod's container from the node: the local platform's ``CpuLimit`` with the
        container's own cgroup as its base (``nodeaccess.container_hierarchy``), so the group nests inside
        the container's and the processes move back at heal (also at teardown, ``dep.limits``)."""
        from harness.platforms.kubernetes import nodeaccess
        from harness.platforms.local.cgroups import CpuLimit, heal_limits, throttled_counts

        targets = plan_targets(fault.target, self.topology())
        pids = {t: nodeaccess.container_pid(self.dep.pod_uid(t), self.dep.container_id(t)) for t in targets}
        limits = self._node_limits("cpu", targets, lambda key, pid, h: CpuLimit(
            f"gvh-{self.dep.run_id}", key, pid, quota=fault.quota, hierarchy=h), pids)

        def heal() -> out.CpuHealed:
            throttled = throttled_counts(limits)
            heal_limits("cpu", limits, self.dep.limits)
            return {"throttled": throttled}
        return Injected(targets, heal, {"quota": fault.quota, "how": "CFS quota in the container's cgroup "
                                                                     "(node access)"})

    def _inject_memory_pressure(self, fault: spec.MemoryPressure) -> Injected[out.MemoryDetail, out.MemoryHealed]:
        if not self.dep.chaos.available() and self.dep.node_access():
            return self._node_memory_limit(fault)
        self._need_chaos_mesh("memory pressure")
        targets = plan_targets(fault.target, self.topology())
        crs = [plan.memory_pressure_cr(self._name("mem"), self.dep.pod_name(t), self.dep.namespace,
                                       fault.limit_mb, container_limit_mb=512) for t in targets]
        return self._run_crs(crs, targets, {"how": "allocate past the container's memory limit"}, _memory_healed)

    def _inject_disk(self, fault: spec.DiskFault) -> Injected[out.DiskDetail, out.DiskHealed]:
        if not self.dep.chaos.available() and self.dep.pg_volume is not None:
            return self._node_disk(fault)
        if not self.dep.chaos.available() and self.dep.disk_unwired.get(f"disk-{fault.disk}"):
            raise Unsupported(f"disk {fault.disk} needs Chaos Mesh, which is not installed in this cluster; "
                              f"node access: {self.dep.disk_unwired[f'disk-{fault.disk}']}")
        self._need_chaos_mesh("disk faults")
        targets = plan_targets(fault.target, self.topology())
        crs = []
        for t in targets:
            component = naming.pod_for_instance(t)[0]
            if component not in plan.DATA_VOLUMES:
                raise Unsupported(f"{t} has no data volume for an I/O fault")
            volume, container = plan.DATA_VOLUMES[component]
            crs.append(plan.disk_fault_cr(self._name("io"), self.dep.pod_name(t), self.dep.namespace, volume,
                                          fault.disk, fault.latency_ms, container))
        return self._run_crs(crs, targets, {"disk": fault.disk, "how": "chaos-mesh IOChaos"}, _disk_healed)

    def _node_disk(self, fault: spec.DiskFault) -> Injected[out.DiskDetail, out.DiskHealed]:
        """The local platform's disk fault on the volume the harness made for PostgreSQL (``pgvolume``):
        the same small filesystem and FUSE layer, so the same act and the same evidence."""
        from harness.platforms.local.diskinject import inject_pg_disk

        targets = plan_targets(fault.target, self.topology())
        if targets != ["postgres"]:
            raise Unsupported(f"disk faults are wired under PostgreSQL's volume only, not {targets}")
        from harness.platforms.kubernetes import pgvolume

        ours, why = pgvolume.bound_here(self.dep.core, self.dep.namespace, self.dep.run_id)
        if not ours:  # the fault would touch nothing PostgreSQL uses: never a silent no-op
            raise Unsupported(f"disk {fault.disk}: {why}")
        vol = self.dep.pg_volume
        return inject_pg_disk(fault, vol.disk, vol.layer, self.dep.disk_unwired)


# What a heal that only deleted experiments returns, per kind (the same keys; one function per outcome type).
def _link_healed(r: out.ChaosRecovered) -> out.LinkHealed:
    return {**r}


def _cpu_healed(r: out.ChaosRecovered) -> out.CpuHealed:
    return {**r}


def _memory_healed(r: out.ChaosRecovered) -> out.MemoryHealed:
    return {**r}


def _disk_healed(r: out.ChaosRecovered) -> out.DiskHealed:
    return {**r}
