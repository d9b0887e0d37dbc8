"""Wiring the node pods' PostgreSQL fault proxy (``pgproxy``): the manifest patch a run adds, and the
client the injector switches toxics with.

When it is wired: a reference-stack run whose ``StackSpec.fault_proxies`` is on (the default) — the
same rule as the local platform, which always puts node → PostgreSQL behind its fault proxy, so a
latency figure means the same on both platforms (``report --compare``) and the link faults of the
local platform (Latency, Timeout, Reset on node → postgres) exist on Kubernetes without Chaos Mesh.
The cost is one loopback hop per query inside the pod (the local proxy measured ≈ 50 µs on a median
round trip) and a small container per node. The real Goverse stack is not wired (it ignores
``GOVERSE_POSTGRES_HOST/PORT``; its PostgreSQL address comes from its own config rendering), nor a Helm
deployment (the chart has no such sidecar): there the link faults keep their Unsupported reason.

How: a native sidecar (an init container with ``restartPolicy: Always``) in the node StatefulSet's pod
template, started and probed before the node container, so the node's first connection already finds
it; the node container's ``GOVERSE_POSTGRES_HOST``/``PORT`` (environment overrides of the config file,
seed §2.3) point at it on the pod's loopback.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from harness.platforms.base import PlatformError
from harness.platforms.kubernetes import stackconfig
from harness.platforms.kubernetes.pgproxy import CONTROL_PORT, LISTEN_PORT

CONTAINER = "pg-proxy"
IMAGE = "goverse-harness/refstack:latest"  # the manifests' refstack name: a run's image replacement applies
MODULE = "harness.platforms.kubernetes.pgproxy"


def node_patch() -> dict[str, Any]:
    """The strategic-merge patch of ``goverse-node``: the sidecar and the node's PostgreSQL address."""
    upstream = f"{stackconfig.POSTGRES_SERVICE}:{stackconfig.POSTGRES_PORT}"
    sidecar = {
        "name": CONTAINER,
        "image": IMAGE,
        # the node's own image, side-loaded on test clusters: never pull it (a `:latest` tag defaults to
        # Always, which components/local-images overrides for the app containers only)
        "imagePullPolicy": "IfNotPresent",
        "restartPolicy": "Always",
        "command": ["python", "-m", MODULE],
        "args": ["--listen", f"127.0.0.1:{LISTEN_PORT}", "--upstream", upstream,
                 "--control", f"0.0.0.0:{CONTROL_PORT}"],
        "ports": [{"name": "pg-proxy-ctl", "containerPort": CONTROL_PORT}],
        # the control port answers only after the proxy listens: the node container starts after this passes
        "startupProbe": {"httpGet": {"path": "/healthz", "port": CONTROL_PORT}, "periodSeconds": 1,
                         "failureThreshold": 120},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": CONTROL_PORT}, "periodSeconds": 10,
                          "timeoutSeconds": 3, "failureThreshold": 3},
        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    env = [{"name": "GOVERSE_POSTGRES_HOST", "value": "127.0.0.1"},
           {"name": "GOVERSE_POSTGRES_PORT", "value": str(LISTEN_PORT)}]
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "goverse-node"},
            "spec": {"template": {"spec": {"initContainers": [sidecar],
                                           "containers": [{"name": "node", "env": env}]}}}}


def wired(statefulset: dict[str, Any]) -> bool:
    """Whether a node StatefulSet (as the API returns it) carries the sidecar."""
    pod = (((statefulset.get("spec") or {}).get("template") or {}).get("spec")) or {}
    return any(c.get("name") == CONTAINER for c in pod.get("initContainers") or [])


class SidecarLink:
    """One node pod's proxy, through its control port at ``base_url`` (pod IP or a port-forward)."""

    def __init__(self, name: str, base_url: str, timeout: float = 10.0) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(doc).encode() if doc is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                out: dict[str, Any] = json.loads(resp.read())
                return out
        except urllib.error.HTTPError as exc:
            raise PlatformError(f"{self.name}: pg-proxy {method} {path} answered {exc.code}: "
                                f"{exc.read().decode(errors='replace')}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise PlatformError(f"{self.name}: pg-proxy control {self.base_url} unreachable: {exc}") from None

    def state(self) -> dict[str, Any]:
        return self._call("GET", "/link")

    def set_toxic(self, toxic: dict[str, Any]) -> dict[str, Any]:
        """Set a toxic (``pgproxy.toxic_from_json`` form); in force when this returns."""
        return self._call("PUT", "/toxic", toxic)

    def clear(self) -> dict[str, Any]:
        return self._call("DELETE", "/toxic")
