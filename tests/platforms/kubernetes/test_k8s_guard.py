"""The context guard: only throwaway-looking clusters, or names allowed explicitly."""

from __future__ import annotations

import pytest

from harness.platforms.kubernetes.guard import UnsafeContext, check_context, looks_like_test_cluster


@pytest.mark.parametrize("ctx", ["kind-goverse-harness", "kind-x", "k3d-dev"])
def test_test_clusters_are_accepted(ctx: str) -> None:
    assert check_context(ctx) == ctx


@pytest.mark.parametrize("ctx", ["gke_prod_europe-west1_main", "arn:aws:eks:eu-west-1:1:cluster/prod", "minikube",
                                 "docker-desktop", "kind-", "k3d-", "my-kind-cluster", "KIND-x", "prod-kind-1"])
def test_other_contexts_are_refused_with_the_way_out(ctx: str) -> None:
    with pytest.raises(UnsafeContext) as err:
        check_context(ctx)
    assert f"--allow-context {ctx}" in str(err.value)


def test_allow_list_is_exact_names() -> None:
    assert check_context("minikube", allow=["minikube"]) == "minikube"
    with pytest.raises(UnsafeContext):
        check_context("minikube-2", allow=["minikube"])
    with pytest.raises(UnsafeContext):
        check_context("prod", allow=["", "*"])


@pytest.mark.parametrize("ctx", [None, ""])
def test_no_context_is_refused(ctx: str | None) -> None:
    with pytest.raises(UnsafeContext, match="no Kubernetes context"):
        check_context(ctx, allow=[""])


def test_prefix_alone_is_not_a_cluster() -> None:
    assert not looks_like_test_cluster("kind-") and looks_like_test_cluster("kind-a")
