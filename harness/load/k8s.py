"""In-cluster load generation (``manifests/components/locust``): the pieces the harness supplies at run
time and the way raw samples come back out of the pods.

Why stdout and pod logs: files written inside a worker pod vanish with it, and ``kubectl logs`` needs
no exec rights into the container. With ``GVH_SAMPLES=stdout`` the locustfile prints every sample row prefixed
``GVHS <process> `` (usage rows ``GVHU``, the shape start ``GVHT``); :func:`split_logs` turns a pod log
back into the very files :mod:`harness.load.samples` reads locally, so analysis, completeness checks and
reports are identical for both platforms.

Why the locustfile ConfigMap is built here: kustomize may not read files outside a kustomization's
directory, and a copy of the locustfile under ``manifests/`` would drift from ``loadtests/``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.load.generator import GeneratorSpec, loadtests_dir

LOCUSTFILE_CONFIGMAP = "goverse-locustfile"
CONFIG_CONFIGMAP = "goverse-locust-config"
GATE_SERVICE_URL = "http://goverse-gate:8080"
PREFIXES = {"GVHS": "samples-{}.jsonl", "GVHU": "usage-{}.jsonl", "GVHT": "shape-{}.json"}


def component_dir() -> Path:
    from harness.platforms.kubernetes.render import manifests_dir

    return manifests_dir() / "components" / "locust"


def locustfile_configmap(namespace: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """ConfigMap ``goverse-locustfile`` with ``locustfile.py`` and ``shapes.py`` from ``loadtests/``."""
    d = loadtests_dir()
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": LOCUSTFILE_CONFIGMAP, "namespace": namespace,
                     "labels": {"app.kubernetes.io/component": "locust", **(labels or {})}},
        "data": {name: (d / name).read_text(encoding="utf-8") for name in ("locustfile.py", "shapes.py")},
    }


def config_data(spec: GeneratorSpec) -> dict[str, str]:
    """Data of ConfigMap ``goverse-locust-config`` for a run: the locustfile's options, samples to stdout.
    In the cluster the gates are reached through their Service unless ``spec.gates`` names others."""
    env = spec.env(Path("/unused"))
    env["GVH_SAMPLES"] = "stdout"
    if not any(u.startswith("http://goverse-gate") for u in spec.gates.values()):
        env["GVH_GATES"] = f"goverse-gate={GATE_SERVICE_URL}"
    env.update({"GVH_CPU_MONITOR_INTERVAL": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"})
    return env


def split_logs(log_text: str, out_dir: Path) -> dict[str, int]:
    """Write the ``GVH*`` lines of one or more pod logs as local sample/usage/shape files in ``out_dir``;
    other lines (locust's own logging) are ignored. Returns rows written per file name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[str]] = defaultdict(list)
    for line in log_text.splitlines():
        tag, _, rest = line.partition(" ")
        pattern = PREFIXES.get(tag)
        if pattern is None:
            continue
        proc, _, payload = rest.partition(" ")
        if not proc or not payload:
            continue
        try:
            json.loads(payload)
        except json.JSONDecodeError:
            continue  # a torn line at the end of a log: completeness() will notice the missing rows
        name = pattern.format(proc.split("-", 1)[-1] if tag == "GVHT" else proc)
        rows[name].append(payload)
    for name, lines in rows.items():
        if name.startswith("shape-"):
            (out_dir / name).write_text(lines[0], encoding="utf-8")
        else:
            with open(out_dir / name, "a", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
    return {k: len(v) for k, v in rows.items()}
