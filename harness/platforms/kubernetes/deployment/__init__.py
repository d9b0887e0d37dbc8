"""A deployed stack on Kubernetes: instances, controls, waits and teardown (``base.Deployment``).

Instance names are the harness's (``node-0``, ``gate-1``, ``etcd-0``, ``postgres``, ``inspector``);
StatefulSet pods map by ordinal, Deployment pods by slot (``slots``). Everything is reached through
port-forwards (``portforward``): gates' client APIs, the inspector, and etcd for the shard-map oracle.

Kubernetes differs from processes in one way scenarios notice: a deleted pod is recreated at once by
its controller. So ``kill`` and ``restart`` delete the pod and ``start`` waits for its replacement;
``stop`` (keep it down) and ``pause`` (SIGSTOP) raise ``Unsupported`` with that reason.

The parts, one job each (as ``LocalDeployment``'s in ``platforms/local/deployment/``): ``state`` the
fields, pod lookup and node access every part reads; ``endpoints`` instances, URLs, port-forwards and
the stored-state oracle's connection; ``observe`` the shard-map oracle, waits, capabilities and the
kubelet's container records; ``control`` signals, stop/start/restart and pause; ``operate`` scale,
rollout restart and ConfigMap/Secret patches; ``teardown`` evidence and removal. Ad-hoc pods (the
``AdhocInstances`` capability) come from ``platforms/kubernetes/adhoc``. Import
:class:`KubernetesDeployment` from here.
"""

from __future__ import annotations

from harness.platforms.kubernetes.deployment.control import prestop_sleep_s
from harness.platforms.kubernetes.deployment.teardown import Teardown

__all__ = ["KubernetesDeployment", "prestop_sleep_s"]


class KubernetesDeployment(Teardown):
    """See the module docstring; ad-hoc pods (the ``AdhocInstances`` capability) come from ``adhoc``."""
