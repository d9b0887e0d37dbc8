"""Every overlay renders with kustomize and validates strictly for Kubernetes 1.29 … 1.37.

Renders are cached per overlay (``rendered``), and validators per (version, kind) (``k8sschema``), so
six overlays × nine versions stay well under the time budget.
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.platforms.base import StackSpec, Timers
from harness.platforms.kubernetes import k8sschema, naming, render, stackconfig
from tests.support.postgres_args import DEAD_CLIENT_SETTINGS, postgres_settings

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not on PATH")

OVERLAYS = [(p, s) for p in render.PLATFORM_OVERLAYS for s in render.STACKS]
OVERLAY_IDS = [f"{p}-{s}" for p, s in OVERLAYS]


@functools.cache
def rendered(platform: str, stack: str) -> tuple[dict, ...]:
    return tuple(render.kustomize_build(render.overlay_dir(platform, stack)))


def schema_errors(doc: dict, version: str) -> list[str]:
    try:
        return k8sschema.errors(doc, version, strict=True)
    except k8sschema.NoSchema:
        if doc["kind"] in render.OPTIONAL_KINDS:
            return []  # CRD kinds: checked structurally by policy.check_4_1_monitoring
        return [f"{doc['kind']} has no schema in Kubernetes {version}"]


@pytest.mark.parametrize("platform,stack", OVERLAYS, ids=OVERLAY_IDS)
def test_overlay_renders(platform: str, stack: str) -> None:
    docs = rendered(platform, stack)
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "StatefulSet", "Deployment", "Job", "Service", "NetworkPolicy", "ConfigMap"} <= kinds
    assert all(d["metadata"].get("namespace") == "goverse" for d in docs if d["kind"] != "Namespace")


@pytest.mark.parametrize("platform,stack", OVERLAYS, ids=OVERLAY_IDS)
def test_postgres_finds_a_silently_dead_client_in_seconds(platform: str, stack: str) -> None:
    """A node killed behind a cut network never closes its socket: with the OS default keepalive (2 h) its
    session kept its fence-row locks and the shards' next owner waited for the network to heal (the
    Kubernetes SIGKILL scenario's RTO went 3.9 s -> 13.5 s)."""
    assert postgres_settings(rendered(platform, stack)).items() >= DEAD_CLIENT_SETTINGS.items()


@pytest.mark.parametrize("version", k8sschema.SUPPORTED_VERSIONS)
@pytest.mark.parametrize("platform,stack", OVERLAYS, ids=OVERLAY_IDS)
def test_overlay_validates_strictly(platform: str, stack: str, version: str) -> None:
    problems = [f"{d['kind']}/{d['metadata']['name']}: {e}" for d in rendered(platform, stack)
                for e in schema_errors(d, version)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("mutate,expect", [
    (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagePullPolcy="Always"), "imagePullPolcy"),
    (lambda d: d["spec"].update(replicas="three"), "three"),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name"), "name"),
], ids=["unknown-field", "wrong-type", "missing-required"])
def test_strict_validation_rejects_a_broken_statefulset(mutate, expect: str) -> None:
    sts = next(d for d in rendered("kind", "reference") if d["kind"] == "StatefulSet")
    broken = copy.deepcopy(sts)
    mutate(broken)
    errs = schema_errors(broken, "1.29")
    assert errs and any(expect in e for e in errs), errs


