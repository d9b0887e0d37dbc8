"""The reference stack accepts what the reference manifests give it (config file + container env).

Why: the manifests and ``harness.refstack`` are written by different hands; this loads each role's
settings exactly as a pod would (ConfigMap YAML, the container's literal env, downward-API values
filled in), so a renamed variable or a missing listen address fails here, not on a cluster.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest
import yaml

from harness.platforms.kubernetes import render

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not on PATH")
refstack_config = pytest.importorskip("harness.refstack.config")


@functools.cache
def kind_reference() -> tuple[dict, ...]:
    return tuple(render.kustomize_build(render.overlay_dir("kind", "reference")))


def pod_env(kind: str, name: str, password_file: Path) -> dict[str, str]:
    doc = next(d for d in kind_reference() if d["kind"] == kind and d["metadata"]["name"] == name)
    env = {}
    for e in doc["spec"]["template"]["spec"]["containers"][0].get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif e.get("valueFrom", {}).get("fieldRef"):
            env[e["name"]] = {"metadata.name": f"{name}-0", "status.podIP": "10.244.0.7",
                              "metadata.namespace": "goverse"}[e["valueFrom"]["fieldRef"]["fieldPath"]]
        elif e.get("valueFrom", {}).get("secretKeyRef"):
            env[e["name"]] = "goverse"
    if "GOVERSE_POSTGRES_PASSWORD_FILE" in env:
        env["GOVERSE_POSTGRES_PASSWORD_FILE"] = str(password_file)
    return env


@pytest.mark.parametrize("kind,name,role,advertise", [
    ("StatefulSet", "goverse-node", "node", "10.244.0.7:7001"),
    ("Deployment", "goverse-gate", "gate", "10.244.0.7:8080"),
    ("Deployment", "goverse-inspector", "inspector", None),
])
def test_reference_pod_settings_load(tmp_path: Path, kind: str, name: str, role: str, advertise: str | None) -> None:
    pw = tmp_path / "postgres-password"
    pw.write_text("s3cret")
    config = next(d for d in kind_reference() if d["kind"] == "ConfigMap"
                  # kustomize's content-hash suffix (an edit rolls the pods)
                  and d["metadata"]["name"].rsplit("-", 1)[0] == "goverse-config")
    text = config["data"]["config.yaml"]
    settings = refstack_config.load_settings(role, refstack_config.Flags(config_text=text), pod_env(kind, name, pw))
    assert settings.warnings == ()
    if advertise:
        assert settings.instance.id == f"{name}-0"
        assert settings.instance.advertise_addr == advertise
    assert settings.cluster.etcd_endpoints and settings.cluster.shards == yaml.safe_load(text)["cluster"]["shards"]


def test_reference_node_without_its_listen_address_is_refused(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("x")
    env = pod_env("StatefulSet", "goverse-node", pw)
    env.pop("GOVERSE_GRPC_ADDR")
    config = next(d for d in kind_reference() if d["kind"] == "ConfigMap")["data"]["config.yaml"]
    with pytest.raises(refstack_config.ConfigError):
        refstack_config.load_settings("node", refstack_config.Flags(config_text=config), env)
