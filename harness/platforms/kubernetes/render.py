"""From the kustomize tree to the documents one run applies.

Why a generated per-run kustomization (``<run_dir>/k8s/kustomization.yaml``) instead of editing the
rendered documents in Python: kustomize already knows how to move everything into a namespace, label
pod templates, set images and replica counts and swap a ConfigMap; the harness only states *what* it
wants, as data, and the same file lets a human re-render exactly what a run applied. The kustomization
is built as a dict by pure functions; ``kubectl kustomize`` (preinstalled, offline) does the rendering.
"""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.platforms.base import PlatformError
from harness.platforms.kubernetes import goyaml, naming

PLATFORM_OVERLAYS: tuple[str, ...] = ("kind", "k3s", "production")
STACKS: tuple[str, ...] = ("reference", "goverse")
REFSTACK_IMAGE = "goverse-harness/refstack"
FILL_ANNOTATION = "goverse-harness/fill"

#: resources whose API comes from a CRD another project installs; applied only if the CRD exists
OPTIONAL_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})


def manifests_dir() -> Path:
    """``manifests/`` of this checkout (``GVH_MANIFESTS`` overrides it, e.g. for an installed wheel)."""
    env = os.environ.get("GVH_MANIFESTS")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "manifests"


def overlay_dir(platform: str, stack: str) -> Path:
    if platform not in PLATFORM_OVERLAYS:
        raise ValueError(f"unknown overlay {platform!r}; expected one of {', '.join(PLATFORM_OVERLAYS)}")
    if stack not in STACKS:
        raise ValueError(f"unknown stack {stack!r}; expected one of {', '.join(STACKS)}")
    return manifests_dir() / "overlays" / platform / stack


def kustomize_build(path: Path | str, kubectl: str = "kubectl") -> list[dict[str, Any]]:
    """Render a kustomization with ``kubectl kustomize`` (offline; no cluster needed)."""
    try:
        out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, check=False,
                             timeout=120)
    except FileNotFoundError as exc:
        raise PlatformError(f"{kubectl!r} not found on PATH: it renders the manifests (kubectl kustomize)") from exc
    if out.returncode != 0:
        raise PlatformError(f"kubectl kustomize {path} failed: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


# --- the per-run kustomization (pure) -------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    """What one run changes in an overlay."""

    run_id: str
    platform: str = "kind"
    stack: str = "reference"
    nodes: int = 3
    gates: int = 2
    inspector: bool = True
    etcd_members: int = 1
    images: Mapping[str, str] = field(default_factory=dict)  # image name in manifests -> replacement
    bugs: tuple[str, ...] = ()
    backup: bool = True  # the backup CronJobs (components/backup): the backup/restore scenarios run them
    pg_proxy: bool = False  # node -> PostgreSQL through a fault proxy sidecar (pgproxy_wiring; reference only)


#: kustomize components a run may add to its overlay
BACKUP_COMPONENT = "components/backup"
OVERLAYS_WITH_BACKUP = frozenset({"production"})  # they include it themselves
#: the backup pods' shell steps (busybox in components/backup) run in the PostgreSQL image (alpine: its
#: busybox sh, mv, ls, xargs), which a test cluster already holds; ``images["busybox"]`` overrides it
BACKUP_SHELL_IMAGE = "postgres:16-alpine"


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """``reg:5000/a/b:tag`` -> (``reg:5000/a/b``, ``tag``, None); ``a@sha256:..`` -> (``a``, None, digest)."""
    if "@" in ref:
        name, digest = ref.split("@", 1)
        return name, None, digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:], None
    return ref, None, None


def image_entry(name: str, ref: str) -> dict[str, str]:
    new_name, tag, digest = split_image(ref)
    entry = {"name": name, "newName": new_name}
    if tag:
        entry["newTag"] = tag
    if digest:
        entry["digest"] = digest
    return entry


def etcd_initial_cluster(members: int) -> str:
    """The ``ETCD_INITIAL_CLUSTER`` value for ``members`` pods of the goverse-etcd StatefulSet."""
    if members < 1:
        raise ValueError("etcd needs at least one member")
    return ",".join(
        f"goverse-etcd-{i}=http://goverse-etcd-{i}.goverse-etcd-headless.$(POD_NAMESPACE).svc:2380"
        for i in range(members)
    )


def _container_env_patch(kind: str, name: str, container: str, env: list[dict[str, Any]]) -> dict[str, Any]:
    api = "batch/v1" if kind == "Job" else "apps/v1"
    return {
        "apiVersion": api, "kind": kind, "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": [{"name": container, "env": env}]}}},
    }


def etcd_members_patch(members: int) -> dict[str, Any]:
    # POD_NAME/POD_NAMESPACE listed again (unchanged) so they stay before ETCD_INITIAL_CLUSTER, which
    # uses $(POD_NAMESPACE): Kubernetes expands only variables defined earlier in the list
    downward = [{"name": n, "valueFrom": {"fieldRef": {"fieldPath": f"metadata.{f}"}}}
                for n, f in (("POD_NAME", "name"), ("POD_NAMESPACE", "namespace"))]
    patch = _container_env_patch("StatefulSet", "goverse-etcd", "etcd",
                                 [*downward, {"name": "ETCD_INITIAL_CLUSTER", "value": etcd_initial_cluster(members)}])
    patch["spec"]["replicas"] = members
    return patch