def test_unknown_kind_is_not_a_silent_pass() -> None:
    doc = {"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "x"}}
    assert schema_errors(doc, "1.37")


# --- the config files and the generator agree -------------------------------------------------------


def test_reference_config_file_is_what_the_default_spec_generates() -> None:
    path = render.manifests_dir() / "stacks" / "reference" / "config.yaml"
    assert yaml.safe_load(path.read_text()) == stackconfig.reference_config(StackSpec())


def test_goverse_config_file_is_what_goverse_defaults_generate() -> None:
    path = render.manifests_dir() / "stacks" / "goverse" / "config.yaml"
    spec = StackSpec(stack="goverse", timers=Timers.goverse_defaults())
    assert yaml.safe_load(path.read_text()) == stackconfig.goverse_config(spec)


# --- the per-run kustomization ----------------------------------------------------------------------


def _run_render(tmp_path: Path, run_id: str = "t3st", **kw) -> list[dict]:
    opts = render.RunOptions(run_id=run_id, **kw)
    spec = StackSpec(stack=opts.stack, shards=16)
    out = render.write_run_kustomization(tmp_path, opts, stackconfig.stack_config(spec))
    return render.kustomize_build(out)


def test_run_kustomization_moves_everything_into_the_run_namespace(tmp_path: Path) -> None:
    docs = _run_render(tmp_path, nodes=5, gates=3, etcd_members=3, images={"goverse-harness/refstack": "reg:5000/r:v1"},
                       bugs=("no-fencing",))
    ns = naming.namespace_for("t3st")
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"] == [ns]
    assert all(d["metadata"]["namespace"] == ns for d in docs if d["kind"] != "Namespace")
    assert all(d["metadata"]["labels"][naming.RUN_LABEL] == "t3st" for d in docs)
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for kind, name in [("StatefulSet", "goverse-node"), ("Deployment", "goverse-gate")]:
        assert by[(kind, name)]["spec"]["template"]["metadata"]["labels"][naming.RUN_LABEL] == "t3st"
        assert naming.RUN_LABEL not in by[(kind, name)]["spec"]["selector"]["matchLabels"]
    assert by[("StatefulSet", "goverse-node")]["spec"]["replicas"] == 5
    assert by[("Deployment", "goverse-gate")]["spec"]["replicas"] == 3
    etcd = by[("StatefulSet", "goverse-etcd")]
    assert etcd["spec"]["replicas"] == 3
    env = {e["name"]: e.get("value") for e in etcd["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ETCD_INITIAL_CLUSTER"].count("=http://") == 3
    node = by[("StatefulSet", "goverse-node")]["spec"]["template"]["spec"]["containers"][0]
    assert node["image"] == "reg:5000/r:v1"
    assert {"name": "REFSTACK_BUGS", "value": "no-fencing"} in node["env"]
    config = yaml.safe_load(by[("ConfigMap", "goverse-config")]["data"]["config.yaml"])
    assert config["cluster"]["shards"] == 16
    for d in docs:
        assert not schema_errors(d, "1.29"), d["metadata"]["name"]


def test_run_kustomization_without_inspector_and_single_etcd(tmp_path: Path) -> None:
    docs = _run_render(tmp_path, platform="production", stack="goverse", inspector=False, etcd_members=1)
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert by[("Deployment", "goverse-inspector")]["spec"]["replicas"] == 0
    assert by[("StatefulSet", "goverse-etcd")]["spec"]["replicas"] == 1


@pytest.mark.parametrize("run_id", ["1e345678", "12345678", "0123", "7e10", "00000000"])
def test_a_run_id_that_reads_as_a_number_stays_a_string(tmp_path: Path, run_id: str) -> None:
    """``secrets.token_hex`` can give ``1e345678``: plain to PyYAML, a float to kustomize (YAML 1.2),
    which then refused the kustomization in one CI run; every label value must come back a string."""
    docs = _run_render(tmp_path, run_id=run_id, pg_proxy=True, bugs=("no-fencing",))
    assert all(d["metadata"]["labels"][naming.RUN_LABEL] == run_id for d in docs)
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    template = by[("StatefulSet", "goverse-node")]["spec"]["template"]
    assert template["metadata"]["labels"][naming.RUN_LABEL] == run_id


def test_bugs_are_refused_for_goverse() -> None:
    with pytest.raises(ValueError, match="seeded bugs"):
        render.run_kustomization(render.RunOptions(run_id="x1", stack="goverse", bugs=("no-dedup",)), "../o")


@pytest.mark.parametrize("ref,expected", [
    ("goverse-harness/refstack:dev", ("goverse-harness/refstack", "dev", None)),
    ("localhost:5000/refstack", ("localhost:5000/refstack", None, None)),
    ("localhost:5000/refstack:1.2", ("localhost:5000/refstack", "1.2", None)),
    ("r@sha256:abc", ("r", None, "sha256:abc")),
])
def test_split_image(ref: str, expected: tuple) -> None:
    assert render.split_image(ref) == expected


def test_fill_secrets_puts_the_password_only_in_memory() -> None:
    docs = list(rendered("kind", "reference"))
    filled = render.fill_secrets(docs, {"postgres-password": "s3cr3t"})
    secret = next(d for d in filled if d["kind"] == "Secret")
    assert secret["stringData"]["postgres-password"] == "s3cr3t"
    assert next(d for d in docs if d["kind"] == "Secret")["stringData"]["postgres-password"] == ""
    with pytest.raises(KeyError, match="postgres-password"):
        render.fill_secrets(docs, {})


def test_phases_put_infrastructure_before_schema_before_goverse() -> None:
    phases = render.by_phase(rendered("production", "reference"))
    order = [p for p, _ in phases]
    assert order == ["namespace", "setup", "infra", "schema", "app", "extras"]
    names = {p: {d["metadata"]["name"] for d in docs} for p, docs in phases}
    assert names["infra"] == {"goverse-etcd", "goverse-postgres"}
    assert names["app"] == {"goverse-node", "goverse-gate", "goverse-inspector"}
    assert {"goverse-alerts", "goverse-node"} <= names["extras"]


# --- the goverse stack's per-pod config renderer ----------------------------------------------------


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh")
@pytest.mark.parametrize("component", ["node", "gate", "inspector", "pgadmin"])
def test_render_config_script_writes_a_valid_per_pod_config(tmp_path: Path, component: str) -> None:
    script = render.manifests_dir() / "stacks" / "goverse" / "render-config.sh"
    src = render.manifests_dir() / "stacks" / "goverse" / "config.yaml"
    pw = tmp_path / "pw"
    password = "it's a \"hard\" one: #1 | & \\ $x"
    pw.write_text(password)
    out = tmp_path / "config.yaml"
    env = {"PATH": os.environ["PATH"], "COMPONENT": component, "POD_NAME": "goverse-node-1", "POD_IP": "10.1.2.3",
           "GRPC_PORT": "50051", "HTTP_PORT": "8080", "OPS_PORT": "9090", "POSTGRES_USER": "goverse",
           "POSTGRES_PASSWORD_FILE": str(pw), "SRC": str(src), "OUT": str(out)}
    subprocess.run(["sh", str(script)], env=env, check=True, capture_output=True)
    cfg = yaml.safe_load(out.read_text())
    assert cfg["cluster"]["shards"] == 64
    if component == "node":
        assert cfg["nodes"] == [{"id": "goverse-node-1", "grpc_addr": "0.0.0.0:50051",
                                 "advertise_addr": "10.1.2.3:50051", "http_addr": "0.0.0.0:8080"}]
    if component == "gate":
        assert cfg["gates"][0]["ops_addr"] == "0.0.0.0:9090" and cfg["gates"][0]["id"] == "goverse-node-1"
    if component in ("node", "pgadmin"):
        assert cfg["postgres"]["password"] == password and cfg["postgres"]["port"] == 5432
    else:
        assert "postgres" not in cfg


def test_render_config_script_refuses_an_unknown_component(tmp_path: Path) -> None:
    script = render.manifests_dir() / "stacks" / "goverse" / "render-config.sh"
    env = {"PATH": os.environ["PATH"], "COMPONENT": "gatee", "POD_NAME": "p", "POD_IP": "1.2.3.4",
           "SRC": str(render.manifests_dir() / "stacks" / "goverse" / "config.yaml"), "OUT": str(tmp_path / "c")}
    res = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "unknown COMPONENT" in res.stderr
    assert not (tmp_path / "c").exists()
