"""Deploying the stack from the Helm chart (``charts/goverse``) instead of the kustomize tree.

Why: the chart is what an operator installs (issue #18); running the scenarios against what
``helm install`` made shows the chart works, not only that it renders like the manifests. The harness
keeps its own rules: it creates the run's namespace (labelled, guarded context) and installs the
release into it with ``helm install`` (no ``--wait``: the harness waits by watch, phase by phase), and
the teardown runs ``helm uninstall`` before deleting the namespace — which takes what the chart keeps
on purpose (the backup volumes, ``helm.sh/resource-policy: keep``) with it.

The values are the chart's one-machine file (``ci/kind-values.yaml``) plus what the ``StackSpec``
says (replicas, shards, prefix, timers — the same timers the kustomize path writes, from
``stackconfig``) and the image; they are written to the run directory (no secret: the PostgreSQL
password is generated inside the release, ``postgres.auth.create``). Pure apart from ``run_helm``.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.platforms.base import PlatformError, StackSpec
from harness.platforms.kubernetes import render, stackconfig

HELM_VERSION = "v3.22.0"
RELEASE = "goverse"
DEPLOY_WITH: tuple[str, ...] = ("kustomize", "helm")
#: the policy finding for the release-generated password (postgres.auth.create), accepted on test clusters
GENERATED_SECRET_FINDING = ("seed §5.3 no literal credentials: Secret/goverse-postgres: "
                            "stringData.postgres-password is filled")
_TIMER_KEYS = ("cluster_state_stability_duration", "lease_ttl", "management_tick", "shutdown_grace",
               "default_call_timeout")


def chart_dir() -> Path:
    """``charts/goverse`` of this checkout (``GVH_CHART`` overrides it)."""
    env = os.environ.get("GVH_CHART")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "charts" / "goverse"


def helm_binary() -> str:
    """``GVH_HELM``, else ``helm`` on PATH, else the one the tests build from the Go module proxy
    (``~/.cache/goverse-harness/helm/<version>/helm``, see tests/support/gotools.py)."""
    env = os.environ.get("GVH_HELM")
    if env:
        if not Path(env).is_file():
            raise PlatformError(f"GVH_HELM: {env} is not a file")
        return env
    found = shutil.which("helm")
    if found:
        return found
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "goverse-harness"
    cached = base / "helm" / HELM_VERSION / "helm"
    if cached.is_file():
        return str(cached)
    raise PlatformError(f"deploy_with=helm needs helm: none on PATH, GVH_HELM unset, and {cached} not built "
                        "(`python3 -m pytest tests/platforms/kubernetes/test_helm_chart.py` builds it from the Go "
                        "module proxy)")


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def chart_values(spec: StackSpec, image: str | None, images: Mapping[str, str] | None = None,
                 chart: Path | None = None) -> dict[str, Any]:
    """The chart values of one run: ``ci/kind-values.yaml`` with the spec's shape and timers, the
    image, the backup CronJobs on (their shell steps in ``render.BACKUP_SHELL_IMAGE`` unless
    ``images["busybox"]`` says otherwise) and a generated PostgreSQL password."""
    if spec.stack != "reference":
        raise PlatformError("deploy_with=helm: the harness installs the chart with stack=reference only "
                            f"(got stack={spec.stack}); use deploy_with=kustomize for Goverse's images")
    if spec.bugs:
        raise PlatformError("deploy_with=helm: seeded bugs are switched on by the kustomize path only "
                            f"(got bugs={','.join(spec.bugs)}); use deploy_with=kustomize")
    chart = chart or chart_dir()
    base = yaml.safe_load((chart / "ci" / "kind-values.yaml").read_text()) or {}
    cluster = stackconfig.reference_config(spec)["cluster"]
    over: dict[str, Any] = {
        "stack": "reference",
        "cluster": {"shards": spec.shards, "etcdPrefix": spec.prefix,
                    "timers": {k: cluster[k] for k in _TIMER_KEYS}},
        "node": {"replicas": spec.nodes},
        "gate": {"replicas": spec.gates},
        "inspector": {"enabled": bool(spec.inspector)},
        "etcd": {"replicas": spec.etcd_members},
        "postgres": {"auth": {"create": True}},
        "backup": {"enabled": True,
                   "busyboxImage": (images or {}).get("busybox", render.BACKUP_SHELL_IMAGE)},
    }
    if image:
        name, tag, digest = render.split_image(image)
        if digest:
            raise PlatformError(f"deploy_with=helm: the chart takes image.repository and image.tag, not a digest "
                                f"(got {image})")
        over["image"] = {"repository": name, "tag": tag or ""}
    return _merge(base, over)


def settled(state: Any, nodes: int) -> tuple[bool, str]:
    """Converged and balanced over all ``nodes`` (owners differ by at most one shard). ``helm install``
    starts every workload at once, so nodes that came up after a crash-loop back-off join a map that
    already converged without them: ready-and-converged is then a moment between two rebalancing steps,
    and a scenario starting there sees shards move. The kustomize path starts the nodes together."""
    owners = state.owners()
    if not state.converged:
        return False, f"{len(state.unconverged())} shards unconverged"
    if len(state.nodes) != nodes or len(owners) != nodes:
        return False, f"{len(owners)} of {nodes} nodes own shards ({len(state.nodes)} live)"
    spread = max(owners.values()) - min(owners.values())
    return spread <= 1, f"owners {sorted(owners.values())}"


def helm_args(helm: str, verb: str, namespace: str, kubeconfig: str | None, context: str | None,
              extra: Sequence[str] = ()) -> list[str]:
    args = [helm, verb, *extra, "--namespace", namespace]
    if kubeconfig:
        args += ["--kubeconfig", kubeconfig]
    if context:
        args += ["--kube-context", context]
    return args


def run_helm(args: Sequence[str], what: str, timeout: float = 300.0) -> str:
    """Run helm; a failure raises ``PlatformError`` with helm's own message."""
    try:
        out = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PlatformError(f"{what}: helm did not finish within {timeout:.0f}s") from None
    if out.returncode != 0:
        raise PlatformError(f"{what} failed: {(out.stderr or out.stdout).strip()[-1500:]}")
    return out.stdout


