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
from typing import TYPE_CHECKING, Any, TypeVar, cast

from harness.faults.handlers import Handler, Handlers, handler_table
from harness.faults.nemesis import Injected
from harness.faults.outcomes import (
    ChaosRecovered,
    CpuDetail,
    CpuHealed,
    DiskDetail,
    DiskHealed,
    KillDetail,
    KillHealed,
    LinkDetail,
    LinkHealed,
    MemoryDetail,
    MemoryHealed,
    MemoryRestart,
    PartitionDetail,
    PartitionHealed,
    PauseDetail,
    PauseHealed,
    RestartDetail,
    RestartHealed,
)
from harness.faults.plan import PartitionPlan, plan_link, plan_partition, plan_targets
from harness.faults.spec import (
    CpuStress,
    DiskFault,
    Fault,
    Kill,
    Latency,
    MemoryPressure,
    Partition,
    Pause,
    Restart,
    Timeout,
)
from harness.platforms.actions import OperationsSource, OperatorActions
from harness.platforms.base import PlatformError, Unsupported
from harness.platforms.kubernetes import apply as k8s
from harness.platforms.kubernetes import chaos, naming, netpol, plan
from harness.platforms.kubernetes.deployment import KubernetesDeployment

if TYPE_CHECKING:
    from harness.platforms.operations import Operations

_counter = itertools.count()
D = TypeVar("D", CpuDetail, DiskDetail, LinkDetail, MemoryDetail, PartitionDetail)  # each has ``experiments``
H = TypeVar("H", bound=Mapping[str, Any])


