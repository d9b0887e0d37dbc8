"""Which kubeconfig contexts the harness may touch.

Why: the harness deletes namespaces, kills pods and injects network faults. Pointed at the wrong
context by accident (a stale ``current-context``) it would do that to a real cluster. So it only
accepts contexts that look like throwaway test clusters — ``kind-*`` (kind), ``k3d-*`` (k3d) — or
contexts named explicitly by the user with ``--allow-context NAME`` (exact names, never patterns).
"""

from __future__ import annotations

from collections.abc import Iterable

TEST_CLUSTER_PREFIXES: tuple[str, ...] = ("kind-", "k3d-")
# exact names of clusters the harness itself makes (the binaries provider's context)
TEST_CLUSTER_NAMES: tuple[str, ...] = ("gvh-binaries",)


class UnsafeContext(Exception):
    """The context does not look like a test cluster and was not allowed explicitly."""


def looks_like_test_cluster(context: str) -> bool:
    return context in TEST_CLUSTER_NAMES or any(context.startswith(p) and len(context) > len(p)
                                                for p in TEST_CLUSTER_PREFIXES)


def check_context(context: str | None, allow: Iterable[str] = ()) -> str:
    """Return ``context`` if the harness may use it, else raise ``UnsafeContext`` saying how to allow it.

    ``allow`` holds exact context names (``--allow-context``, repeatable); an empty name never matches.
    """
    if not context:
        raise UnsafeContext("no Kubernetes context selected (empty kubeconfig or no current-context)")
    allowed = {a for a in allow if a}
    if context in allowed or looks_like_test_cluster(context):
        return context
    raise UnsafeContext(
        f"refusing Kubernetes context {context!r}: it does not look like a test cluster "
        f"(expected a name starting with {' or '.join(TEST_CLUSTER_PREFIXES)}). The harness deletes "
        f"namespaces, kills pods and injects faults; if {context!r} really is a disposable cluster, "
        f"pass --allow-context {context}"
    )
