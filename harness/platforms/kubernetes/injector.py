"""Applies ``harness.faults`` on Kubernetes: pod deletion through the API, everything else through
Chaos Mesh, and a NetworkPolicy partition fallback when Chaos Mesh is absent.

Each ``inject`` returns ``Injected(targets, heal, detail)`` like the local injector; the nemesis records
the start and stop and guarantees heal. What this platform cannot do raises ``Unsupported`` with the
reason, which the scenario reports as a skip.
"""

from __future__ import annotations

import itertools
import signal as _signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from harness.faults.nemesis import Injected
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
from harness.platforms.base import Unsupported
from harness.platforms.kubernetes import apply as k8s
from harness.platforms.kubernetes import chaos, naming, netpol, plan
from harness.platforms.kubernetes.deployment import KubernetesDeployment

if TYPE_CHECKING:
    from harness.platforms.operations import Operations

_counter = itertools.count()


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

    def handlers(self) -> dict[type[Fault], Callable[[Any], Injected]]:
        """One handler per fault type, spelled out (a renamed method cannot silently drop a kind)."""
        return {
            Kill: self._inject_kill,
            Restart: self._inject_restart,
            Pause: self._inject_pause,
            Partition: self._inject_partition,
            Latency: self._inject_latency,
            Timeout: self._inject_timeout,
            CpuStress: self._inject_cpu_stress,
            MemoryPressure: self._inject_memory_pressure,
            DiskFault: self._inject_disk,
            **self.actions.handlers(),
        }

    def topology(self) -> dict[str, str]:
        return {i.name: i.component for i in self.dep.instances()}

    def _name(self, what: str) -> str:
        return f"gvh-{self.dep.run_id}-{what}-{next(_counter)}"

    def inject(self, fault: Fault) -> Injected:
        handler = self.handlers().get(type(fault))
        if handler is None:
            raise Unsupported(f"the Kubernetes platform cannot apply {fault.kind!r} faults")
        return handler(fault)

    def _need_chaos_mesh(self, what: str) -> None:
        if not self.dep.chaos.available():
            raise Unsupported(f"{what} needs Chaos Mesh, which is not installed in this cluster")

    def _run_crs(self, crs: list[dict[str, Any]], targets: list[str], detail: dict[str, Any]) -> Injected:
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

        def heal() -> dict[str, Any]:
            clean = [self.dep.chaos.recover(cr, timeout=self.chaos_timeout) for cr in applied]
            return {"recovered": all(clean), "forced": [c["metadata"]["name"] for c, ok in zip(applied, clean,
                                                                                             strict=True) if not ok]}

        return Injected(targets, heal, {**detail, "experiments": [c["metadata"]["name"] for c in scoped]})

    # --- pod lifecycle -------------------------------------------------------------------------------

    def _inject_kill(self, fault: Kill) -> Injected:
        if fault.signum not in (_signal.SIGKILL, _signal.SIGTERM):
            raise Unsupported(f"Kubernetes can only SIGKILL (grace 0) or SIGTERM (graceful delete), not {fault.signal}")
        targets = plan_targets(fault.target, self.topology())
        for t in targets:
            self.dep.kill(t, fault.signum)

        def heal() -> dict[str, Any]:
            for t in targets:
                self.dep.start(t)
            return {"restarted": targets}
        how = "SIGKILL from the node" if fault.signum == _signal.SIGKILL and self.dep.node_access() else "pod deletion"
        return Injected(targets, heal, {"signal": fault.signal, "how": how})

    def _inject_restart(self, fault: Restart) -> Injected:
        targets = plan_targets(fault.target, self.topology())
        for t in targets:
            self.dep.restart(t, graceful=fault.graceful)
        codes = {t: self.dep.exit_codes.get(t) for t in targets}
        return Injected(targets, lambda: {"restarted": targets},
                        {"graceful": fault.graceful, "exit_codes": codes,
                         "how": "graceful pod delete" if fault.graceful else "pod delete with grace 0"})

    def _inject_pause(self, fault: Pause) -> Injected:
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

        def heal() -> dict[str, Any]:
            for t in paused:
                self.dep.resume(t)
            return {"resumed": paused}
        return Injected(targets, heal, {"how": "pod cgroup freezer (node access)"})

    # --- network -------------------------------------------------------------------------------------

    def _inject_partition(self, fault: Partition) -> Injected:
        topo = self.topology()
        if self.dep.chaos.available():
            part = plan_partition(fault, topo)
            grudge = part.as_sets()
            pods = {h: self.dep.pod_name(h) for h in part.hosts}
            crs = plan.partition_crs(self._name("part"), grudge, pods, self.dep.namespace)
            injected = self._run_crs(crs, part.targets, {**part.detail(), "how": "chaos-mesh"})
            recover = injected.heal

            def heal() -> dict[str, Any]:
                return {**(recover() or {}), "healed": sorted(grudge)}
            injected.heal = heal
            return injected
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

    def _node_partition(self, fault: Partition, topo: dict[str, str]) -> Injected:
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

        def heal() -> dict[str, Any]:
            gone = []
            for h in installed:
                try:
                    nodeaccess.nft_in_pod(uids[h], nodeaccess.heal_script())
                except Unsupported:
                    gone.append(h)  # the pod was replaced: its namespace (and the rules) went with it
            return {"healed": sorted(grudge), "pods_gone": gone}

        return Injected(part.targets, heal, {**part.detail(), "how": "nft in pod network namespaces (node access)"})

    def _netpol_partition(self, fault: Partition, topo: dict[str, str]) -> Injected:
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

        def heal() -> dict[str, Any]:
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

    def _inject_latency(self, fault: Latency) -> Injected:
        self._need_chaos_mesh("latency")
        if fault.direction != "upstream":
            raise Unsupported(f"latency direction {fault.direction!r}: the Chaos Mesh delay here delays the "
                              "source's packets to the destination (upstream) only")
        src, dst, targets = self._link_pods(fault.link)
        cr = plan.link_delay_cr(self._name("delay"), src, dst, self.dep.namespace, fault.ms, fault.jitter_ms)
        return self._run_crs([cr], targets, {"ms": fault.ms, "jitter_ms": fault.jitter_ms})

    def _inject_timeout(self, fault: Timeout) -> Injected:
        self._need_chaos_mesh("a link timeout")
        src, dst, targets = self._link_pods(fault.link)
        return self._run_crs([plan.link_blackhole_cr(self._name("blackhole"), src, dst, self.dep.namespace)],
                             targets, {"how": "one-way partition"})

    # --- resources -----------------------------------------------------------------------------------

    def _inject_cpu_stress(self, fault: CpuStress) -> Injected:
        self._need_chaos_mesh("CPU stress")
        targets = plan_targets(fault.target, self.topology())
        crs = [plan.cpu_stress_cr(self._name("cpu"), self.dep.pod_name(t), self.dep.namespace, fault.quota)
               for t in targets]
        return self._run_crs(crs, targets, {"how": "stress-ng contention (no live quota change on Kubernetes)"})

    def _inject_memory_pressure(self, fault: MemoryPressure) -> Injected:
        self._need_chaos_mesh("memory pressure")
        targets = plan_targets(fault.target, self.topology())
        crs = [plan.memory_pressure_cr(self._name("mem"), self.dep.pod_name(t), self.dep.namespace,
                                       fault.limit_mb, container_limit_mb=512) for t in targets]
        return self._run_crs(crs, targets, {"how": "allocate past the container's memory limit"})

    def _inject_disk(self, fault: DiskFault) -> Injected:
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
        return self._run_crs(crs, targets, {"disk": fault.disk})
