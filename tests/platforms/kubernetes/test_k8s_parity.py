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


def test_isolate_script_is_valid_nft_that_drops_all_but_loopback_and_heals_to_nothing() -> None:
    import shutil

    from harness.platforms.kubernetes import nodeaccess

    script = nodeaccess.isolate_script()
    assert "policy drop" in script and "iif lo accept" in script and "oif lo accept" in script
    nft = shutil.which("nft")
    if nft is None:
        pytest.skip("nft is not installed")
    for text in (script, nodeaccess.heal_script()):  # --check parses and validates without applying
        res = subprocess.run([nft, "--check", "-f", "-"], input=text, text=True, capture_output=True, check=False)
        if res.returncode != 0 and "Operation not permitted" in res.stderr:
            pytest.skip("nft --check needs CAP_NET_ADMIN")
        assert res.returncode == 0, res.stderr


def test_container_hierarchy_nests_under_the_process_own_v1_group() -> None:
    import os
    from pathlib import Path

    from harness.platforms.base import Unsupported
    from harness.platforms.kubernetes import nodeaccess
    from harness.platforms.local import cgroups

    mine = cgroups.parse_proc_cgroup(Path(f"/proc/{os.getpid()}/cgroup").read_text())
    try:
        h = nodeaccess.container_hierarchy("cpu", os.getpid())
    except Unsupported as exc:
        assert "v2" in str(exc) or "no cgroup hierarchy" in str(exc)
        return
    assert h.version == "v1" and h.controller == "cpu"
    assert h.path(h.own).is_dir() and mine["cpu"].endswith(h.own.rstrip("/")) or h.own == "/"
    with pytest.raises(Unsupported, match="gone"):
        nodeaccess.container_hierarchy("cpu", 2**22 + 7)
