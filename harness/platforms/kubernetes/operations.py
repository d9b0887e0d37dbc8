"""Day-2 operations on a stack deployed on Kubernetes (the ``Operations`` contract): scale through
replicas, config updates through the ConfigMap and a rollout, upgrade and rollback through the pod
template, rolling restarts; secret rotation is in ``secret_rotation.py``.

How a roll works here, and why. A setting that reaches a container through its environment (a
ConfigMap key, the version setting) is read when the container starts, so a change needs new pods: the
operation changes the ConfigMap or the template and stamps the pod template (``ROLL_ANNOTATION``),
which makes the controller replace the pods. Kubernetes' own rolling update waits for pod readiness
only; the stack also needs the shard map to converge and balance before the next node goes down (as
the local procedure waits). So:

- nodes (StatefulSet): the template change is made with ``partition = replicas`` (nothing rolls), then
  the partition steps down one ordinal at a time: the controller replaces exactly that pod (graceful
  delete, new revision); the step ends when the new pod is ready and the shard map converged and
  balanced. Highest ordinal first, as a StatefulSet rolls (the shard leader is not kept for last:
  the partition fixes the order).
- gates and the inspector (Deployments): the controller rolls by the manifests' strategy (surge one,
  none unavailable, 5 s minReady); the operation watches and records one window per replaced pod, from
  its deletion to its exit, and sends clients away from a terminating gate when it sees it (an
  EndpointSlice's behaviour).

Every window is recorded as locally (kinds in ``harness.operation_kinds``), with the old container's
exit code, so ``one_at_a_time`` and ``clean_exits`` judge Kubernetes rolls exactly as local ones.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import requests

from harness.history import Recorder
from harness.operation_kinds import CONFIG_F, VERSIONS_F
from harness.platforms.base import PlatformError, Unsupported
from harness.platforms.kubernetes import apply as k8s
from harness.platforms.kubernetes import conditions, naming
from harness.platforms.kubernetes.backup import KubernetesBackupOperations
from harness.platforms.kubernetes.deployment import KubernetesDeployment, prestop_sleep_s
from harness.platforms.kubernetes.opshelpers import (
    ROLL_ANNOTATION,
    VERSION_ENV,
    container_start_delay,
    env_source,
    is_balanced,
    roll_stamp,
    with_env,
)
from harness.platforms.kubernetes.secret_rotation import SecretRotation
from harness.platforms.operations import (
    COMPONENT_ORDER,
    Backup,
    RecordsOperations,
    RollbackToPrevious,
    RollResult,
    RollStep,
    ScaleStep,
    level_in_effect,
    log_levels,
    ordinal,
    parse_build_versions,
)
from harness.waiting import WaitTimeout, wait_until

log = logging.getLogger(__name__)
_ENV_KEY = re.compile(r"^[A-Z_][A-Z0-9_]*$")
#: the controller deletes the pods with the lowest cost first on a scale-down (a Kubernetes feature)
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
class KubernetesOperations(SecretRotation, RollbackToPrevious, RecordsOperations):
    """Operator actions on a :class:`KubernetesDeployment`; ``recorder`` and ``on_endpoints`` as in the
    local ``OperationsBase`` (``on_endpoints`` gets the gates clients should use)."""

    def __init__(self, deployment: KubernetesDeployment, recorder: Recorder | None = None,
                 on_endpoints: Callable[[dict[str, str]], None] | None = None) -> None:
        self.dep = deployment
        self.rec = recorder
        self.on_endpoints = on_endpoints
        self.timers = deployment.spec.timers
        self._previous_versions: dict[str, str] = {}
        self._rolls = 0
        # backup, wipe, volume loss, restore: one instance, so a restore knows what its wipe scaled down
        self._backup = KubernetesBackupOperations(deployment, recorder, on_endpoints)

    # ---------------------------------------------------------------------------------- plumbing
    def _open(self, kind: str, target: str, params: dict[str, Any]) -> str | None:
        return self.rec.nemesis_start(kind, target, params) if self.rec is not None else None

    def _close(self, fid: str | None, kind: str, target: str, result: dict[str, Any]) -> None:
        if self.rec is not None and fid is not None:
            self.rec.nemesis_stop(fid, kind, target, result)


    def wait_instance_ready(self, name: str, timeout: float) -> float:
        t0 = time.monotonic()
        self.dep._wait_instance_ready(name, None, timeout)
        return time.monotonic() - t0

    def _converge_budget(self) -> float:
        """The procedure's deadline for convergence (lease + stability + 8 ticks + 5 s, as locally)."""
        t = self.timers
        return round(t.lease_ttl + t.stability + 8 * t.tick + 5.0, 2)

    def _pod_budget(self) -> float:
        """How long a replaced pod may take to be ready: its grace period, a start, the 5 s minReady."""
        return self.timers.shutdown_grace + 120.0

    def wait_converged_balanced(self, timeout: float) -> float:
        """Every shard's target == current, owners are the ready nodes, shard counts balanced."""
        t0 = time.monotonic()

        def ok() -> bool:
            st = self.dep.cluster_state()
            names = self.dep.advertise_names()
            owners = {names.get(c, c): n for c, n in st.owners().items()}
            nodes = set(self.running("node"))
            return st.converged and set(owners) <= nodes and is_balanced(owners, nodes, self.dep.spec.shards)

        wait_until(ok, timeout, "shard map converged and balanced over the ready nodes", interval=0.2,
                   describe=lambda: str(self.dep.cluster_state().summary(self.dep.advertise_names())))
        return time.monotonic() - t0

    def _shard_map(self) -> dict[int, tuple[str, str]]:
        """The shard map, read again while etcd's port-forward does not answer (a loaded machine)."""
        got: dict[int, tuple[str, str]] = wait_until(self.dep.shard_map, 30.0, "etcd answers a shard-map read",
                                                     interval=0.5)
        return got

    def _workload(self, component: str) -> dict[str, Any]:
        kind, name = naming.WORKLOADS[component]
        return dict(k8s.resource(self.dep.dyn, "apps/v1", kind).get(name=name, namespace=self.dep.namespace).to_dict())

    def _patch_workload(self, component: str, body: dict[str, Any]) -> None:
        kind, name = naming.WORKLOADS[component]
        k8s.patch_merge(self.dep.dyn, "apps/v1", kind, name, self.dep.namespace, body)

    def _all_pods(self, component: str) -> dict[str, dict[str, Any]]:
        """Every pod of ``component`` by uid, terminating ones included."""
        sel = ",".join(f"{k}={v}" for k, v in naming.component_selector(component).items())
        items = k8s.resource(self.dep.dyn, "v1", "Pod").get(namespace=self.dep.namespace,
                                                            label_selector=sel).to_dict()["items"]
        return {p["metadata"]["uid"]: p for p in items}

    # ----------------------------------------------------------------------------------- scaling
    def scale(self, component: str, n: int, timeout: float | None = None,
              drain_endpoints: bool = True) -> ScaleStep:
        """Scale nodes (StatefulSet) or gates (Deployment) through ``replicas``, then wait until the
        added instances are ready and, for nodes, the shard map converged and balanced (``converged_s``
        from the step's start; ``None`` if not within ``timeout``, default 2× the convergence budget).

        Nodes leave one at a time (replicas stepped down by one, each pod gone before the next): the
        StatefulSet's Parallel pod policy would otherwise SIGTERM them together, and the stack drains a
        node by handing its shards over on SIGTERM. Gates: the pods in the highest slots get the lowest
        ``pod-deletion-cost`` so the controller removes those; with ``drain_endpoints`` they leave the
        client list before the scale (a readiness-gated load balancer), else after they are gone."""
        if component not in ("node", "gate"):
            raise Unsupported(f"scale: only node and gate scale, got {component!r}")
        if n < 1:
            raise ValueError(f"scale: {component} replicas must be at least 1, got {n}")
        timeout = timeout if timeout is not None else 2 * self._converge_budget()
        before_names = sorted((i.name for i in self.dep.instances(component)), key=ordinal)
        before = len(before_names)  # pods, ready or not (a starved node may be unready for a moment)
        map_before = self._shard_map()
        leaving = before_names[n:]
        # nodes leave one after another, each pod's preStop sleep before its SIGTERM; gates together
        delays = [self._prestop_s(name) for name in leaving]
        stop_delay = sum(delays) if component == "node" else max(delays, default=0.0)
        t0, t0_wall = time.monotonic(), time.time()
        with self.window(f"scale-{component}", component, {"from": before, "to": n}) as res:
            if component == "gate" and leaving:
                for name in leaving:
                    pod = self.dep.pod_name(name)
                    k8s.patch_merge(self.dep.dyn, "v1", "Pod", pod, self.dep.namespace,
                                    {"metadata": {"annotations": {DELETION_COST: "-1000"}}})
                if drain_endpoints:
                    self._publish_endpoints(exclude=leaving)
            steps = list(range(before - 1, n - 1, -1)) if component == "node" and n < before else [n]
            changed = sorted({name for replicas in steps for name in self.dep.scale(component, replicas)})
            res.update(to=n, changed=changed, stop_delay_s=stop_delay)
            converged: float | None = None
            start_delay = 0.0
            try:
                for name in changed if n > before else ():
                    self.wait_instance_ready(name, max(1.0, timeout - (time.monotonic() - t0)))
                if n > before:  # the added pods start together: the slowest one's start is the platform's
                    start_delay = max((self._start_delay(name, t0_wall) for name in changed), default=0.0)
                    res["start_delay_s"] = start_delay
                if component == "node":
                    self.wait_converged_balanced(max(1.0, timeout - (time.monotonic() - t0)))
                converged = round(time.monotonic() - t0, 3)
            except WaitTimeout as exc:
                res["wait_error"] = str(exc)[:300]
            if component == "gate":
                self._publish_endpoints()
            res["converged_s"] = converged
        return ScaleStep(component, before, n, changed, converged, map_before, self._shard_map(), stop_delay,
                         start_delay)

    def _start_delay(self, name: str, t_request: float) -> float:
        """How long after ``t_request`` the kubelet started the added instance's container (0 if unknown)."""
        component = naming.pod_for_instance(name)[0]
        pod = self.dep.core.read_namespaced_pod(self.dep.pod_name(name), self.dep.namespace)
        got = container_start_delay(self.dep.core.api_client.sanitize_for_serialization(pod), component, t_request)
        return got or 0.0

    def _prestop_s(self, name: str) -> float:
        """The leaving instance's ``preStop`` sleep: the kubelet holds SIGTERM back that long after the
        pod's deletion, so it is inside a scale-down step's time but not the stack's (0 if the pod is gone)."""
        from kubernetes.client.exceptions import ApiException

        component = naming.pod_for_instance(name)[0]
        try:
            pod = self.dep.core.read_namespaced_pod(self.dep.pod_name(name), self.dep.namespace)
        except (KeyError, ApiException):
            return 0.0
        return prestop_sleep_s(self.dep.core.api_client.sanitize_for_serialization(pod), component)

    # --------------------------------------------------------------------------- rolling procedure
    def _components(self, components: Sequence[str]) -> list[str]:
        unknown = sorted(set(components) - set(COMPONENT_ORDER))
        if unknown:
            raise ValueError(f"components: unknown {unknown}; allowed {list(COMPONENT_ORDER)}")
        out = [c for c in COMPONENT_ORDER if c in components]
        return [c for c in out if c != "inspector" or self.dep.spec.inspector]

    def _roll(self, kind: str, params: dict[str, Any], components: Sequence[str],
              template: Callable[[str, dict[str, Any]], dict[str, Any]],
              timeout: float | None = None) -> list[RollStep]:
        """Roll ``components`` in order (nodes, gates, inspector); ``template(component, workload)`` gives
        the pod-template merge patch for that workload (the roll stamp is added here)."""
        per_pod = timeout if timeout is not None else self._pod_budget()
        self._rolls += 1
        stamp = roll_stamp(kind, params, self._rolls)
        steps: list[RollStep] = []
        for comp in self._components(components):
            obj = self._workload(comp)
            patch = template(comp, obj)
            meta = patch.setdefault("metadata", {})
            meta.setdefault("annotations", {})[ROLL_ANNOTATION] = stamp
            if comp == "node":
                steps += self._roll_statefulset(kind, params, patch, per_pod, len(steps))
            else:
                steps += self._roll_deployment(comp, kind, params, patch, per_pod, len(steps))
        return steps

    def _roll_statefulset(self, kind: str, params: dict[str, Any], template_patch: dict[str, Any],
                          per_pod: float, done: int) -> list[RollStep]:
        replicas = self.dep._replicas("node")
        self._patch_workload("node", {"spec": {"template": template_patch, "updateStrategy": {
            "type": "RollingUpdate", "rollingUpdate": {"partition": replicas}}}})
        steps: list[RollStep] = []
        try:
            for i in range(replicas - 1, -1, -1):
                name, pod = f"node-{i}", naming.statefulset_pod("node", i)
                with self.window(kind, name, {**params, "step": done + len(steps) + 1}) as res:
                    t_down = self._now()
                    t0 = time.monotonic()
                    codes = self.dep._watch_exit_code(pod)
                    old_uid = self.dep.pod_uid(name)
                    self._patch_workload("node", {"spec": {"updateStrategy": {"rollingUpdate": {"partition": i}}}})
                    self.dep._wait_instance_ready(name, old_uid, per_pod)
                    self.wait_converged_balanced(max(1.0, per_pod - (time.monotonic() - t0)))
                    codes["thread"].join(timeout=10)
                    res.update(exit_code=codes.get("code"), ready_s=round(time.monotonic() - t0, 3))
                    steps.append(RollStep(name, t_down, self._now(), codes.get("code")))
        finally:  # never leave the StatefulSet half-held: the controller finishes a halted roll itself
            self._patch_workload("node", {"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}})
        return steps

    def _roll_deployment(self, comp: str, kind: str, params: dict[str, Any], template_patch: dict[str, Any],
                         per_pod: float, done: int) -> list[RollStep]:
        """Let the Deployment controller roll; record a window per old pod from its deletion to its end."""
        old = {uid: p for uid, p in self._all_pods(comp).items() if not p["metadata"].get("deletionTimestamp")}
        slot_of = {}
        for inst in self.dep.instances(comp):
            with contextlib.suppress(KeyError):
                slot_of[self.dep.pod_name(inst.name)] = inst.name
        watchers = {uid: self.dep._watch_exit_code(p["metadata"]["name"]) for uid, p in old.items()}
        open_: dict[str, tuple[str | None, str, float, float]] = {}  # uid -> (window id, instance, t_down, t0)
        steps: list[RollStep] = []
        self._patch_workload(comp, {"spec": {"template": template_patch}})

        def step() -> bool:
            pods = self._all_pods(comp)
            # closes before opens: when one poll sees an old pod gone and the next one deleted, the order
            # within the poll is unknown, and opening first would record an overlap that was not seen
            for uid in [u for u in old if u in open_ and u not in closed and pods.get(u) is None]:
                fid, name, t_down, t0 = open_[uid]
                watchers[uid]["thread"].join(timeout=5)
                code = watchers[uid].get("code")
                self._close(fid, kind, name, {"exit_code": code, "ready_s": round(time.monotonic() - t0, 3)})
                closed.add(uid)
                steps.append(RollStep(name, t_down, self._now(), code))
                if comp == "gate":
                    self._publish_endpoints()
            for uid, p in old.items():
                pod_name = p["metadata"]["name"]
                name = slot_of.get(pod_name, pod_name)
                cur = pods.get(uid)
                if uid not in open_ and (cur is None or cur["metadata"].get("deletionTimestamp")):
                    if comp == "gate":
                        self._publish_endpoints(exclude=[name])
                    fid = self._open(kind, name, {**params, "step": done + len(open_) + 1, "pod": pod_name})
                    open_[uid] = (fid, name, self._now(), time.monotonic())
            if len(steps) < len(old):
                return False
            ok, _why = conditions.progress(self._workload(comp))
            return ok

        closed: set[str] = set()
        try:
            wait_until(step, per_pod * max(1, len(old)), f"{comp} rolled, every old pod gone", interval=0.1)
        finally:
            for uid, (fid, name, _t, _t0) in open_.items():
                if uid not in closed:
                    self._close(fid, kind, name, {"error": "the roll halted before this pod was gone"})
        self._publish_endpoints()
        return steps

    def rolling_restart(self, components: Sequence[str] = COMPONENT_ORDER, timeout: float | None = None) -> RollResult:
        """``kubectl rollout restart`` with the stack's gates: every instance replaced once, one at a time."""
        steps = self._roll("rolling-restart", {}, components, lambda c, o: {}, timeout)
        return RollResult("rolling-restart", steps, {})

    # ------------------------------------------------------------------------------ config update
    def _stack_containers(self, comp: str, obj: dict[str, Any]) -> list[dict[str, Any]]:
        return [c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == comp]

    def update_config(self, key: str, value: str, components: Sequence[str] = COMPONENT_ORDER,
                      timeout: float | None = None) -> RollResult:
        """Change a setting delivered through a ConfigMap (``LOG_LEVEL`` in the reference stack's
        ``goverse-env``), then roll the workloads one pod at a time; for ``LOG_LEVEL`` verify from every
        new pod's log (read through the API) that the level is in effect."""
        if not _ENV_KEY.match(key):
            raise Unsupported(f"update_config: {key!r} is not an environment setting (LOG_LEVEL, GOVERSE_*)")
        comps = self._components(components)
        maps: dict[str, str] = {}
        for comp in comps:
            for c in self._stack_containers(comp, self._workload(comp)):
                src = env_source(c, key)
                if src.kind != "configmap":
                    raise Unsupported(f"update_config: {key} of {comp} is {src.kind} in the pod template, not "
                                      "delivered by a ConfigMap: a ConfigMap change cannot reach it")
                maps[src.name] = src.key
        for cm_name, cm_key in maps.items():
            k8s.patch_merge(self.dep.dyn, "v1", "ConfigMap", cm_name, self.dep.namespace, {"data": {cm_key: value}})
        steps = self._roll("config-update", {"key": key, "value": value}, comps, lambda c, o: {}, timeout)
        verified: dict[str, Any] = {}
        for name in self.running():
            if naming.pod_for_instance(name)[0] not in comps:
                continue
            if key == "LOG_LEVEL":
                ok, why = level_in_effect(log_levels(self._pod_log(name)), value)
                if ok is None and value.lower() != "debug":  # silent since its start: cannot tell from logs
                    ok, why = self._silent_but_set(name, key, value)
            else:
                ok, why = self._env_in_pod(name, key, value)
            verified[name] = {"ok": ok, "why": why}
        self._sample(CONFIG_F, {"key": key, "value": value, "instances": verified, "configmaps": sorted(maps)})
        return RollResult("config-update", steps, verified)

    def config_value(self, key: str, components: Sequence[str] = COMPONENT_ORDER) -> dict[str, str | None]:
        """The value of ``key`` each running instance of ``components`` gets from its pod template now:
        the ConfigMap entry it references (what an undo of :meth:`update_config` rolls back to), a
        literal's value, or ``None`` when unset."""
        out: dict[str, str | None] = {}
        comps = self._components(components)
        for comp in comps:
            containers = self._stack_containers(comp, self._workload(comp))
            value: str | None = None
            for c in containers:
                src = env_source(c, key)
                if src.kind == "configmap":
                    cm: Any = self.dep.core.read_namespaced_config_map(src.name, self.dep.namespace)
                    value = (cm.data or {}).get(src.key)
                elif src.kind == "literal":
                    value = next((str(e.get("value")) for e in c.get("env") or [] if e.get("name") == key), None)
            for name in self.running():
                if naming.pod_for_instance(name)[0] == comp:
                    out[name] = value
        return out

    def _pod_log(self, name: str) -> str:
        """The instance's container log since its pod started (a rolled pod is new: all of it is after)."""
        comp = naming.pod_for_instance(name)[0]
        try:
            return str(self.dep.core.read_namespaced_pod_log(self.dep.pod_name(name), self.dep.namespace,
                                                             container=comp, _request_timeout=20))
        except Exception as exc:  # noqa: BLE001 - an unreadable log is an unverified instance, not a crash
            log.warning("reading the log of %s failed: %s", name, exc)
            return ""

    def _silent_but_set(self, name: str, key: str, value: str) -> tuple[bool, str]:
        """A pod that logged nothing since its start: at ``info`` every start logs info lines, so the
        silence proves the level only together with the process's own environment (``/proc/1/environ``
        read through the exec API) holding ``key=value``."""
        from kubernetes.stream import stream

        comp = naming.pod_for_instance(name)[0]
        try:
            raw = stream(self.dep.core.connect_get_namespaced_pod_exec, self.dep.pod_name(name), self.dep.namespace,
                         container=comp, command=["cat", "/proc/1/environ"], stderr=False, stdin=False,
                         stdout=True, tty=False, _request_timeout=20)
        except Exception as exc:  # noqa: BLE001 - unverified, with the reason
            return False, f"no JSON log line since the restart and its environment is unreadable ({type(exc).__name__})"
        env = dict(kv.split("=", 1) for kv in str(raw).split("\0") if "=" in kv)
        if env.get(key) != value:
            return False, f"no JSON log line since the restart, and the process has {key}={env.get(key)!r}"
        return True, (f"the process started with {key}={value} (its /proc/1/environ) and logged no line since, "
                      "where every start at info logs info lines")

    def _env_in_pod(self, name: str, key: str, value: str) -> tuple[bool, str]:
        """Whether the running pod's ConfigMap gives ``key=value`` (what its container started with)."""
        pod: Any = self.dep.core.read_namespaced_pod(self.dep.pod_name(name), self.dep.namespace)
        comp = naming.pod_for_instance(name)[0]
        c = next((c for c in pod.spec.containers if c.name == comp), None)
        src = env_source(self.dep.core.api_client.sanitize_for_serialization(c) if c else {}, key)
        if src.kind != "configmap":
            return False, f"{key} is {src.kind} in the pod"
        cm: Any = self.dep.core.read_namespaced_config_map(src.name, self.dep.namespace)
        got = (cm.data or {}).get(src.key)
        return got == value, f"ConfigMap {src.name} gives {key}={got!r}; the pod started after the change"

    # ------------------------------------------------------------------------------- versions
    def _ops_url(self, name: str) -> str:
        comp = naming.pod_for_instance(name)[0]
        port_name = {"node": "node_ops", "gate": "gate_ops", "inspector": "inspector_http"}[comp]
        return self.dep._forward(f"ops-{name}", name, self.dep.ports[port_name]).url()

    def versions(self) -> dict[str, list[str]]:
        """Versions each ready instance reports on ``/metrics`` (``goverse_build_info``)."""
        return {n: self._scrape(n) for n in self.running()}

    def _scrape(self, name: str) -> list[str]:
        try:
            got = requests.get(f"{self._ops_url(name)}/metrics", timeout=3)
        except (requests.RequestException, PlatformError, KeyError) as exc:
            return [f"<unreachable: {type(exc).__name__}>"]
        return sorted(parse_build_versions(got.text)) if got.status_code == 200 else [f"<HTTP {got.status_code}>"]

    def version_of(self, name: str) -> str:
        """The version the instance reports (the version setting of its pod template when it started)."""
        seen: dict[str, list[str]] = {}

        def one() -> bool:
            seen["v"] = self._scrape(name)  # ready or not: a starved instance still reports its version
            return len(seen["v"]) == 1 and not seen["v"][0].startswith("<")

        try:
            wait_until(one, 30.0, f"{name} reports one version on /metrics", interval=0.5)
        except WaitTimeout:
            raise PlatformError(f"{name} reports versions {seen.get('v')}, expected exactly one") from None
        return seen["v"][0]

    def rolling_upgrade(self, version: str, components: Sequence[str] = COMPONENT_ORDER,
                        timeout: float | None = None, kind: str = "rolling-upgrade") -> RollResult:
        """Roll every instance onto ``version``: the pod templates get the version setting
        (``GOVERSE_VERSION_TAG``; the reference stack has one image and reports this setting in
        ``goverse_build_info``, as locally its ``--version-tag``), one pod at a time as in
        :meth:`_roll`; then scrape every instance's ``/metrics`` (sample ``versions``)."""
        if self.dep.spec.stack != "reference":
            raise Unsupported("rolling_upgrade: the goverse stack's versions are images, and no image per "
                              "version is configured; per-instance versions exist for the reference stack")
        if not version or not re.fullmatch(r"[\w.+-]+", version):
            raise ValueError(f"version must be a plain tag, got {version!r}")
        comps = self._components(components)
        previous = {n: self.version_of(n) for n in self.running() if naming.pod_for_instance(n)[0] in comps}

        def template(comp: str, obj: dict[str, Any]) -> dict[str, Any]:
            containers = obj["spec"]["template"]["spec"]["containers"]
            return {"spec": {"containers": with_env(containers, [comp], VERSION_ENV, version)}}

        steps = self._roll(kind, {"version": version}, comps, template, timeout)
        if kind == "rolling-upgrade":
            self._previous_versions = previous
        names = [i.name for c in comps for i in self.dep.instances(c)]  # every pod, ready or not
        seen = {n: self._scrape(n) for n in names}
        self._sample(VERSIONS_F, {"expected": version, "instances": seen})
        return RollResult(kind, steps, {"versions": seen, "previous": previous})

    # ------------------------------------------------------------------- backup (not here)
    # ------------------------------------------------------------ backup and restore (Jobs, PVCs)
    def backup(self, dest: Path) -> Backup:
        return self._backup.backup(dest)

    def wipe(self) -> dict[str, Any]:
        return self._backup.wipe()

    def lose_data_dir(self, component: str = "postgres") -> dict[str, Any]:
        return self._backup.lose_data_dir(component)

    def counter_values(self, keys: Iterable[str]) -> dict[str, int]:
        return self._backup.counter_values(keys)

    def restore(self, backup: Backup, keys: Iterable[str], etcd: bool = True, postgres: bool = True,
                t_fault: float | None = None, timeout: float | None = None) -> dict[str, Any]:
        return self._backup.restore(backup, keys, etcd=etcd, postgres=postgres, t_fault=t_fault, timeout=timeout)
