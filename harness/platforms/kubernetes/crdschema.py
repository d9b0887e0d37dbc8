"""Validate custom resources (Chaos Mesh experiments) against their CRD's openAPIV3Schema, offline.

Why: a Chaos Mesh CR with a typo is rejected by the API server only when a scenario runs on a cluster,
i.e. in CI an hour later; here it is caught in milliseconds. The API server prunes or (with
``fieldValidation=Strict``, which server-side apply uses) rejects unknown fields, so this validator is
strict too: an object schema with ``properties`` admits no other key unless the CRD says
``x-kubernetes-preserve-unknown-fields``.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CHAOS_MESH_CRDS_ENV = "GVH_CHAOS_MESH_CRDS"


def default_crd_dir() -> Path:
    """``tests/data/chaos-mesh-crds-v2.8.3`` in this repository (``GVH_CHAOS_MESH_CRDS`` overrides)."""
    env = os.environ.get(CHAOS_MESH_CRDS_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "tests" / "data" / "chaos-mesh-crds-v2.8.3"


def _strict(schema: Any) -> Any:
    """OpenAPI v3 structural schema -> JSON Schema with the API server's unknown-field strictness."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.cache
def load_crds(crd_dir: str) -> dict[tuple[str, str], dict[str, Any]]:
    """``(apiVersion, kind)`` -> strict JSON schema, for every served version of every CRD in the dir."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(Path(crd_dir).glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for ver in crd["spec"]["versions"]:
                if not ver.get("served", True):
                    continue
                schema = copy.deepcopy(ver["schema"]["openAPIV3Schema"])
                schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                out[(f"{group}/{ver['name']}", kind)] = _strict(schema)
    if not out:
        raise FileNotFoundError(f"no CustomResourceDefinition found in {crd_dir}")
    return out


def errors(cr: Mapping[str, Any], crd_dir: Path | str | None = None) -> list[str]:
    """Schema errors of ``cr``; an unknown apiVersion/kind is itself an error."""
    schemas = load_crds(str(crd_dir or default_crd_dir()))
    key = (cr.get("apiVersion", ""), cr.get("kind", ""))
    if key not in schemas:
        return [f"no CRD for {key[0]} {key[1]} (known: {sorted(k for _, k in schemas)})"]
    validator = jsonschema.Draft7Validator(schemas[key])
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in validator.iter_errors(cr)]
