"""``KubernetesPlatform``: deploy a StackSpec on kind or an existing cluster, and take it all away again.

The order matters and each step waits by watch: guard the context → render and check the manifests
(seed properties; refuse to deploy manifests that break them) → create the run's namespace → apply by
phase (setup, then etcd and PostgreSQL, then the schema Job, then the Goverse workloads, then extras
whose CRDs exist) → wait for the shard map to converge. A failure anywhere collects pod logs (and
``kind export logs``), tears down, and re-raises; so does Ctrl-C. Teardown deletes the run's chaos
experiments (finalizer-safe), then its namespace, waits until it is gone, deletes anything
cluster-scoped carrying the run label, and deletes the kind cluster only if this run created it.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.history import Recorder
from harness.platforms.base import Deployment, PlatformError, StackSpec, Unsupported
from harness.platforms.kubernetes import apply as k8s
from harness.platforms.kubernetes import client, goyaml, guard, helm, naming, policy, render, stackconfig, watch
from harness.platforms.kubernetes.deployment import KubernetesDeployment
from harness.platforms.kubernetes.injector import KubernetesInjector
from harness.platforms.kubernetes.kind import KindCluster
from harness.platforms.operations import Operations
from harness.waiting import wait_until

log = logging.getLogger(__name__)

CLUSTER_SCOPED_KINDS = (("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
                        ("rbac.authorization.k8s.io/v1", "ClusterRole"))


@dataclass
class KubernetesOptions:
    provider: str = "kind"  # kind | existing
    kubeconfig: str | None = None
    context: str | None = None
    allow_contexts: tuple[str, ...] = ()
    cluster_name: str = "goverse-harness"
    keep_cluster: bool = False
    keep_stack: bool = False
    overlay: str = "kind"  # kind | k3s | production
    image: str | None = None  # the reference stack's image (loaded into kind when provider=kind)
    images: dict[str, str] = field(default_factory=dict)
    deploy_timeout: float = 600.0
    kind_bin: str = "kind"
    deploy_with: str = "kustomize"  # kustomize | helm (charts/goverse)

    def __post_init__(self) -> None:
        if self.deploy_with not in helm.DEPLOY_WITH:
            raise PlatformError(f"deploy_with: {self.deploy_with!r} is not one of {', '.join(helm.DEPLOY_WITH)}")


class KubernetesPlatform:
    name = "kubernetes"

    def __init__(self, options: KubernetesOptions) -> None:
        self.opts = options
        self.kind: KindCluster | None = None
        self._releases: dict[str, tuple[str, str | None, str | None]] = {}  # namespace -> (helm, kubeconfig, ctx)

    # --- cluster -------------------------------------------------------------------------------------

    def _connect(self, run_dir: Path) -> tuple[Any, str, str | None]:
        kubeconfig = self.opts.kubeconfig
        if self.opts.provider == "kind":
            self.kind = KindCluster(self.opts.cluster_name, self.opts.kind_bin)
            kubeconfig = str(run_dir / "k8s" / "kubeconfig")
            self.kind.ensure(Path(kubeconfig))
            context = self.kind.context
        else:
            from harness.platforms.kubernetes import autocluster

            if self.opts.context:  # static checks first: a typo or an unsafe context is named, nothing started
                try:
                    named, _ = client.contexts(kubeconfig)
                except Exception:  # noqa: BLE001 - no readable kubeconfig: the reachability check says so
                    named = []
                if named and self.opts.context not in named:
                    raise guard.UnsafeContext(f"kube_context: no context {self.opts.context!r} in the kubeconfig "
                                              f"(it has: {', '.join(sorted(named))})")
                guard.check_context(self.opts.context, self.opts.allow_contexts)
            kubeconfig, wanted = autocluster.ensure(self.opts.context, kubeconfig, self.opts.keep_cluster)
            names, current = client.contexts(kubeconfig)
            context = wanted or current or ""
            if context and names and context not in names:  # a typo is not an unsafe cluster
                raise guard.UnsafeContext(f"kube_context: no context {context!r} in the kubeconfig "
                                          f"(it has: {', '.join(sorted(names))})")
        guard.check_context(context, self.opts.allow_contexts)
        api = client.api_client(kubeconfig, context)
        version = client.server_version(api)
        log.info("cluster %s answers (%s)", context, version)
        return api, context, kubeconfig

    # --- deploy --------------------------------------------------------------------------------------

    def deploy(self, spec: StackSpec, run_dir: str) -> KubernetesDeployment:
        rd = Path(run_dir)
        run_id = naming.new_run_id()
        api, _context, _kubeconfig = self._connect(rd)
        images = dict(self.opts.images)
        if spec.stack == "reference" and self.opts.image:
            images.setdefault(render.REFSTACK_IMAGE, self.opts.image)
            if self.kind is not None:
                self.kind.load_image(self.opts.image)
        images.setdefault("busybox", render.BACKUP_SHELL_IMAGE)
        opts = render.RunOptions(run_id=run_id, platform=self.opts.overlay, stack=spec.stack, nodes=spec.nodes,
                                 gates=spec.gates, inspector=spec.inspector, etcd_members=spec.etcd_members,
                                 images=images, bugs=spec.bugs,
                                 pg_proxy=spec.fault_proxies and spec.stack == "reference")
        docs = render.kustomize_build(render.write_run_kustomization(rd, opts, stackconfig.stack_config(spec)))
        if self.opts.deploy_with == "helm":
            return self._deploy_helm(spec, rd, run_id, api, docs, _context, _kubeconfig)
        problems = policy.violations(docs)
        if problems:
            raise PlatformError("the rendered manifests break seed requirements:\n  " + "\n  ".join(problems))
        docs = render.fill_secrets(docs, {"postgres-password": secrets.token_urlsafe(24)})
        namespace = naming.namespace_for(run_id)
        dep = KubernetesDeployment(spec, api, namespace, run_id, rd, on_teardown=self._teardown)
        atexit.register(dep.teardown)
        t0 = time.monotonic()
        try:
            self._wire_pg_volume(dep, docs)
            self._apply_phases(dep, docs)
            dep.timings["converged_s"] = round(dep.wait_converged(self.opts.deploy_timeout), 3)
            dep.timings["total_s"] = round(time.monotonic() - t0, 3)
        except BaseException:
            self._on_failure(dep)
            raise
        return dep

    def _deploy_helm(self, spec: StackSpec, rd: Path, run_id: str, api: Any, kustomized: list[dict[str, Any]],
                     context: str | None, kubeconfig: str | None) -> KubernetesDeployment:
        """``helm install`` of charts/goverse into the run's namespace (the same Namespace object the
        kustomize path makes: run labels, Pod Security labels), after checking what the chart renders
        with these values against the seed policy: revision 1 with etcd, PostgreSQL and the schema,
        revision 2 (``helm upgrade``) with the Goverse workloads (``helm.infra_values`` says why), each
        waited for by watch; then a converged and balanced shard map."""
        binary = helm.helm_binary()
        namespace = naming.namespace_for(run_id)
        values_file = rd / "k8s" / "values.yaml"
        values_file.write_text(goyaml.dump(helm.chart_values(spec, self.opts.image, self.opts.images)))
        ns_doc = next(d for d in kustomized if d["kind"] == "Namespace")
        docs = helm.template(binary, values_file, namespace, client.server_version(api))
        # the one literal credential is the release's generated test password (postgres.auth.create):
        # it never leaves the cluster and the values file; every other finding refuses the install
        problems = [p for p in policy.violations([ns_doc, *docs]) if not p.startswith(helm.GENERATED_SECRET_FINDING)]
        if problems:
            raise PlatformError("the chart renders manifests that break seed requirements:\n  " + "\n  ".join(problems))
        dep = KubernetesDeployment(spec, api, namespace, run_id, rd, on_teardown=self._teardown)
        if spec.disk_faults:
            why = "deployed with helm: the harness prepares PostgreSQL's volume on the kustomize path only"
            dep.disk_unwired.update({k: why for k in ("disk-full", "disk-latency", "disk-eio")})
        atexit.register(dep.teardown)
        t0 = time.monotonic()
        try:
            k8s.apply(dep.dyn, ns_doc)
            self._releases[namespace] = (binary, kubeconfig, context)
            infra_file = rd / "k8s" / "values-infra.yaml"
            infra_file.write_text(goyaml.dump(helm.infra_values(yaml.safe_load(values_file.read_text()))))
            helm.install(binary, infra_file, namespace, kubeconfig, context)
            dep.timings["helm_install_s"] = round(time.monotonic() - t0, 3)
            for d in docs:  # the same order as the kustomize phases: etcd/PostgreSQL, schema, Goverse
                if d["kind"] in ("StatefulSet", "Deployment", "Job") and render.phase_of(d) in ("infra", "schema"):
                    dep.wait_workload(d["kind"], d["metadata"]["name"], self.opts.deploy_timeout)
            t_up = time.monotonic()
            helm.upgrade(binary, values_file, namespace, kubeconfig, context)
            dep.timings["helm_upgrade_s"] = round(time.monotonic() - t_up, 3)
            dep.wait_workload("Job", "goverse-schema-init-r2", self.opts.deploy_timeout)
            for d in docs:
                if d["kind"] in ("StatefulSet", "Deployment") and int(d["spec"].get("replicas", 1)) > 0:
                    dep.wait_workload(d["kind"], d["metadata"]["name"], self.opts.deploy_timeout)
            t_conv = time.monotonic()  # every workload ready: what the kustomize path's converged_s counts from
            view = dep._etcd_view()
            last: list[str] = [""]

            def settled() -> bool:
                ok, last[0] = helm.settled(view.state(), spec.nodes)
                return ok

            wait_until(settled, self.opts.deploy_timeout, "shard map converged and balanced over every node",
                       interval=0.2, describe=lambda: last[0])
            dep.timings["converged_s"] = round(time.monotonic() - t_conv, 3)
            dep.timings["total_s"] = round(time.monotonic() - t0, 3)
        except BaseException:
            self._on_failure(dep)
            raise
        return dep

    def _wire_pg_volume(self, dep: KubernetesDeployment, docs: list[dict[str, Any]]) -> None:
        """For a run that asks for disk faults: PostgreSQL's volume on a filesystem the harness can fault
        (``pgvolume``), made before the StatefulSet claims it. Optional, like the local platform's disk
        wiring: what cannot be built here goes into ``dep.disk_unwired`` (the capability's reason)."""
        from harness.platforms.kubernetes import pgvolume

        spec = dep.spec
        if not spec.disk_faults:
            return
        why = ""
        if spec.stack != "reference":
            why = ("the Goverse stack's PostgreSQL volume is left to the cluster's provisioner (a directory on "
                   "the machine's root filesystem: filling it fills the machine)")
        elif self.opts.keep_stack:
            why = "--keep-stack: a volume mounted by the harness would not outlive it"
        else:
            node, why = pgvolume.local_node(dep.core)
            if node is not None:
                try:
                    dep.pg_volume = pgvolume.PostgresFaultVolume(
                        dep.dyn, dep.run_id, dep.namespace, node, pgvolume.default_storage_class(dep.dyn),
                        capacity=pgvolume.claim_request(docs)).create()
                    dep.disk_unwired.update(dep.pg_volume.unwired)
                    return
                except (Unsupported, PlatformError, OSError, ValueError) as exc:
                    why = f"could not make PostgreSQL's volume on a small filesystem: {exc}"
                    log.warning("%s", why)
        dep.disk_unwired.update({k: why for k in ("disk-full", "disk-latency", "disk-eio")})

    def _apply_phases(self, dep: KubernetesDeployment, docs: list[dict[str, Any]]) -> None:
        t0 = time.monotonic()

        def left() -> float:
            return max(5.0, self.opts.deploy_timeout - (time.monotonic() - t0))

        for phase, group in render.by_phase(docs):
            t_phase = time.monotonic()
            if phase == "extras":
                group = [d for d in group if k8s.has_kind(dep.dyn, d["apiVersion"], d["kind"])]
            k8s.apply_all(dep.dyn, group)
            log.info("applied phase %s (%d objects) in %s", phase, len(group), dep.namespace)
            for d in group:
                if d["kind"] in ("StatefulSet", "Deployment", "Job") and int(d["spec"].get("replicas", 1)) > 0:
                    dep.wait_workload(d["kind"], d["metadata"]["name"], left())
            dep.timings[f"{phase}_s"] = round(time.monotonic() - t_phase, 3)

    def _on_failure(self, dep: KubernetesDeployment) -> None:
        try:
            dep.collect_logs()
        except Exception as exc:  # noqa: BLE001 - never mask the original failure
            log.warning("collecting pod logs failed: %s", exc)
        if self.kind is not None:
            self.kind.export_logs(dep.run_dir / "logs" / "kind")
        if not self.opts.keep_stack:
            dep.teardown()

    # --- teardown ------------------------------------------------------------------------------------

    def _teardown(self, dep: KubernetesDeployment) -> None:
        try:
            left = dep.chaos.cleanup_all()
            if left:
                log.warning("recovered chaos experiments left by the run: %s", ", ".join(left))
        except Exception as exc:  # noqa: BLE001 - keep deleting
            log.error("chaos cleanup failed: %s", exc)
        if self.opts.keep_stack:
            log.warning("--keep-stack: leaving namespace %s", dep.namespace)
        else:
            release = self._releases.pop(dep.namespace, None)
            if release is not None:
                try:
                    helm.uninstall(release[0], dep.namespace, release[1], release[2])
                except PlatformError as exc:  # the namespace deletion below still takes everything
                    log.error("%s", exc)
            try:
                delete_run(dep.dyn, dep.namespace, dep.run_id)
            finally:
                if dep.pg_volume is not None:  # after the namespace: its claim and pod no longer hold it
                    dep.pg_volume.remove()
                    dep.pg_volume = None
        if self.kind is not None and not self.opts.keep_cluster:
            self.kind.delete()

    def injector(self, dep: Deployment) -> KubernetesInjector:
        """This platform's half of the fault pipeline (Chaos Mesh experiments, pod deletes, NetworkPolicies)."""
        if not isinstance(dep, KubernetesDeployment):
            raise Unsupported(f"the Kubernetes platform cannot inject faults into a {type(dep).__name__}")
        return KubernetesInjector(dep)

    def operations(self, dep: Deployment, recorder: Recorder | None = None,
                   on_endpoints: Callable[[dict[str, str]], None] | None = None) -> Operations:
        """Day-2 operations through the API: replicas, ConfigMap + rollout, Secret, pod templates; backup,
        wipe, volume loss and restore with Jobs and PVCs (``backup.KubernetesBackupOperations``)."""
        if not isinstance(dep, KubernetesDeployment):
            raise Unsupported(f"the Kubernetes platform has no operations for a {type(dep).__name__}")
        from harness.platforms.kubernetes.operations import KubernetesOperations

        return KubernetesOperations(dep, recorder, on_endpoints)

    def doctor(self) -> list[tuple[str, bool, str]]:
        out = [("kubectl", shutil.which("kubectl") is not None, "renders manifests (kubectl kustomize)"),
               ("kind", shutil.which(self.opts.kind_bin) is not None, "creates local clusters (--platform kind)")]
        ok, why = client.reachable(self.opts.kubeconfig, self.opts.context)
        out.append(("cluster", ok, why))
        if ok:
            ctx = self.opts.context or client.contexts(self.opts.kubeconfig)[1] or ""
            try:
                guard.check_context(ctx, self.opts.allow_contexts)
                out.append(("context guard", True, f"{ctx} looks like a test cluster"))
            except guard.UnsafeContext as exc:
                out.append(("context guard", False, str(exc)))
        return out


#: grace period of a finished run's pods at teardown (their drains are over; nothing observes them)
TEARDOWN_GRACE_S = 1


def delete_run(dyn: Any, namespace: str, run_id: str, timeout: float = 300.0) -> None:
    """Delete the run's namespace (and wait until it is gone) and cluster-scoped objects with its label.

    The run is over and its evidence exported, so its pods get a 1 s grace period instead of their own
    (a node's 45 s drain, etcd's and PostgreSQL's 30 s): a module's teardown took 35-40 s of waiting for
    drains nobody observes. The namespace goes first, so no controller can make a pod again."""
    k8s.delete(dyn, "v1", "Namespace", namespace, propagation="Foreground")
    try:
        k8s.resource(dyn, "v1", "Pod").delete(namespace=namespace, label_selector=naming.run_selector(run_id),
                                              body={"gracePeriodSeconds": TEARDOWN_GRACE_S})
    except Exception as exc:  # noqa: BLE001 - the namespace deletion still takes every pod, only slower
        log.warning("could not shorten the grace period of namespace %s's pods: %s", namespace, exc)
    try:
        watch.wait_gone(dyn, k8s.resource(dyn, "v1", "Namespace"), None, namespace, timeout,
                        f"namespace {namespace} deleted")
    except TimeoutError as exc:
        log.error("namespace %s is still terminating: %s", namespace, exc)
    for api_version, kind in CLUSTER_SCOPED_KINDS:
        res = k8s.resource(dyn, api_version, kind)
        for item in res.get(label_selector=naming.run_selector(run_id)).to_dict()["items"]:
            k8s.delete(dyn, api_version, kind, item["metadata"]["name"])


def options_from(platform: str, kube_context: str | None, allow_context: str | Iterable[str] | None,
                 cluster_name: str, keep_cluster: bool, keep_stack: bool, image: str | None,
                 overlay: str | None = None, kubeconfig: str | None = None,
                 deploy_with: str = "kustomize") -> KubernetesOptions:
    """Map the harness settings (``--platform kind|kubernetes`` …) onto options (pure)."""
    if isinstance(allow_context, str):
        allow = tuple(a.strip() for a in allow_context.split(",") if a.strip())
    else:
        allow = tuple(allow_context or ())
    provider = "kind" if platform == "kind" else "existing"
    if provider == "existing" and not kubeconfig and not os.environ.get("KUBECONFIG"):
        # the cluster `goverse-harness cluster up --provider binaries` made, when it is up
        from harness.platforms.kubernetes.cluster import versions
        from harness.platforms.kubernetes.cluster.configs import Layout

        own = Layout(versions.state_root()).admin_kubeconfig
        if own.exists():
            kubeconfig = str(own)
    if overlay is None:
        ctx = kube_context or ""
        overlay = "k3s" if ctx.startswith("k3d-") else "kind"  # kind: small, default StorageClass
    return KubernetesOptions(provider=provider, kubeconfig=kubeconfig, context=kube_context, allow_contexts=allow,
                             cluster_name=cluster_name, keep_cluster=keep_cluster, keep_stack=keep_stack,
                             overlay=overlay, image=image, deploy_with=deploy_with)
