"""Server-side apply of rendered documents with the official client's DynamicClient.

Why server-side apply: it is what ``kubectl apply --server-side`` does, it merges with what other
managers (HPA, Chaos Mesh) own instead of overwriting it, it has no 256 KiB annotation limit (the
last-applied annotation of client-side apply), and with ``fieldValidation=Strict`` the API server
rejects unknown fields instead of silently dropping them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from harness.platforms.kubernetes.naming import FIELD_MANAGER


def dynamic(api: Any) -> Any:
    from kubernetes.dynamic import DynamicClient

    return DynamicClient(api)


def resource(dyn: Any, api_version: str, kind: str) -> Any:
    return dyn.resources.get(api_version=api_version, kind=kind)


def has_kind(dyn: Any, api_version: str, kind: str) -> bool:
    """Whether the API server serves this kind (e.g. a CRD such as PodChaos is installed)."""
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    try:
        resource(dyn, api_version, kind)
    except ResourceNotFoundError:
        return False
    return True


def apply(dyn: Any, doc: Mapping[str, Any]) -> dict[str, Any]:
    res = resource(dyn, doc["apiVersion"], doc["kind"])
    meta = doc["metadata"]
    out = res.server_side_apply(body=dict(doc), name=meta["name"], namespace=meta.get("namespace"),
                                field_manager=FIELD_MANAGER, force_conflicts=True,
                                query_params=[("fieldValidation", "Strict")])
    return out.to_dict()


def apply_all(dyn: Any, docs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [apply(dyn, d) for d in docs]


def delete(dyn: Any, api_version: str, kind: str, name: str, namespace: str | None = None,
           grace_period: int | None = None, propagation: str = "Background") -> bool:
    """Delete; False if it was already gone."""
    from kubernetes.dynamic.exceptions import NotFoundError

    res = resource(dyn, api_version, kind)
    body: dict[str, str | int] = {"propagationPolicy": propagation}
    if grace_period is not None:
        body["gracePeriodSeconds"] = grace_period
    try:
        res.delete(name=name, namespace=namespace, body=body)
    except NotFoundError:
        return False
    return True


def patch_merge(dyn: Any, api_version: str, kind: str, name: str, namespace: str | None,
                body: Mapping[str, Any]) -> dict[str, Any]:
    res = resource(dyn, api_version, kind)
    return res.patch(name=name, namespace=namespace, body=dict(body),
                     content_type="application/merge-patch+json").to_dict()