def template(helm: str, values_file: Path, namespace: str, kube_version: str = "1.31.0",
             chart: Path | None = None) -> list[dict[str, Any]]:
    """What ``helm install`` would apply (``helm template`` with the same values, for the cluster's
    version: offline, helm assumes an old one the chart refuses): checked against the seed policy
    before anything is installed."""
    text = run_helm([helm, "template", RELEASE, str(chart or chart_dir()), "--namespace", namespace,
                     "--kube-version", kube_version.lstrip("v").split("+")[0], "-f", str(values_file)],
                    "helm template")
    return [d for d in yaml.safe_load_all(text) if d]


def install(helm: str, values_file: Path, namespace: str, kubeconfig: str | None, context: str | None,
            chart: Path | None = None) -> None:
    run_helm(helm_args(helm, "install", namespace, kubeconfig, context,
                       [RELEASE, str(chart or chart_dir()), "-f", str(values_file)]), "helm install")


def upgrade(helm: str, values_file: Path, namespace: str, kubeconfig: str | None, context: str | None,
            chart: Path | None = None) -> None:
    run_helm(helm_args(helm, "upgrade", namespace, kubeconfig, context,
                       [RELEASE, str(chart or chart_dir()), "-f", str(values_file)]), "helm upgrade")


def infra_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The first revision of a harness install: etcd, PostgreSQL and the schema only (no node, gate or
    inspector). Installed all at once, Goverse's pods crash-loop until etcd and the schema are there,
    and a pod that crash-looped keeps the kubelet's back-off (up to minutes) for its next crash — which
    is what a SIGKILL scenario then measures. The second revision (``helm upgrade``) starts them on a
    ready database, as the kustomize path's phases do."""
    return _merge(dict(values), {"node": {"replicas": 0}, "gate": {"replicas": 0}, "inspector": {"enabled": False}})


def uninstall(helm: str, namespace: str, kubeconfig: str | None, context: str | None) -> None:
    run_helm(helm_args(helm, "uninstall", namespace, kubeconfig, context, [RELEASE, "--wait", "--timeout", "5m"]),
             "helm uninstall")