class KubernetesInjector:
    def __init__(self, deployment: KubernetesDeployment, chaos_timeout: float = 60.0,
                 operations: OperationsSource | None = None) -> None:
        self.dep = deployment
        self.chaos_timeout = chaos_timeout
        # operator actions go through the platform's Operations contract: Unsupported (an explained
        # skip) until this platform has an implementation or a scenario binds one (use_operations)
        self.actions = OperatorActions(operations)

    def use_operations(self, ops: Operations | OperationsSource) -> None:
        """Carry out operator actions with ``ops`` (or a factory of them): the scenario's."""
        if callable(ops):
            self.actions.use_source(ops)
        else:
            self.actions.use(ops)

    def handlers(self) -> dict[type[Fault], Handler]:
        """One handler per fault type, spelled out (a renamed method cannot silently drop a kind); the
        typed table (``faults/handlers.py``) holds each to its kind's outcome records, as locally."""
        return {
            **handler_table(Handlers(
                kill=self._inject_kill,
                restart=self._inject_restart,
                pause=self._inject_pause,
                partition=self._inject_partition,
                latency=self._inject_latency,
                timeout=self._inject_timeout,
                cpu_stress=self._inject_cpu_stress,
                memory_pressure=self._inject_memory_pressure,
                disk=self._inject_disk,
            )),
            **self.actions.handlers(),
        }

    def topology(self) -> dict[str, str]:
        return {i.name: i.component for i in self.dep.instances()}

    def _name(self, what: str) -> str:
        return f"gvh-{self.dep.run_id}-{what}-{next(_counter)}"

    def inject(self, fault: Fault) -> Injected[Any, Any]:
        handler = self.handlers().get(type(fault))
        if handler is None:
            raise Unsupported(f"the Kubernetes platform cannot apply {fault.kind!r} faults")
        return handler(fault)

    def _need_chaos_mesh(self, what: str) -> None:
        if not self.dep.chaos.available():
            raise Unsupported(f"{what} needs Chaos Mesh, which is not installed in this cluster")

    def _run_crs(self, crs: list[dict[str, Any]], targets: list[str], detail: D,
                 healed: Callable[[ChaosRecovered], H]) -> Injected[D, H]:
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

    def _inject_kill(self, fault: Kill) -> Injected[KillDetail, KillHealed]:
        if fault.signum not in (_signal.SIGKILL, _signal.SIGTERM):
            raise Unsupported(f"Kubernetes can only SIGKILL (grace 0) or SIGTERM (graceful delete), not {fault.signal}")
        targets = plan_targets(fault.target, self.topology())
        if fault.signum == _signal.SIGKILL and self.dep.node_access():
            return self._kill_held_down(targets, fault)
        for t in targets:
            self.dep.kill(t, fault.signum)

        def heal() -> KillHealed:
            for t in targets:
                self.dep.start(t)
            return {"restarted": targets}
        return Injected(targets, heal, {"signal": fault.signal, "how": "pod deletion"})

    def _kill_held_down(self, targets: list[str], fault: Kill) -> Injected[KillDetail, KillHealed]:
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

        def heal() -> KillHealed:
            gone = uncut()
            back = {t: self.dep.bring_back(t) for t in targets}
            return {"restarted": targets, "how_back": back, "pods_gone": gone}
        return Injected(targets, heal, {"signal": fault.signal,
                                        "how": "SIGKILL from the node, pod network cut until heal (node access)"})

    def _inject_restart(self, fault: Restart) -> Injected[RestartDetail, RestartHealed]:
        targets = plan_targets(fault.target, self.topology())
        for t in targets:
            self.dep.restart(t, graceful=fault.graceful)
        codes = {t: self.dep.exit_codes.get(t) for t in targets}
        def healed() -> RestartHealed:
            return {"restarted": targets}
        return Injected(targets, healed,
                        {"graceful": fault.graceful, "exit_codes": codes,
                         "how": "graceful pod delete" if fault.graceful else "pod delete with grace 0"})

    def _inject_pause(self, fault: Pause) -> Injected[PauseDetail, PauseHealed]:
        """Freeze the pods' cgroups (SIGSTOP's effect on every process of the pod); heal thaws them."""
        targets = plan_targets(fault.target, self.topology())
        paused: list[str] = []
        try:
            for t in targets:
                self.dep.pause(t)
                paused.append(t)
        except BaseException:
            for t in paused:
                self.dep.resume(t)
            raise

        def heal() -> PauseHealed:
            for t in paused:
                self.dep.resume(t)
            return {"resumed": paused}
        return Injected(targets, heal, {"how": "pod cgroup freezer (node access)"})

    # --- network -------------------------------------------------------------------------------------

    def _inject_partition(self, fault: Partition) -> Injected[PartitionDetail, PartitionHealed]:
        topo = self.topology()
        if self.dep.chaos.available():
            part = plan_partition(fault, topo)
            grudge = part.as_sets()
            pods = {h: self.dep.pod_name(h) for h in part.hosts}
            crs = plan.partition_crs(self._name("part"), grudge, pods, self.dep.namespace)
            detail: PartitionDetail = {**part.detail(), "how": "chaos-mesh"}

            def healed(recovered: ChaosRecovered) -> PartitionHealed:
                return {**recovered, "healed": sorted(grudge)}
            return self._run_crs(crs, part.targets, detail, healed)
        if self.dep.node_access():
            return self._node_partition(fault, topo)
        return self._netpol_partition(fault, topo)

    def _service_ips(self) -> dict[str, str]:
        """Single-instance components reached through a Service: replies come back from its ClusterIP."""
        out = {}
        for inst, svc in (("postgres", "goverse-postgres"), ("etcd-0", "goverse-etcd")):
            if inst == "etcd-0" and self.dep.spec.etcd_members != 1:
                continue
            obj: Any = self.dep.core.read_namespaced_service(svc, self.dep.namespace)
            ip = obj.spec.cluster_ip
            if ip and ip != "None":
                out[inst] = ip
        return out

    def _node_partition(self, fault: Partition, topo: dict[str, str]) -> Injected[PartitionDetail, PartitionHealed]:
        """The local platform's nft drops, inside each pod's network namespace (from the node)."""
        from harness.platforms.kubernetes import nodeaccess
        from harness.platforms.local import firewall

        part = plan_partition(fault, topo)
        grudge = part.as_sets()
        hosts = part.hosts
        insts = {i.name: i for i in self.dep.instances()}
        ips = {h: insts[h].host for h in hosts if h in insts and insts[h].host}
        drops = firewall.plan(grudge, ips)
        svc = self._service_ips()
        for holder, held in grudge.items():
            for peer in held:
                if peer in svc and holder in drops:
                    drops[holder].from_ips.add(svc[peer])
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

        def heal() -> PartitionHealed:
            gone = []
            for h in installed:
                try:
                    nodeaccess.nft_in_pod(uids[h], nodeaccess.heal_script())
                except Unsupported:
                    gone.append(h)  # the pod was replaced: its namespace (and the rules) went with it
            return {"healed": sorted(grudge), "pods_gone": gone}

        return Injected(part.targets, heal, {**part.detail(), "how": "nft in pod network namespaces (node access)"})

    def _netpol_partition(self, fault: Partition, topo: dict[str, str]) -> Injected[PartitionDetail, PartitionHealed]:
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

        def heal() -> PartitionHealed:
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

    def _inject_latency(self, fault: Latency) -> Injected[LinkDetail, LinkHealed]:
        self._need_chaos_mesh("latency")
        if fault.direction != "upstream":
            raise Unsupported(f"latency direction {fault.direction!r}: the Chaos Mesh delay here delays the "
                              "source's packets to the destination (upstream) only")
        src, dst, targets = self._link_pods(fault.link)
        cr = plan.link_delay_cr(self._name("delay"), src, dst, self.dep.namespace, fault.ms, fault.jitter_ms)
        return self._run_crs([cr], targets, {"ms": fault.ms, "jitter_ms": fault.jitter_ms,
                                             "how": "chaos-mesh delay"}, _link_healed)

    def _inject_timeout(self, fault: Timeout) -> Injected[LinkDetail, LinkHealed]:
        self._need_chaos_mesh("a link timeout")
        src, dst, targets = self._link_pods(fault.link)
        return self._run_crs([plan.link_blackhole_cr(self._name("blackhole"), src, dst, self.dep.namespace)],
                             targets, {"how": "one-way partition"}, _link_healed)

    # --- resources -----------------------------------------------------------------------------------

    def _inject_cpu_stress(self, fault: CpuStress) -> Injected[CpuDetail, CpuHealed]:
        if not self.dep.chaos.available() and self.dep.node_access():
            return self._node_cpu_limit(fault)
        self._need_chaos_mesh("CPU stress")
        targets = plan_targets(fault.target, self.topology())
        crs = [plan.cpu_stress_cr(self._name("cpu"), self.dep.pod_name(t), self.dep.namespace, fault.quota)
               for t in targets]
        return self._run_crs(crs, targets, {"how": "stress-ng contention (no live quota change on Kubernetes)"},
                             _cpu_healed)

    def _node_memory_limit(self, fault: MemoryPressure) -> Injected[MemoryDetail, MemoryHealed]:
        """The local platform's squeeze, in the pod: a ``MemoryLimit`` nested in the container's memory
        cgroup (v1), the container's process made the preferred OOM victim, and the ``MemoryStressor``
        filling the group, so the kernel OOM-kills the container; the kubelet restarts it (the
        supervisor the local platform has to provide itself) in a new container group, outside the
        limit. Heal stops the stressor, removes the group, and reports the OOM kills and the restart
        as the kubelet recorded it, then waits until the pod is ready again."""
        from harness.platforms.kubernetes import nodeaccess
        from harness.platforms.local.cgroups import MemoryLimit
        from harness.platforms.local.memfault import MemoryStressor, set_oom_score_adj

        targets = plan_targets(fault.target, self.topology())
        prefix = f"gvh-{self.dep.run_id}"
        limits: dict[str, MemoryLimit] = {}
        stressors: dict[str, MemoryStressor] = {}
        before: dict[str, tuple[str, int, int, str]] = {}  # instance -> (pod uid, restarts, pid, old score)

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
            errors = []
            for t, lim in limits.items():
                try:
                    lim.heal()
                except Exception as exc:  # noqa: BLE001 - heal the others, then report
                    errors.append(f"{t}: {exc!r}")
                self.dep.limits.pop(f"memory-{t}", None)
            if errors:
                raise PlatformError(f"healing memory limits failed: {'; '.join(errors)}")
            return filled

        try:
            for t in targets:
                uid = self.dep.pod_uid(t)
                pid = nodeaccess.container_pid(uid)
                before[t] = (uid, self.dep.restart_count(t), pid, "")
                lim = MemoryLimit(prefix, f"memory-{t}", pid, limit_mb=fault.limit_mb,
                                  hierarchy=nodeaccess.container_hierarchy("memory", pid))
                self.dep.limits[f"memory-{t}"] = lim
                limits[t] = lim.apply()
                before[t] = (uid, before[t][1], pid, set_oom_score_adj(pid, "1000")[1])
                st = MemoryStressor(prefix, t)
                self.dep.limits[f"stressor-{t}"] = st
                stressors[t] = st.start(lim.group, fault.limit_mb)
        except BaseException:
            heal_all()
            raise

        def heal() -> MemoryHealed:
            kills = {}
            for t, lim in limits.items():
                with contextlib.suppress(OSError):
                    kills[t] = lim.oom_kills()
            filled = heal_all()
            restarts: list[MemoryRestart] = []
            for t, (uid, n, _pid, _old) in before.items():
                last = self.dep.last_termination(t)
                if self.dep.restart_count(t) > n and last is not None:
                    code = last.get("exit_code")
                    # a container killed by signal N exits 128+N; the local supervisor records -N
                    restarts.append({"target": t, "exit_code": -(code - 128) if code and code > 128 else code,
                                     "reason": last.get("reason"), "by": "kubelet"})
                    self.dep.wait_restarted(t, uid, n)
            return {"oom_kills": kills, "restarts": restarts, "filled_mb": filled}
        return Injected(targets, heal, {"limit_mb": fault.limit_mb,
                                        "how": "limit + tmpfs stressor nested in the container's memory cgroup, "
                                               "target oom_score_adj 1000 (node access); the kubelet restarts it"})

    def _node_cpu_limit(self, fault: CpuStress) -> Injected[CpuDetail, CpuHealed]:
        """A CFS quota on the pod's container from the node: the local platform's ``CpuLimit`` with the
        container's own cgroup as its base (``nodeaccess.container_hierarchy``), so the group nests inside
        the container's and the processes move back at heal (also at teardown, ``dep.limits``)."""
        from harness.platforms.kubernetes import nodeaccess
        from harness.platforms.local.cgroups import CpuLimit

        targets = plan_targets(fault.target, self.topology())
        limits: dict[str, CpuLimit] = {}

        def heal_all() -> None:
            errors = []
            for t, lim in limits.items():
                try:
                    lim.heal()
                except Exception as exc:  # noqa: BLE001 - heal the others, then report
                    errors.append(f"{t}: {exc!r}")
                self.dep.limits.pop(f"cpu-{t}", None)
            if errors:
                raise PlatformError(f"healing CPU limits failed: {'; '.join(errors)}")

        try:
            for t in targets:
                pid = nodeaccess.container_pid(self.dep.pod_uid(t))
                lim = CpuLimit(f"gvh-{self.dep.run_id}", f"cpu-{t}", pid, quota=fault.quota,
                               hierarchy=nodeaccess.container_hierarchy("cpu", pid))
                self.dep.limits[f"cpu-{t}"] = lim
                limits[t] = lim.apply()
        except BaseException:
            heal_all()
            raise

        def heal() -> CpuHealed:
            throttled = {}
            for t, lim in limits.items():
                with contextlib.suppress(OSError):
                    throttled[t] = dict(zip(("periods", "throttled"), lim.throttled(), strict=True))
            heal_all()
            return {"throttled": throttled}
        return Injected(targets, heal, {"quota": fault.quota, "how": "CFS quota in the container's cgroup "
                                                                     "(node access)"})

    def _inject_memory_pressure(self, fault: MemoryPressure) -> Injected[MemoryDetail, MemoryHealed]:
        if not self.dep.chaos.available() and self.dep.node_access():
            return self._node_memory_limit(fault)
        self._need_chaos_mesh("memory pressure")
        targets = plan_targets(fault.target, self.topology())
        crs = [plan.memory_pressure_cr(self._name("mem"), self.dep.pod_name(t), self.dep.namespace,
                                       fault.limit_mb, container_limit_mb=512) for t in targets]
        return self._run_crs(crs, targets, {"how": "allocate past the container's memory limit"}, _memory_healed)

    def _inject_disk(self, fault: DiskFault) -> Injected[DiskDetail, DiskHealed]:
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


# What a heal that only deleted experiments returns, per kind (the same keys; one function per outcome type).
def _link_healed(r: ChaosRecovered) -> LinkHealed:
    return {**r}


def _cpu_healed(r: ChaosRecovered) -> CpuHealed:
    return {**r}


def _memory_healed(r: ChaosRecovered) -> MemoryHealed:
    return {**r}


def _disk_healed(r: ChaosRecovered) -> DiskHealed:
    return {**r}
