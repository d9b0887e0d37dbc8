"""The Kubernetes platform: the Goverse stack on kind, k3d/k3s or any cluster a kubeconfig reaches.

Layout (pure logic apart from I/O, so that everything that needs no API server is tested here):

- pure: ``naming`` (run ids, namespaces, labels, instance names), ``guard`` (which contexts are safe),
  ``render`` (the per-run kustomization, secret filling, apply phases), ``stackconfig`` (Goverse YAML
  for a StackSpec), ``policy`` (seed §3/§5 properties of rendered manifests), ``netpol`` (allowed
  paths and the NetworkPolicy partition fallback), ``chaos`` (Chaos Mesh CRs, selector scoping,
  status conditions), ``plan`` (faults -> Chaos Mesh CRs), ``crdschema`` (CRD openAPIV3Schema
  validation), ``k8sschema`` (cached strict Kubernetes schemas), ``conditions`` (rollout and readiness
  from object status), ``slots`` (stable gate instance names over Deployment pods).
- I/O, thin: ``kind`` and ``cluster`` (cluster providers), ``apply`` (server-side apply), ``watch``
  (waits by watch with deadlines), ``portforward``, ``chaos_runner``, ``deployment``, ``injector``
  and ``platform`` (the ``Platform``/``Deployment`` implementation).

The ``kubernetes`` client is imported only by the I/O modules, so the pure ones work without it.
"""

from __future__ import annotations

from typing import Any


def make_platform(settings: Any) -> Any:
    """The platform for ``--platform kind|kubernetes`` from the harness ``Settings``."""
    from harness.platforms.kubernetes.platform import KubernetesPlatform, options_from

    return KubernetesPlatform(options_from(
        platform=settings.platform, kube_context=settings.kube_context, allow_context=settings.allow_context,
        cluster_name=settings.cluster_name, keep_cluster=settings.keep_cluster, keep_stack=settings.keep_stack,
        image=settings.image, overlay=getattr(settings, "kube_overlay", None),
        kubeconfig=getattr(settings, "kubeconfig", None), deploy_with=settings.deploy_with))

