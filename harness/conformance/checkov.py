"""Optional: checkov's findings over the same rendered overlays and Dockerfile, shown beside ours.

Why beside and not merged: checkov's policies are generic (image digests, pull policy Always, high
UIDs) and some contradict deliberate choices of the harness (side-loaded images need IfNotPresent), so
they inform the reader without deciding the conformance verdict. Checkov cannot share a virtualenv
with pytest 9 (machine facts), so it is an external binary: ``--checkov PATH``, ``GVH_CHECKOV`` or
``checkov`` on PATH; it runs with ``--skip-download`` (no calls home).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Finding:
    source: str  # overlay name ("kind/reference") or the Dockerfile's name
    check_id: str
    check_name: str
    resource: str


def find_binary(explicit: str | None = None) -> str | None:
    for candidate in (explicit, os.environ.get("GVH_CHECKOV"), shutil.which("checkov")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def parse_output(text: str, sources: Mapping[str, str]) -> list[Finding]:
    """checkov ``-o json`` (one report or a list of them) -> failed checks; ``sources`` maps a file's
    basename to the name shown (checkov reports odd relative paths)."""
    doc = json.loads(text) if text.strip() else []
    reports = doc if isinstance(doc, list) else [doc]
    out = []
    for rep in reports:
        for f in ((rep or {}).get("results") or {}).get("failed_checks") or []:
            base = Path(str(f.get("file_path", ""))).name
            out.append(Finding(sources.get(base, base), str(f.get("check_id")), str(f.get("check_name", "")),
                               str(f.get("resource", ""))))
    return out


def run(binary: str, overlays: Mapping[str, Iterable[Mapping[str, Any]]], dockerfile: Path | None,
        workdir: Path, timeout: float = 300.0) -> tuple[list[Finding], str | None]:
    """Write each overlay's documents to ``workdir`` and run checkov once over them (and the
    Dockerfile); returns (findings, error)."""
    workdir.mkdir(parents=True, exist_ok=True)
    sources: dict[str, str] = {}
    argv = [binary]
    for name, docs in sorted(overlays.items()):
        path = workdir / f"{name.replace('/', '-')}.yaml"
        path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False), encoding="utf-8")
        sources[path.name] = name
        argv += ["-f", str(path)]
    frameworks = ["kubernetes"]
    if dockerfile is not None and dockerfile.is_file():
        sources[dockerfile.name] = dockerfile.name
        argv += ["-f", str(dockerfile)]
        frameworks.append("dockerfile")
    argv += ["--framework", *frameworks, "-o", "json", "--quiet", "--compact", "--skip-download"]
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"checkov could not run: {exc}"
    try:
        return parse_output(res.stdout, sources), None
    except ValueError:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
        return [], f"checkov exited {res.returncode} without JSON: {tail[0][:200]}"


def render(findings: list[Finding], error: str | None = None) -> str:
    """Findings grouped by checkov check id: how many resources, in which sources."""
    if error:
        return f"checkov: {error}"
    if not findings:
        return "checkov: no failed checks"
    by_id: dict[str, list[Finding]] = {}
    for f in findings:
        by_id.setdefault(f.check_id, []).append(f)
    lines = [f"checkov (beside ours, not part of the verdicts): {len(findings)} failed checks, {len(by_id)} policies"]
    for cid, items in sorted(by_id.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        sources = sorted({f.source for f in items})
        resources = sorted({f.resource.split(".")[-1] or f.resource for f in items})
        where = f"in {', '.join(sources)}: {', '.join(resources)}"
        lines.append(f"  {cid:<13} {len(items):3d}× {items[0].check_name[:70]}")
        lines.append(f"                {where[:100]}{' …' if len(where) > 100 else ''}")
    return "\n".join(lines)
