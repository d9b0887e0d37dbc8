"""Connecting to a cluster with the official ``kubernetes`` client (no kubectl needed at run time)."""

from __future__ import annotations

from typing import Any

from harness.platforms.base import PlatformError


def contexts(kubeconfig: str | None) -> tuple[list[str], str | None]:
    """(all context names, current context) of a kubeconfig file (None: the default one)."""
    from kubernetes import config

    try:
        all_ctx, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except Exception as exc:  # noqa: BLE001 - a missing/broken kubeconfig is a setup error, said plainly
        raise PlatformError(f"cannot read kubeconfig {kubeconfig or '~/.kube/config'}: {exc}") from exc
    return [c["name"] for c in all_ctx], (active or {}).get("name")


def api_client(kubeconfig: str | None, context: str) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=kubeconfig, context=context)


def server_version(api: Any, timeout: float = 5.0) -> str:
    """``v1.31.0``; raises ``PlatformError`` when the API server does not answer."""
    from kubernetes import client

    try:
        info = client.VersionApi(api).get_code(_request_timeout=timeout)
    except Exception as exc:  # noqa: BLE001
        raise PlatformError(f"the Kubernetes API server does not answer: {exc}") from exc
    return str(info.git_version)


def reachable(kubeconfig: str | None = None, context: str | None = None) -> tuple[bool, str]:
    """Whether a cluster answers, and a one-line reason (used to skip ``k8s`` tests with a reason)."""
    try:
        names, current = contexts(kubeconfig)
        ctx = context or current
        if not ctx:
            return False, "no current kubeconfig context"
        return True, f"{ctx}: {server_version(api_client(kubeconfig, ctx))}"
    except PlatformError as exc:
        return False, str(exc)
    except Exception as exc:  # noqa: BLE001
        return False, f"{type(exc).__name__}: {exc}"
