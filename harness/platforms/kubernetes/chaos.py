"""Chaos Mesh experiments as data: builders, selector scoping, and reading their status.

Why pure functions over dicts: an experiment is data the harness must be able to show (history,
run dir) and check before it touches a cluster — against the CRD schemas (``crdschema``), and
against the rule that chaos never leaves the run's namespace. ``scope`` is that rule: it rewrites a
CR so that every pod selector in it (``selector`` and NetworkChaos ``target``) is confined to the
run's namespace *and* carries the run's label, and refuses what could reach further (node selectors,
explicit pods elsewhere, external targets). ``check_scoped`` re-verifies the result right before apply.

Status reading follows Chaos Mesh's conditions: ``AllInjected`` / ``AllRecovered`` / ``Selected`` /
``Paused`` (anchors §3.1).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.platforms.kubernetes import naming

API_VERSION = "chaos-mesh.org/v1alpha1"
KINDS = ("PodChaos", "NetworkChaos", "StressChaos", "IOChaos")
PAUSE_ANNOTATION = "experiment.chaos-mesh.org/pause"
FORCE_CLEAN_ANNOTATION = "chaos-mesh.chaos-mesh.org/cleanFinalizer"
MODES = ("one", "all", "fixed", "fixed-percent", "random-max-percent")
_DURATION = re.compile(r"^\d+(\.\d+)?(ns|us|ms|s|m|h)$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ScopeError(ValueError):
    """The experiment could reach beyond the run's namespace and labels."""


@dataclass(frozen=True)
class PodSelector:
    """Which pods, always inside one namespace. ``pods`` names pods; ``labels`` selects by label."""

    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    pods: tuple[str, ...] = ()

    def spec(self) -> dict[str, Any]:
        sel: dict[str, Any] = {"namespaces": [self.namespace]}
        if self.labels:
            sel["labelSelectors"] = dict(self.labels)
        if self.pods:
            sel["pods"] = {self.namespace: list(self.pods)}
        return sel


def duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    if seconds <= 0:
        raise ValueError("a chaos duration must be positive")
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{round(seconds * 1000)}ms"


def _cr(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    if not _NAME.match(name) or len(name) > 63:
        raise ValueError(f"invalid chaos object name {name!r}")
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name, "namespace": namespace},
            "spec": {k: v for k, v in spec.items() if v is not None}}


def _mode(mode: str, value: str | None) -> dict[str, Any]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode != "one" and mode != "all" and not value:
        raise ValueError(f"mode {mode!r} needs a value")
    return {"mode": mode, "value": value}


# --- builders ---------------------------------------------------------------------------------------


def pod_chaos(name: str, sel: PodSelector, action: str = "pod-kill", *, mode: str = "one",
              value: str | None = None, duration_s: float | None = None, grace_period: int | None = None,
              container_names: Iterable[str] = ()) -> dict[str, Any]:
    """pod-kill (delete the pod), pod-failure (replace its image with pause for ``duration``), or
    container-kill (kill named containers)."""
    if action not in ("pod-kill", "pod-failure", "container-kill"):
        raise ValueError(f"unknown PodChaos action {action!r}")
    if action == "pod-failure" and duration_s is None:
        raise ValueError("pod-failure needs a duration")
    if action == "container-kill" and not list(container_names):
        raise ValueError("container-kill needs container names")
    return _cr("PodChaos", name, sel.namespace, {
        "action": action, **_mode(mode, value), "selector": sel.spec(), "duration": duration(duration_s),
        "gracePeriod": grace_period, "containerNames": list(container_names) or None,
    })


def network_partition(name: str, sel: PodSelector, target: PodSelector, *, direction: str = "both",
                      mode: str = "all", target_mode: str = "all",
                      duration_s: float | None = None) -> dict[str, Any]:
    """Drop traffic between ``sel`` and ``target``: ``to`` (sel -> target), ``from`` or ``both``."""
    if direction not in ("to", "from", "both"):
        raise ValueError(f"direction must be to, from or both, got {direction!r}")
    return _cr("NetworkChaos", name, sel.namespace, {
        "action": "partition", **_mode(mode, None), "selector": sel.spec(), "direction": direction,
        "target": {"mode": target_mode, "selector": target.spec()}, "duration": duration(duration_s),
    })


