"""manifests/components/locust: in-cluster locust master + workers render with kustomize on top of the
overlays, validate strictly for Kubernetes 1.29 … 1.37, keep every seed §3/§5 property, open exactly
the paths the generator needs — and their samples come back out of pod logs intact."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.load.generator import GeneratorSpec, loadtests_dir
from harness.load.k8s import CONFIG_CONFIGMAP, component_dir, config_data, locustfile_configmap, split_logs
from harness.load.samples import completeness, read_samples, read_shape_start
from harness.platforms.kubernetes import k8sschema, netpol, policy, render

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not on PATH")

OVERLAYS = [("kind", "reference"), ("production", "goverse")]


@functools.cache
def rendered(platform: str, stack: str) -> tuple[dict, ...]:
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="gvh-kz-locust-"))
    try:
        (d / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": "goverse",
            "resources": [os.path.relpath(render.overlay_dir(platform, stack), d)],
            "components": [os.path.relpath(component_dir(), d)]}))
        return tuple(render.kustomize_build(d))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def locust_docs(docs: tuple[dict, ...]) -> list[dict]:
    return [d for d in docs if "locust" in d["metadata"]["name"]]


@pytest.mark.parametrize("platform,stack", OVERLAYS, ids=[f"{p}-{s}" for p, s in OVERLAYS])
def test_component_renders_with_the_overlay(platform: str, stack: str) -> None:
    docs = rendered(platform, stack)
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in locust_docs(docs))
    assert kinds == [("ConfigMap", "goverse-locust-config"), ("Deployment", "goverse-locust-master"),
                     ("Deployment", "goverse-locust-worker"), ("NetworkPolicy", "locust-master-ingress"),
                     ("NetworkPolicy", "locust-worker-egress"), ("PodDisruptionBudget", "goverse-locust-worker"),
                     ("Service", "goverse-locust-master"), ("ServiceAccount", "goverse-locust-master"),
                     ("ServiceAccount", "goverse-locust-worker")]
    assert all(d["metadata"].get("namespace") == "goverse" for d in locust_docs(docs))


@pytest.mark.parametrize("version", k8sschema.SUPPORTED_VERSIONS)
def test_component_validates_strictly(version: str) -> None:
    problems = [f"{d['kind']}/{d['metadata']['name']}: {e}" for d in locust_docs(rendered("kind", "reference"))
                for e in k8sschema.errors(d, version, strict=True)]
    cm = locustfile_configmap("goverse")
    problems += [f"locustfile ConfigMap: {e}" for e in k8sschema.errors(cm, version, strict=True)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("platform,stack", OVERLAYS, ids=[f"{p}-{s}" for p, s in OVERLAYS])
def test_seed_properties_still_hold(platform: str, stack: str) -> None:
    """Non-root, no capabilities, seccomp, read-only root, limits, own ServiceAccounts, default deny."""
    assert not policy.violations(list(rendered(platform, stack)))


def test_network_paths_are_exactly_what_the_generator_needs() -> None:
    docs = list(rendered("kind", "reference"))
    paths, open_ports = netpol.allowed_paths(docs)
    assert ("locust-worker", "locust-master", "master") in paths
    assert ("gate", "http") in open_ports  # the workers reach the gates through their open client port
    assert paths >= netpol.EDGES  # the stack's own paths are untouched
    extra = {p for p in paths - netpol.EDGES}
    assert extra == {("locust-worker", "locust-master", "master")}, extra
    # the workers' egress allows the gate's client port and the master, nothing else of the stack
    egress = next(d for d in docs if d["metadata"]["name"] == "locust-worker-egress")
    targets = {r["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for r in egress["spec"]["egress"]}
    assert targets == {"goverse-gate", "goverse-locust-master"}


def test_locustfile_configmap_and_run_config_match_the_component() -> None:
    cm = locustfile_configmap("goverse-run1")
    assert cm["data"]["locustfile.py"] == (loadtests_dir() / "locustfile.py").read_text()
    assert set(cm["data"]) == {"locustfile.py", "shapes.py"}
    docs = rendered("kind", "reference")
    jobs = [d for d in docs if d["kind"] == "Deployment" and "locust" in d["metadata"]["name"]]
    assert len(jobs) == 2
    for job in jobs:
        pod = job["spec"]["template"]["spec"]
        assert pod["volumes"][0]["configMap"]["name"] == cm["metadata"]["name"]
        assert pod["containers"][0]["args"][:2] == ["-f", "/locust/locustfile.py"]
    shipped = next(d for d in docs if d["metadata"]["name"] == CONFIG_CONFIGMAP)["data"]
    run = config_data(GeneratorSpec(gates={"gate-0": "http://10.0.0.1:8080"}, shape="steady:rate=50"))
    assert set(shipped) == set(run), set(shipped) ^ set(run)
    assert run["GVH_SAMPLES"] == "stdout" and run["GVH_GATES"] == "goverse-gate=http://goverse-gate:8080"


CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import locustfile as lf
sink = lf.SampleSink(None, "worker")
sink.add([time.time(), 0.01, "increment", "k1", "ok", 2, 2, None, "goverse-gate", "node-0", 3, "load-1-1"])
sink.add([time.time(), 0.02, "read", "k1", "ok", None, 2, None, "goverse-gate", "node-0", 3, "load-1-1"])
print("[2026] locust log line that is not a sample")
sink.usage({"t": time.time(), "cpu": 12.5, "role": "worker"})
sink.usage({"t": time.time(), "event": "quit", "samples": sink.count})
sink.flush()
"""


def test_samples_round_trip_through_pod_logs(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(loadtests_dir())], capture_output=True, text=True,
                          timeout=60, check=True)
    log = proc.stdout + 'GVHT master-7 {"t0_wall": 12.5, "shape": "steady:rate=1"}\nGVHS worker-9 [1, 0.1, "inc'
    counts = split_logs(log, tmp_path)
    assert sum(v for k, v in counts.items() if k.startswith("samples-")) == 2
    assert [s.f for s in read_samples(tmp_path)] == ["increment", "read"]
    assert read_shape_start(tmp_path)["t0_wall"] == 12.5
    rec = {r["process"]: r for r in completeness(tmp_path)}
    assert len(rec) == 1 and next(iter(rec.values()))["problem"] is None
    assert json.loads((tmp_path / next(p.name for p in tmp_path.glob("usage-*"))).read_text().splitlines()[0])
