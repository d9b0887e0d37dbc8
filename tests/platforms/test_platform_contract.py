"""Both platforms implement the whole ``base.Deployment`` / ``base.Platform`` contract.

Why a test besides mypy: scenarios call these methods on whatever the ``--platform`` option deployed;
a member one platform lacks is an AttributeError in the nightly run (as ``gate_urls`` and
``cluster_state`` were on Kubernetes). This compares the classes with the Protocols' members."""

from __future__ import annotations

import inspect
import re

import pytest

from harness.platforms import base
from harness.platforms.kubernetes.deployment import KubernetesDeployment
from harness.platforms.kubernetes.platform import KubernetesPlatform
from harness.platforms.local.deploy import LocalDeployment, LocalPlatform


def members(proto: type) -> set[str]:
    names = {n for n, v in vars(proto).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))}
    return names | {n for n in getattr(proto, "__annotations__", {}) if not n.startswith("_")}


def has(cls: type, name: str) -> bool:
    if hasattr(cls, name):
        return True
    # attributes set in an __init__ (the class's or a part's it is composed of) or declared as dataclass fields
    annotated = any(name in getattr(k, "__annotations__", {}) for k in cls.__mro__)
    return annotated or any(re.search(rf"self\.{name}\s*[:=]", inspect.getsource(k)) is not None
                            for k in cls.__mro__ if k.__module__.startswith("harness."))


@pytest.mark.parametrize("cls", [LocalDeployment, KubernetesDeployment])
def test_deployments_implement_every_member(cls: type) -> None:
    missing = sorted(n for n in members(base.Deployment) if not has(cls, n))
    assert not missing, f"{cls.__name__} lacks {missing}"


@pytest.mark.parametrize("cls", [LocalPlatform, KubernetesPlatform])
def test_platforms_implement_every_member(cls: type) -> None:
    missing = sorted(n for n in members(base.Platform) if not has(cls, n))
    assert not missing, f"{cls.__name__} lacks {missing}"


def test_local_deployment_offers_every_capability() -> None:
    for cap in (base.StoredState, base.Signals, base.AdhocInstances):
        missing = sorted(n for n in members(cap) if not has(LocalDeployment, n))
        assert not missing, f"LocalDeployment lacks {cap.__name__}: {missing}"


def test_kubernetes_deployment_offers_adhoc_instances() -> None:
    missing = sorted(n for n in members(base.AdhocInstances) if not has(KubernetesDeployment, n))
    assert not missing, f"KubernetesDeployment lacks AdhocInstances: {missing}"


def test_the_check_itself_sees_a_missing_member() -> None:
    class Half:
        spec = None

        def endpoints(self) -> None: ...

    assert "gate_urls" in {n for n in members(base.Deployment) if not has(Half, n)}