def _netem_target(target: PodSelector | None) -> dict[str, Any] | None:
    return {"mode": "all", "selector": target.spec()} if target else None


def network_delay(name: str, sel: PodSelector, latency_ms: int, *, jitter_ms: int = 0,
                  target: PodSelector | None = None, direction: str = "to", mode: str = "all",
                  duration_s: float | None = None) -> dict[str, Any]:
    if latency_ms <= 0 or jitter_ms < 0:
        raise ValueError("latency must be > 0 ms and jitter >= 0 ms")
    delay = {"latency": f"{latency_ms}ms", "jitter": f"{jitter_ms}ms" if jitter_ms else None}
    return _cr("NetworkChaos", name, sel.namespace, {
        "action": "delay", **_mode(mode, None), "selector": sel.spec(), "direction": direction,
        "target": _netem_target(target), "delay": {k: v for k, v in delay.items() if v},
        "duration": duration(duration_s),
    })


def network_loss(name: str, sel: PodSelector, loss_pct: float, *, target: PodSelector | None = None,
                 direction: str = "to", mode: str = "all", duration_s: float | None = None) -> dict[str, Any]:
    if not 0 < loss_pct <= 100:
        raise ValueError("loss must be in (0, 100] percent")
    return _cr("NetworkChaos", name, sel.namespace, {
        "action": "loss", **_mode(mode, None), "selector": sel.spec(), "direction": direction,
        "target": _netem_target(target), "loss": {"loss": f"{loss_pct:g}"}, "duration": duration(duration_s),
    })


def stress_cpu(name: str, sel: PodSelector, *, workers: int = 1, load: int = 100, mode: str = "one",
               duration_s: float | None = None) -> dict[str, Any]:
    if not 1 <= workers <= 8192 or not 0 <= load <= 100:
        raise ValueError("cpu stress needs 1..8192 workers and a load of 0..100 %")
    return _cr("StressChaos", name, sel.namespace, {
        **_mode(mode, None), "selector": sel.spec(), "stressors": {"cpu": {"workers": workers, "load": load}},
        "duration": duration(duration_s),
    })


def stress_memory(name: str, sel: PodSelector, *, size: str = "256MB", workers: int = 1, mode: str = "one",
                  duration_s: float | None = None) -> dict[str, Any]:
    if not re.fullmatch(r"\d+(B|KB|MB|GB|%)", size):
        raise ValueError(f"memory size like 256MB or 80%, got {size!r}")
    return _cr("StressChaos", name, sel.namespace, {
        **_mode(mode, None), "selector": sel.spec(),
        "stressors": {"memory": {"workers": workers, "size": size}}, "duration": duration(duration_s),
    })


def io_chaos(name: str, sel: PodSelector, volume_path: str, action: str = "latency", *, delay_ms: int = 100,
             errno: int = 5, path: str | None = None, percent: int = 100, methods: Iterable[str] = (),
             container_names: Iterable[str] = (), mode: str = "one",
             duration_s: float | None = None) -> dict[str, Any]:
    """I/O latency (``delay``) or faults (``errno``, default EIO) under ``volume_path`` (a volume mount)."""
    if action not in ("latency", "fault"):
        raise ValueError(f"IOChaos action must be latency or fault, got {action!r}")
    if not volume_path.startswith("/") or not 0 < percent <= 100:
        raise ValueError("volume_path must be absolute and percent in 1..100")
    return _cr("IOChaos", name, sel.namespace, {
        "action": action, **_mode(mode, None), "selector": sel.spec(), "volumePath": volume_path,
        "path": path, "percent": percent, "methods": list(methods) or None,
        "delay": f"{delay_ms}ms" if action == "latency" else None,
        "errno": errno if action == "fault" else None,
        "containerNames": list(container_names) or None, "duration": duration(duration_s),
    })


