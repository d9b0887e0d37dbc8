"""Run the static checks: gather the inputs (Dockerfile, .dockerignore, rendered overlays) once, then
judge every selected check over them.

Why inputs are gathered apart from judging: rendering six overlays with ``kubectl kustomize`` is the
only slow and fallible step; doing it once keeps the suite fast, and when it fails (no kubectl, a
broken kustomization) every manifest check says ``unknown`` with the reason — never a pass over
nothing. A crashing judge is ``unknown`` too, with the exception in the evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.conformance import dockerfile as df
from harness.conformance.catalogue import get
from harness.conformance.manifests import MANIFEST_CHECKS, judge_overlays
from harness.conformance.model import CheckSpec, Judgement, Result, Verdict, unknown

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DOCKERFILE = REPO_ROOT / "docker" / "refstack.Dockerfile"


@dataclass
class StaticInputs:
    """What the static checks look at; ``*_error`` says why something could not be read."""

    dockerfile: Path | None = None
    dockerfile_text: str | None = None
    dockerfile_error: str | None = None
    ignore_path: Path | None = None
    ignore_text: str | None = None
    overlays: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    render_errors: dict[str, str] = field(default_factory=dict)
    # why the Dockerfile / manifest checks have nothing of the system under test to judge (no
    # --dockerfile / --manifests given for a stack other than this repository's reference stack)
    dockerfile_na: str | None = None
    manifests_na: str | None = None


def load_manifests(paths: Iterable[Path]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """The system under test's own manifests: each YAML file (a directory: its ``*.yaml``/``*.yml``,
    recursively) read as a multi-document stream; ``{path: docs}`` and ``{path: error}``."""
    ok: dict[str, list[dict[str, Any]]] = {}
    errors: dict[str, str] = {}
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml")) if root.is_dir() else [root]
        if root.is_dir() and not files:
            errors[str(root)] = "no *.yaml or *.yml file in this directory"
        for f in files:
            try:
                docs = [d for d in yaml.safe_load_all(f.read_text(encoding="utf-8")) if isinstance(d, dict)]
            except (OSError, yaml.YAMLError) as exc:
                errors[str(f)] = f"{type(exc).__name__}: {exc}"
                continue
            ok[str(f)] = docs
    return ok, errors


def all_overlays() -> list[str]:
    from harness.platforms.kubernetes import render

    return [f"{p}/{s}" for p in render.PLATFORM_OVERLAYS for s in render.STACKS]


def render_overlays(names: Iterable[str]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """``{"production/reference": docs}`` and ``{name: error}`` for those that failed to render."""
    from harness.platforms.kubernetes import render

    ok: dict[str, list[dict[str, Any]]] = {}
    errors: dict[str, str] = {}
    for name in names:
        platform, _, stack = name.partition("/")
        try:
            ok[name] = render.kustomize_build(render.overlay_dir(platform, stack))
        except Exception as exc:  # noqa: BLE001 - reported as unknown with the reason
            errors[name] = f"{type(exc).__name__}: {exc}"
    return ok, errors


def load_inputs(dockerfile: Path | None = None, context: Path | None = None,
                overlays: Iterable[str] | None = None, render: bool = True,
                manifests: Iterable[Path] | None = None, stack: str = "reference") -> StaticInputs:
    """Read the Dockerfile and its .dockerignore; read ``manifests`` (the system under test's own)
    or else render this repository's overlays, unless ``render`` is false (no manifest check
    selected: kubectl is then not needed). This repository's Dockerfile and overlays are judged by
    default only for the reference stack: for another stack they are not the system under test, so
    without ``dockerfile`` / ``manifests`` those checks are not applicable, with the reason."""
    manifests = list(manifests or [])
    if dockerfile is None and stack != "reference":
        inputs = StaticInputs(dockerfile_na=f"stack={stack}: give the system under test's Dockerfile with "
                                            "--dockerfile (this repository's is the reference stack's)")
    else:
        inputs = StaticInputs(dockerfile=dockerfile or DEFAULT_DOCKERFILE)
    if render and manifests:
        inputs.overlays, inputs.render_errors = load_manifests(manifests)
    elif render and stack != "reference" and not overlays:
        inputs.manifests_na = (f"stack={stack}: give the system under test's manifests with --manifests (this "
                               "repository's overlays are the harness's own deployment of it)")
    elif render:
        inputs.overlays, inputs.render_errors = render_overlays(list(overlays) if overlays else all_overlays())
    if inputs.dockerfile is None:
        return inputs
    try:
        inputs.dockerfile_text = inputs.dockerfile.read_text(encoding="utf-8")
    except OSError as exc:
        inputs.dockerfile_error = f"cannot read {inputs.dockerfile}: {exc.strerror}"
    ignore = df.find_dockerignore(inputs.dockerfile, context or REPO_ROOT)
    if ignore is not None:
        inputs.ignore_path = ignore
        inputs.ignore_text = ignore.read_text(encoding="utf-8")
    return inputs


def _dockerfile_judge(fn: Callable[[str], Judgement]) -> Callable[[StaticInputs], Judgement]:
    def run(inputs: StaticInputs) -> Judgement:
        if inputs.dockerfile_na:
            return Judgement(Verdict.NOT_APPLICABLE, inputs.dockerfile_na)
        if inputs.dockerfile_text is None:
            return unknown(inputs.dockerfile_error or "no Dockerfile given")
        j = fn(inputs.dockerfile_text)
        return Judgement(j.verdict, f"{_rel(inputs.dockerfile)}: {j.evidence}", j.data)
    return run


def _dockerignore(inputs: StaticInputs) -> Judgement:
    if inputs.dockerfile_na:
        return Judgement(Verdict.NOT_APPLICABLE, inputs.dockerfile_na)
    if inputs.dockerfile_text is None:
        return unknown(inputs.dockerfile_error or "no Dockerfile given")
    name = _rel(inputs.ignore_path) if inputs.ignore_path else ".dockerignore"
    return df.check_dockerignore(inputs.dockerfile_text, inputs.ignore_text, name)


def _rel(path: Path | None) -> str:
    if path is None:
        return "?"
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _manifest_judge(check_id: str) -> Callable[[StaticInputs], Judgement]:
    check = MANIFEST_CHECKS[check_id]

    def run(inputs: StaticInputs) -> Judgement:
        if inputs.manifests_na:
            return Judgement(Verdict.NOT_APPLICABLE, inputs.manifests_na)
        if inputs.render_errors:
            first = next(iter(inputs.render_errors.items()))
            return unknown(f"{len(inputs.render_errors)} overlay(s)/manifest(s) could not be read, e.g. {first[0]}: "
                           f"{first[1]}", render_errors=inputs.render_errors)
        if not inputs.overlays:
            return unknown("no overlays were rendered")
        return judge_overlays(check, inputs.overlays)
    return run


STATIC_RUNNERS: dict[str, Callable[[StaticInputs], Judgement]] = {
    "1.1-multi-stage-build": _dockerfile_judge(df.check_multi_stage),
    "1.1-non-root-user": _dockerfile_judge(df.check_non_root),
    "1.2-minimal-base": _dockerfile_judge(df.check_minimal_base),
    "1.2-dockerignore": _dockerignore,
    **{cid: _manifest_judge(cid) for cid in MANIFEST_CHECKS},
}


def run_check(spec: CheckSpec, inputs: StaticInputs) -> Result:
    """One static check; a crash inside the judge is ``unknown`` naming the exception."""
    try:
        j = STATIC_RUNNERS[spec.id](inputs)
    except Exception as exc:  # noqa: BLE001 - a broken judge must never look like a pass
        j = unknown(f"check raised {type(exc).__name__}: {exc}")
    return Result.of(spec, j.verdict, j.evidence, j.data)


def run_static(check_ids: Iterable[str], inputs: StaticInputs) -> list[Result]:
    return [run_check(get(cid), inputs) for cid in check_ids]
