"""The Deployment protocol's instance controls on Kubernetes: signals (pod deletion, or a real SIGKILL
from the node), terminate, stop/start/restart and the waits for a pod's return, pause/resume through
the cgroup freezer.

A deleted pod is recreated at once by its controller, so ``kill`` and ``restart`` delete the pod and
``start`` waits for its replacement (or for the kubelet's restart in place after a SIGKILL from the
node); ``stop`` raises ``Unsupported``.
"""

from __future__ import annotations

import contextlib
import signal as _signal
import time
from collections.abc import Mapping
from typing import Any

from harness.platforms.base import PlatformError, Termination, Unsupported
from harness.platforms.kubernetes import conditions, naming
from harness.platforms.kubernetes.deployment.observe import Observation
from harness.waiting import wait_until


def prestop_sleep_s(pod: Mapping[str, Any], container: str) -> float:
    """Seconds of the container's ``preStop`` ``sleep`` action (0 without one): the kubelet sends SIGTERM
    only when the hook returns."""
    for c in pod.get("spec", {}).get("containers", []):
        if c.get("name") == container:
            sleep = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}
            return float(sleep.get("seconds") or 0)
    return 0.0


class PodControl(Observation):
    """Signal, stop, start, restart, pause and resume the instances of a Kubernetes stack."""

    def delete_pod(self, pod: str, grace_period: int | None = None) -> str:
        """Delete a pod (``grace_period=0``: at once, like SIGKILL); returns its uid."""
        obj = self.core.read_namespaced_pod(pod, self.namespace)
        uid = str(obj.metadata.uid) if obj.metadata is not None else ""
        self.core.delete_namespaced_pod(pod, self.namespace, grace_period_seconds=grace_period)
        return uid

    def kill(self, name: str, sig: int = _signal.SIGKILL) -> None:
        """SIGKILL: from the node when the harness runs on it (the container's processes get a real
        SIGKILL and the kubelet restarts the container in place), else pod deletion with grace 0 —
        which a kubelet still carries out as SIGTERM and SIGKILL 2 s later (its minimum grace), so a
        process that flushes on SIGTERM is not really killed. SIGTERM: graceful pod deletion."""
        if sig == _signal.SIGKILL and self.node_access():
            self._sigkill_from_node(name)
        elif sig == _signal.SIGKILL:
            self.delete_pod(self.pod_name(name), grace_period=0)
        elif sig == _signal.SIGTERM:
            self.delete_pod(self.pod_name(name))
        else:
            raise Unsupported(f"Kubernetes delivers only SIGTERM (graceful delete) and SIGKILL (grace 0), "
                              f"not {_signal.Signals(sig).name}")

    def stop(self, name: str, graceful: bool = True) -> int | None:
        raise Unsupported("on Kubernetes a stopped pod is recreated at once by its controller; "
                          "use kill/restart, or scale the component down")

    def terminate(self, name: str) -> Termination:
        """SIGTERM the way Kubernetes does it: delete the pod with its grace period. The kubelet runs the
        container's ``preStop`` hook first and sends SIGTERM when it returns, so the SIGTERM time is the
        deletion time plus the hook's sleep (a ``sleep`` action lasts exactly that long); the exit is
        when the pod's status first reports the container terminated. The controller then recreates
        the pod: ``start`` waits for it."""
        component = naming.pod_for_instance(name)[0]
        pod = self.pod_name(name)
        got: Any = self.core.read_namespaced_pod(pod, self.namespace)
        prestop = prestop_sleep_s(self.core.api_client.sanitize_for_serialization(got), component)
        codes = self._watch_exit_code(pod)
        t_delete = time.monotonic()
        self.delete_pod(pod, grace_period=None)
        grace = float(got.spec.termination_grace_period_seconds or 30)
        codes["thread"].join(timeout=grace + 30)
        t_exit = codes.get("t")
        if t_exit is None:
            raise PlatformError(f"{pod}: no terminated container status was seen within {grace + 30:.0f} s")
        self.exit_codes[name] = codes.get("code")
        return Termination(t_sigterm=t_delete + prestop, t_exit=float(t_exit), code=codes.get("code"))

    def _sigkill_from_node(self, name: str) -> None:
        import os

        from harness.platforms.kubernetes import nodeaccess

        pod: Any = self.core.read_namespaced_pod(self.pod_name(name), self.namespace)
        uid = str(pod.metadata.uid)
        restarts = sum(int(c.restart_count or 0) for c in pod.status.container_statuses or [])
        # the instance's own container only: a node pod's pg-proxy sidecar is not the node
        container = conditions.running_container_id(self.core.api_client.sanitize_for_serialization(pod),
                                                    naming.pod_for_instance(name)[0])
        victims = nodeaccess.container_pids(uid, container)
        if not victims:
            raise PlatformError(f"{name}: no container process of pod {pod.metadata.name} on this node")
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, _signal.SIGKILL)
        self._killed[name] = (uid, restarts)

    def bring_back(self, name: str) -> str:
        """After a kill held down (``start``'s counterpart): the pod is replaced (deleted, recreated by
        its controller), like a machine that comes back. Waiting for the in-place restart instead
        leaves the return to the kubelet's back-off: a node that could not reach etcd while cut off
        exits at start-up, so by the heal its container has crash-looped and its next start may be
        40 s or more away (seen: not ready 65 s after the heal)."""
        was = "in CrashLoopBackOff" if self.crash_looping(name) else "not crash-looping"
        killed = self._killed.pop(name, None)
        if killed is not None:
            try:  # in place first: same pod, same IP, as a local process comes back under its address
                self._wait_restarted_in_place(name, killed[0], killed[1], self.spec.timers.failover_budget(40))
                return f"restarted in place (its container was {was})"
            except TimeoutError:
                pass
        self.restart(name, graceful=False)
        return f"pod replaced (its container was {was}; not back in place in time)"

    def mark_killed(self, name: str, uid: str, restarts: int) -> None:
        """Record that the instance's container died in place (pod ``uid``, ``restarts`` before), so
        ``bring_back``/``start`` wait for the kubelet's restart of it (or replace the pod)."""
        self._killed[name] = (uid, restarts)

    def _wait_restarted_in_place(self, name: str, uid: str, restarts: int, timeout: float) -> None:
        def back() -> bool:
            pod: Any = self.core.read_namespaced_pod(self.pod_name(name), self.namespace)
            if str(pod.metadata.uid) != uid:
                return False  # replaced instead: the generic wait below handles it
            now = sum(int(c.restart_count or 0) for c in pod.status.container_statuses or [])
            ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
            return now > restarts and ready

        wait_until(back, timeout, f"{name} restarted in place and ready", interval=0.2)

    def start(self, name: str) -> None:
        """The kubelet/controller restarts by itself: wait until the instance is ready again."""
        killed = self._killed.pop(name, None)
        if killed is not None:
            self._wait_restarted_in_place(name, killed[0], killed[1], self.spec.timers.failover_budget(60))
            return
        self._wait_instance_ready(name, None, self.spec.timers.failover_budget(60))

    def restart(self, name: str, graceful: bool = True) -> None:
        pod = self.pod_name(name)
        codes = self._watch_exit_code(pod)
        old_uid = self.delete_pod(pod, grace_period=None if graceful else 0)
        self._wait_instance_ready(name, old_uid, self.spec.timers.shutdown_grace + 120)
        codes["thread"].join(timeout=5)
        self.exit_codes[name] = codes.get("code")

    def _watch_exit_code(self, pod: str) -> dict[str, Any]:
        """Watch ``pod`` (by name) in a thread until it is deleted; ``out["code"]`` is the exit code its
        first container reported on the way out (None if it had to be killed or was never seen)."""
        import threading

        from kubernetes import watch as kwatch

        out: dict[str, Any] = {"code": None}
        got: Any = self.core.read_namespaced_pod(pod, self.namespace)
        rv = got.metadata.resource_version

        def run() -> None:
            w = kwatch.Watch()
            with contextlib.suppress(Exception):
                for ev in w.stream(self.core.list_namespaced_pod, self.namespace, resource_version=rv,
                                   field_selector=f"metadata.name={pod}", timeout_seconds=180):
                    for st in ev["object"].status.container_statuses or []:
                        term = st.state.terminated if st.state else None
                        if term is not None and term.exit_code is not None:
                            out["code"] = int(term.exit_code)
                            out.setdefault("t", time.monotonic())
                    if ev["type"] == "DELETED":
                        w.stop()

        out["thread"] = threading.Thread(target=run, daemon=True)
        out["thread"].start()
        return out

    def pause(self, name: str) -> None:
        """Freeze every process of the instance's container through its cgroup freezer (SIGSTOP's
        effect); a node pod's pg-proxy sidecar keeps running, as the local platform's fault proxy does."""
        from harness.platforms.kubernetes import nodeaccess

        if not self.node_access():
            raise Unsupported(f"pause needs the pod's cgroup freezer: {self._NO_NODE}")
        uid = self.pod_uid(name)
        container = self.container_id(name)
        f = nodeaccess.freeze(uid, True, container)
        self._frozen[name] = (uid, container)
        wait_until(lambda: nodeaccess.is_frozen(f), 10, f"{name}'s container frozen", interval=0.05)

    def resume(self, name: str) -> None:
        from harness.platforms.kubernetes import nodeaccess

        frozen = self._frozen.pop(name, None)
        if frozen is None:
            raise PlatformError(f"{name} is not paused")
        with contextlib.suppress(Unsupported):  # the pod is gone (deleted while frozen): nothing to thaw
            nodeaccess.freeze(frozen[0], False, frozen[1])