# --- scoping ----------------------------------------------------------------------------------------

_FORBIDDEN_SELECTOR_KEYS = ("nodes", "nodeSelectors")


def _scope_selector(sel: Mapping[str, Any] | None, namespace: str, labels: Mapping[str, str],
                    where: str) -> dict[str, Any]:
    sel = dict(sel or {})
    for key in _FORBIDDEN_SELECTOR_KEYS:
        if sel.get(key):
            raise ScopeError(f"{where}: selecting by {key} can hit pods of other namespaces")
    namespaces = sel.get("namespaces") or []
    if any(ns != namespace for ns in namespaces):
        raise ScopeError(f"{where}: namespaces {namespaces} leave the run's namespace {namespace}")
    pods = sel.get("pods") or {}
    if any(ns != namespace for ns in pods):
        raise ScopeError(f"{where}: pods in namespaces {sorted(pods)} outside {namespace}")
    clash = {k: v for k, v in labels.items() if k in (sel.get("labelSelectors") or {})
             and sel["labelSelectors"][k] != v}
    if clash:
        raise ScopeError(f"{where}: label selector contradicts the run's labels {clash}")
    sel["namespaces"] = [namespace]
    sel["labelSelectors"] = {**(sel.get("labelSelectors") or {}), **labels}
    return sel


def scope(cr: Mapping[str, Any], namespace: str, run_id: str) -> dict[str, Any]:
    """A copy of ``cr`` that can only ever select the run's pods; raises ``ScopeError`` otherwise."""
    if cr.get("apiVersion") != API_VERSION or cr.get("kind") not in KINDS:
        raise ScopeError(f"not a supported Chaos Mesh experiment: {cr.get('apiVersion')} {cr.get('kind')}")
    out = copy.deepcopy(dict(cr))
    spec = out.setdefault("spec", {})
    pod_labels = {naming.RUN_LABEL: naming.check_run_id(run_id)}
    if spec.get("externalTargets"):
        raise ScopeError("externalTargets reach outside the cluster; not allowed")
    spec["selector"] = _scope_selector(spec.get("selector"), namespace, pod_labels, "selector")
    if spec.get("target"):
        spec["target"] = dict(spec["target"])
        spec["target"]["selector"] = _scope_selector(spec["target"].get("selector"), namespace, pod_labels,
                                                     "target.selector")
    meta = out.setdefault("metadata", {})
    meta["namespace"] = namespace
    meta["labels"] = {**(meta.get("labels") or {}), **naming.run_labels(run_id)}
    return out


def rehome(cr: Mapping[str, Any], old: str, new: str) -> dict[str, Any]:
    """Move a catalogue experiment written for namespace ``old`` (the overlays' ``goverse``) into
    ``new``, exactly as kustomize moves the stack; other namespaces are left for ``scope`` to refuse."""
    out = copy.deepcopy(dict(cr))
    if out.get("metadata", {}).get("namespace") == old:
        out["metadata"]["namespace"] = new
    spec = out.get("spec", {})
    for sel in (spec.get("selector"), (spec.get("target") or {}).get("selector")):
        if not sel:
            continue
        if "namespaces" in sel:
            sel["namespaces"] = [new if ns == old else ns for ns in sel["namespaces"]]
        if old in (sel.get("pods") or {}):
            sel["pods"][new] = sel["pods"].pop(old)
    return out


