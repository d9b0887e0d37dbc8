"""Pure helpers of the Kubernetes parity work: SIGTERM time after preStop, the refstack image tag."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from harness.platforms.base import PlatformError
from harness.platforms.kubernetes.cluster.images import REFSTACK_IMAGE, refstack_ref
from harness.platforms.kubernetes.deployment import prestop_sleep_s


def _rendered_pods() -> dict[str, dict]:
    """The kind/reference overlay's pod templates by workload name (real manifests, rendered)."""
    out = subprocess.run(["kubectl", "kustomize", "manifests/overlays/kind/reference"], capture_output=True,
                         text=True, check=True).stdout
    return {d["metadata"]["name"]: {"spec": d["spec"]["template"]["spec"]}
            for d in yaml.safe_load_all(out) if d and d.get("kind") in ("StatefulSet", "Deployment")}


def test_prestop_sleep_is_read_from_the_rendered_node_and_gate_pods() -> None:
    pods = _rendered_pods()
    assert prestop_sleep_s(pods["goverse-node"], "node") == 5.0
    assert prestop_sleep_s(pods["goverse-gate"], "gate") == 5.0
    assert prestop_sleep_s(pods["goverse-node"], "no-such-container") == 0.0
    assert prestop_sleep_s(pods["goverse-etcd"], "etcd") == 0.0  # no hook: SIGTERM at deletion


def test_refstack_ref_tags_the_shared_name_and_refuses_a_bad_tag() -> None:
    assert refstack_ref() == REFSTACK_IMAGE
    assert refstack_ref("k8sparity") == "docker.io/goverse-harness/refstack:k8sparity"
    with pytest.raises(PlatformError, match="--tag"):
        refstack_ref("bad/tag")