def bugs_patches(bugs: Iterable[str]) -> list[dict[str, Any]]:
    """Seeded bugs of the reference stack are switched on by ``REFSTACK_BUGS`` in nodes and gates."""
    value = ",".join(bugs)
    if not value:
        return []
    env = [{"name": "REFSTACK_BUGS", "value": value}]
    return [_container_env_patch("StatefulSet", "goverse-node", "node", env),
            _container_env_patch("Deployment", "goverse-gate", "gate", env)]


def run_kustomization(opts: RunOptions, overlay_relpath: str, components: Iterable[str] = ()) -> dict[str, Any]:
    """The kustomization of one run: the chosen overlay, moved into the run's namespace and labelled."""
    if opts.nodes < 0 or opts.gates < 0:
        raise ValueError("replica counts must be >= 0")
    if opts.bugs and opts.stack != "reference":
        raise ValueError("seeded bugs exist only in the reference stack")
    patches = [{"patch": goyaml.dump(etcd_members_patch(opts.etcd_members))}]
    patches += [{"patch": goyaml.dump(p)} for p in bugs_patches(opts.bugs)]
    if opts.pg_proxy:
        if opts.stack != "reference":
            raise ValueError("pg_proxy: the PostgreSQL fault proxy sidecar is wired on the reference stack only")
        from harness.platforms.kubernetes.pgproxy_wiring import node_patch

        patches.append({"patch": goyaml.dump(node_patch())})
    out: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": naming.namespace_for(opts.run_id),
        "resources": [overlay_relpath],
        "components": list(components),
        "labels": [{"pairs": naming.run_labels(opts.run_id), "includeSelectors": False, "includeTemplates": True}],
        "replicas": [
            {"name": "goverse-node", "count": opts.nodes},
            {"name": "goverse-gate", "count": opts.gates},
            {"name": "goverse-inspector", "count": 1 if opts.inspector else 0},
        ],
        "images": [image_entry(name, ref) for name, ref in sorted(opts.images.items())],
        "configMapGenerator": [{
            "name": "goverse-config", "behavior": "replace", "files": ["config.yaml"],
            "options": {"disableNameSuffixHash": True, "labels": {naming.COMPONENT_LABEL: "config"}},
        }],
        "patches": patches,
    }
    if not out["components"]:
        del out["components"]
    return out


def write_run_kustomization(run_dir: Path | str, opts: RunOptions, config: Mapping[str, Any]) -> Path:
    """Write ``<run_dir>/k8s/{kustomization,config}.yaml``; returns the directory to render."""
    out = Path(run_dir) / "k8s"
    out.mkdir(parents=True, exist_ok=True)
    overlay = overlay_dir(opts.platform, opts.stack)
    rel = os.path.relpath(overlay, out)
    with_backup = opts.backup and opts.platform not in OVERLAYS_WITH_BACKUP
    components = [os.path.relpath(manifests_dir() / BACKUP_COMPONENT, out)] if with_backup else []
    (out / "kustomization.yaml").write_text(goyaml.dump(run_kustomization(opts, rel, components)))
    (out / "config.yaml").write_text(goyaml.dump(dict(config)))
    return out


# --- post-render steps (pure) ---------------------------------------------------------------------


def fill_secrets(docs: list[dict[str, Any]], values: Mapping[str, str]) -> list[dict[str, Any]]:
    """Put generated credentials into the Secret templates (annotation ``goverse-harness/fill``).

    Why here and not in a file: a password must never be written to the run directory or the repo;
    it lives only in memory and in the cluster's Secret. Raises if a template asks for a missing value.
    """
    out = []
    for doc in docs:
        keys = (doc.get("metadata", {}).get("annotations") or {}).get(FILL_ANNOTATION)
        if doc.get("kind") == "Secret" and keys:
            doc = copy.deepcopy(doc)
            data = doc.setdefault("stringData", {})
            for key in (k.strip() for k in keys.split(",") if k.strip()):
                if key not in values:
                    raise KeyError(f"Secret {doc['metadata']['name']} needs a value for {key!r}")
                data[key] = values[key]
        out.append(doc)
    return out


PHASES: tuple[str, ...] = ("namespace", "setup", "infra", "schema", "app", "extras")


def phase_of(doc: Mapping[str, Any]) -> str:
    """Apply order: namespace; config, identities, policies and Services; etcd and PostgreSQL; the
    schema Job; the Goverse workloads; CRD-backed and optional extras. Waiting between phases avoids
    crash loops (a Goverse node exits when its tables are missing)."""
    kind = doc.get("kind", "")
    name = doc.get("metadata", {}).get("name", "")
    if kind == "Namespace":
        return "namespace"
    if kind in ("StatefulSet", "Deployment"):
        return "infra" if name in ("goverse-etcd", "goverse-postgres") else "app"
    if kind == "Job":
        return "schema"
    if kind in OPTIONAL_KINDS or kind in ("HorizontalPodAutoscaler", "Ingress"):
        return "extras"
    return "setup"


def by_phase(docs: Iterable[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    groups: dict[str, list[dict[str, Any]]] = {p: [] for p in PHASES}
    for doc in docs:
        groups[phase_of(doc)].append(doc)
    return [(p, groups[p]) for p in PHASES if groups[p]]