def check_scoped(cr: Mapping[str, Any], namespace: str, run_id: str) -> list[str]:
    """What, if anything, lets ``cr`` escape the run (empty list: safe to apply)."""
    problems = []
    spec = cr.get("spec", {})
    if cr.get("metadata", {}).get("namespace") != namespace:
        problems.append(f"metadata.namespace is not {namespace}")
    if (cr.get("metadata", {}).get("labels") or {}).get(naming.RUN_LABEL) != run_id:
        problems.append("the experiment itself lacks the run label")
    if spec.get("externalTargets"):
        problems.append("externalTargets set")
    sels = [("selector", spec.get("selector"))]
    if spec.get("target"):
        sels.append(("target.selector", spec["target"].get("selector")))
    for where, sel in sels:
        sel = sel or {}
        if sel.get("namespaces") != [namespace]:
            problems.append(f"{where}.namespaces is {sel.get('namespaces')}, not [{namespace}]")
        if (sel.get("labelSelectors") or {}).get(naming.RUN_LABEL) != run_id:
            problems.append(f"{where} does not require {naming.RUN_LABEL}={run_id}")
        if any(sel.get(k) for k in _FORBIDDEN_SELECTOR_KEYS):
            problems.append(f"{where} selects by node")
        if any(ns != namespace for ns in (sel.get("pods") or {})):
            problems.append(f"{where}.pods names another namespace")
    return problems


def semantic_errors(cr: Mapping[str, Any]) -> list[str]:
    """Rules Chaos Mesh's admission webhook enforces but its CRD schema does not (so the schema check
    alone would pass them)."""
    spec = cr.get("spec", {})
    out = []
    if spec.get("mode") in ("fixed", "fixed-percent", "random-max-percent") and not spec.get("value"):
        out.append(f"mode {spec['mode']} needs spec.value")
    if spec.get("duration") and not _DURATION.match(spec["duration"]):
        out.append(f"duration {spec['duration']!r} is not a Go duration")
    kind, action = cr.get("kind"), spec.get("action")
    if kind == "PodChaos" and action == "pod-failure" and not spec.get("duration"):
        out.append("pod-failure needs a duration")
    if kind == "PodChaos" and action == "container-kill" and not spec.get("containerNames"):
        out.append("container-kill needs containerNames")
    if kind == "NetworkChaos" and action == "partition" and not spec.get("target"):
        out.append("a partition needs a target")
    if kind == "NetworkChaos" and action == "loss":
        try:
            float(spec.get("loss", {}).get("loss", ""))
        except ValueError:
            out.append("loss.loss must be a number (percent)")
    if kind == "StressChaos" and not spec.get("stressors") and not spec.get("stressngStressors"):
        out.append("StressChaos needs stressors")
    return out


# --- status -----------------------------------------------------------------------------------------


def conditions(obj: Mapping[str, Any] | None) -> dict[str, bool]:
    """``{"AllInjected": True, ...}`` from an experiment's status (missing status: no conditions)."""
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return {c["type"]: str(c.get("status")) == "True" for c in conds if "type" in c}


def is_injected(obj: Mapping[str, Any] | None) -> bool:
    c = conditions(obj)
    return c.get("Selected", False) and c.get("AllInjected", False)


def is_recovered(obj: Mapping[str, Any] | None) -> bool:
    return conditions(obj).get("AllRecovered", False)


def failures(obj: Mapping[str, Any] | None) -> list[str]:
    """Messages of failed Apply/Recover events in the container records (why injection is stuck)."""
    records = (((obj or {}).get("status") or {}).get("experiment") or {}).get("containerRecords") or []
    return [f"{r.get('id')}: {e.get('operation')} failed: {e.get('message', '')}"
            for r in records for e in r.get("events") or [] if e.get("type") == "Failed"]


def counts(obj: Mapping[str, Any] | None) -> dict[str, int]:
    records = (((obj or {}).get("status") or {}).get("experiment") or {}).get("containerRecords") or []
    return {"targets": len(records),
            "injected": sum(int(r.get("injectedCount", 0)) for r in records),
            "recovered": sum(int(r.get("recoveredCount", 0)) for r in records)}


# --- the catalogue of experiment files -------------------------------------------------------------


def experiments_dir() -> Path:
    from harness.platforms.kubernetes.render import manifests_dir

    return manifests_dir() / "chaos"


def load_experiments(directory: Path | None = None) -> dict[str, dict[str, Any]]:
    """``manifests/chaos/*.yaml`` by file stem (each file holds one experiment)."""
    d = directory or experiments_dir()
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(d.glob("*.yaml"))}
