"""Applying Chaos Mesh experiments and getting rid of them again, whatever happens.

The recipe (anchors §3.1): apply → wait for ``AllInjected`` (fail fast if Chaos Mesh reports failed
injections) → … → heal: pause the experiment and wait for ``AllRecovered``, then delete it and wait
until it is gone. Chaos Mesh experiments carry a finalizer; if the controller never recovers (a pod
restarted mid-injection, chaos-daemon crash-looping — chaos-mesh #3122, #4433), deletion hangs
forever. After the timeout the runner annotates ``chaos-mesh.chaos-mesh.org/cleanFinalizer=forced``
(the maintainers' escape hatch) and says so loudly: the fault may still be in effect on the pod.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from harness.platforms.base import PlatformError
from harness.platforms.kubernetes import apply as k8s
from harness.platforms.kubernetes import chaos, naming, watch
from harness.waiting import WaitTimeout

log = logging.getLogger(__name__)


class ChaosInjectionFailed(PlatformError):
    """Chaos Mesh could not inject (its status says why)."""


class ChaosRunner:
    def __init__(self, dyn: Any, namespace: str, run_id: str) -> None:
        self.dyn = dyn
        self.namespace = namespace
        self.run_id = run_id
        self.forced: list[str] = []

    def available(self) -> bool:
        return k8s.has_kind(self.dyn, chaos.API_VERSION, "PodChaos")

    def _res(self, kind: str) -> Any:
        return k8s.resource(self.dyn, chaos.API_VERSION, kind)

    def inject(self, cr: Mapping[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        """Apply ``cr`` (re-checked to be confined to the run) and wait until every target is injected."""
        problems = chaos.check_scoped(cr, self.namespace, self.run_id) + chaos.semantic_errors(cr)
        if problems:
            raise PlatformError(f"refusing chaos experiment {cr['metadata'].get('name')}: {'; '.join(problems)}")
        k8s.apply(self.dyn, cr)
        name, kind = cr["metadata"]["name"], cr["kind"]

        def injected(obj: Mapping[str, Any] | None) -> tuple[bool, str]:
            if obj is None:
                return False, "not created yet"
            fails = chaos.failures(obj)
            if fails and not chaos.is_injected(obj):
                raise ChaosInjectionFailed(f"{kind}/{name}: {'; '.join(fails)}")
            return chaos.is_injected(obj), f"conditions {chaos.conditions(obj)} counts {chaos.counts(obj)}"

        try:
            watch.wait_object(self.dyn, self._res(kind), self.namespace, name, injected, timeout,
                              f"{kind}/{name} AllInjected")
        except BaseException:
            self.recover(cr, timeout=timeout)
            raise
        return self._res(kind).get(name=name, namespace=self.namespace).to_dict()

    def recover(self, cr: Mapping[str, Any], timeout: float = 60.0) -> bool:
        """Pause, wait AllRecovered, delete, wait gone. True if clean; False if the finalizer was forced."""
        name, kind = cr["metadata"]["name"], cr["kind"]
        res = self._res(kind)
        try:
            k8s.patch_merge(self.dyn, chaos.API_VERSION, kind, name, self.namespace,
                            {"metadata": {"annotations": {chaos.PAUSE_ANNOTATION: "true"}}})
            watch.wait_object(self.dyn, res, self.namespace, name,
                              lambda o: (o is None or chaos.is_recovered(o), f"conditions {chaos.conditions(o)}"),
                              timeout, f"{kind}/{name} AllRecovered")
            k8s.delete(self.dyn, chaos.API_VERSION, kind, name, self.namespace)
            watch.wait_gone(self.dyn, res, self.namespace, name, timeout, f"{kind}/{name} deleted")
            return True
        except Exception as exc:  # noqa: BLE001 - anything but a clean recovery ends in the forced path
            if _not_found(exc):
                return True
            self.force(cr, reason=str(exc))
            return False

    def force(self, cr: Mapping[str, Any], reason: str) -> None:
        name, kind = cr["metadata"]["name"], cr["kind"]
        log.error("!!! Chaos Mesh did not recover %s/%s in %s (%s). Forcing its finalizer off with %s=forced. "
                  "THE FAULT MAY STILL BE ACTIVE on the selected pods; restart them to be sure. !!!",
                  kind, name, self.namespace, reason, chaos.FORCE_CLEAN_ANNOTATION)
        self.forced.append(f"{kind}/{name}")
        try:
            k8s.patch_merge(self.dyn, chaos.API_VERSION, kind, name, self.namespace,
                            {"metadata": {"annotations": {chaos.FORCE_CLEAN_ANNOTATION: "forced"}}})
            k8s.delete(self.dyn, chaos.API_VERSION, kind, name, self.namespace)
            watch.wait_gone(self.dyn, self._res(kind), self.namespace, name, 30, f"{kind}/{name} force-deleted")
        except WaitTimeout as exc:
            log.error("!!! %s/%s is still present after forcing: %s !!!", kind, name, exc)
        except Exception as exc:  # noqa: BLE001
            if not _not_found(exc):
                log.error("!!! forcing %s/%s failed: %s !!!", kind, name, exc)

    def cleanup_all(self, timeout: float = 30.0) -> list[str]:
        """Recover every experiment of this run still present (teardown, Ctrl-C); returns their names."""
        if not self.available():
            return []
        left = []
        for kind in chaos.KINDS:
            items = self._res(kind).get(namespace=self.namespace,
                                        label_selector=naming.run_selector(self.run_id)).to_dict()["items"]
            for obj in items:
                left.append(f"{kind}/{obj['metadata']['name']}")
                self.recover({"kind": kind, "metadata": obj["metadata"]}, timeout=timeout)
        return left


def _not_found(exc: BaseException) -> bool:
    return getattr(exc, "status", None) == 404
