"""Operator actions on a Kubernetes stack: scale, rollout restart, and merge patches of its
ConfigMaps and Secrets (what an operator does with ``kubectl``)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from harness.platforms.base import Unsupported
from harness.platforms.kubernetes import apply as k8s
from harness.platforms.kubernetes import naming
from harness.platforms.kubernetes.deployment.control import PodControl


class OperatorActions(PodControl):
    """Scale, roll and reconfigure the stack's workloads."""

    def scale(self, component: str, n: int) -> list[str]:
        """Scale nodes (StatefulSet) or gates (Deployment) to ``n``; returns the instances added/removed."""
        if component not in ("node", "gate"):
            raise Unsupported(f"only nodes and gates scale, not {component}")
        before = {i.name for i in self.instances(component)}
        kind, name = naming.WORKLOADS[component]
        k8s.patch_merge(self.dyn, "apps/v1", kind, name, self.namespace, {"spec": {"replicas": n}})
        self.wait_rollout(component, self.spec.timers.failover_budget(120))
        after = {i.name for i in self.instances(component)}
        return sorted(before ^ after)

    def rollout_restart(self, component: str) -> None:
        """``kubectl rollout restart``: a new pod-template annotation makes the controller roll every pod."""
        kind, name = naming.WORKLOADS[component]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        k8s.patch_merge(self.dyn, "apps/v1", kind, name, self.namespace, {"spec": {"template": {"metadata": {
            "annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}})

    def patch_configmap(self, name: str, data: Mapping[str, str]) -> None:
        k8s.patch_merge(self.dyn, "v1", "ConfigMap", name, self.namespace, {"data": dict(data)})

    def patch_secret(self, name: str, string_data: Mapping[str, str]) -> None:
        """Merge ``stringData`` (the API server encodes it); mounted files follow within the kubelet's sync."""
        k8s.patch_merge(self.dyn, "v1", "Secret", name, self.namespace, {"stringData": dict(string_data)})
