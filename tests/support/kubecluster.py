"""The Kubernetes tests' cluster: find a safe one or skip, make the platform, deploy a stack that is torn
down (namespace gone) however the module ends.

Why one module: every k8s-marked test file (cluster, operations, node access, the Helm chart) needs the
same guard — a reachable cluster whose context passes ``guard.check_context`` (a kind/k3d one, or one
named in ``GVH_ALLOW_CONTEXT``), else an explained skip — and the same ``GVH_KUBE_CONTEXT``/``GVH_IMAGE``
reading; copies of it drift (one file skipping where another would deploy onto a production context).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.platforms.base import StackSpec
from harness.platforms.kubernetes import apply as k8s
from harness.platforms.kubernetes import client, guard

DEFAULT_IMAGE = "goverse-harness/refstack:dev"


def cluster_or_skip() -> str:
    """The context to use (``GVH_KUBE_CONTEXT`` or the current one); skips when no cluster answers or
    the context is not one the tests may deploy onto."""
    pytest.importorskip("kubernetes")
    ok, why = client.reachable(None, os.environ.get("GVH_KUBE_CONTEXT"))
    if not ok:
        pytest.skip(f"no reachable Kubernetes cluster: {why}")
    ctx = os.environ.get("GVH_KUBE_CONTEXT") or client.contexts(None)[1] or ""
    try:
        guard.check_context(ctx, [os.environ.get("GVH_ALLOW_CONTEXT", "")])
    except guard.UnsafeContext as exc:
        pytest.skip(str(exc))
    return ctx


def platform_or_skip(**options: Any) -> Any:
    """A ``KubernetesPlatform`` on that cluster with the image ``GVH_IMAGE``; ``options`` are passed to
    ``options_from`` (e.g. ``deploy_with="helm"``)."""
    from harness.platforms.kubernetes.platform import KubernetesPlatform, options_from

    ctx = cluster_or_skip()
    opts = options_from("kubernetes", ctx, os.environ.get("GVH_ALLOW_CONTEXT"), "unused", False, False,
                        os.environ.get("GVH_IMAGE", DEFAULT_IMAGE), **options)
    return KubernetesPlatform(opts)


def namespace_gone(dep: Any) -> None:
    """The teardown's promise: the run's namespace no longer exists."""
    ns = k8s.resource(dep.dyn, "v1", "Namespace").get().to_dict()["items"]
    assert dep.namespace not in {n["metadata"]["name"] for n in ns}, "teardown left the run namespace"


@contextlib.contextmanager
def deployed(platform: Any, spec: StackSpec, run_dir: Path,
             left_nothing: Callable[[Any], None] = namespace_gone) -> Iterator[Any]:
    """``platform.deploy(spec)``, torn down on exit (also when the tests failed), then ``left_nothing``
    checks what the teardown promises."""
    dep = platform.deploy(spec, str(run_dir))
    try:
        yield dep
    finally:
        dep.teardown()
        left_nothing(dep)
