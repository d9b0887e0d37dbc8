"""Strict schema validation of Kubernetes objects for a given server version, fast.

Why not just ``kubernetes_validate.validate``: it re-reads and re-parses the schema files on every
call (~30 ms per document), and the test-suite validates every rendered document of six overlays
against nine Kubernetes versions. This builds one validator per (version, kind) from the same bundled
schemas and reuses it; the verdicts are kubernetes-validate's.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import jsonschema
import kubernetes_validate.utils as kvu
from referencing import Registry, Resource

SUPPORTED_VERSIONS: tuple[str, ...] = tuple(f"1.{m}" for m in range(29, 38))


class NoSchema(LookupError):
    """The bundled schemas do not know this kind (a CRD such as ServiceMonitor)."""


@functools.cache
def _definitions(version: str, strict: bool) -> Registry:
    schema_dir = f"v{version}.0-local" + ("-strict" if strict else "")
    defs = kvu.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", version)
    return Resource.from_contents(defs) @ Registry()


@functools.cache
def _validator(version: str, kind: str, api_version: str, strict: bool) -> jsonschema.Validator:
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema_dir = f"v{version}.0-local" + ("-strict" if strict else "")
    try:
        schema = kvu.schema_contents(f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{group_version}.json",
                                     version)
    except FileNotFoundError as exc:
        raise NoSchema(f"no schema for {api_version} {kind} in Kubernetes {version}") from exc
    registry = Resource.from_contents(schema) @ _definitions(version, strict)
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def errors(doc: Mapping[str, Any], version: str, strict: bool = True) -> list[str]:
    """Validation errors of ``doc`` for Kubernetes ``version`` (``1.29``); raises ``NoSchema``."""
    v = _validator(version, doc["kind"], doc["apiVersion"], strict)
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in v.iter_errors(doc)]
