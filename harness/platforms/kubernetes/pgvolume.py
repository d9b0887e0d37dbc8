"""PostgreSQL's volume on a filesystem the harness can fault, for clusters whose node it runs on.

Why: the binaries cluster's provisioner answers PostgreSQL's claim with a hostPath directory under its
state dir, on the machine's root filesystem: filling it would fill the machine, and a mount made over it
after the pod started never reaches the container (the kubelet's bind mount is private). So for a run
that asks for disk faults (``StackSpec.disk_faults``) the harness makes the claim's volume itself, before
the StatefulSet exists: the local platform's small filesystem (``local/smallfs.py``, tmpfs, for "full")
with its FUSE fault layer on top (``local/faultfs.py``, ``allow_other``, for "latency"/"eio"), and a
PersistentVolume pre-bound (``claimRef``) to ``data-goverse-postgres-0`` in the run's namespace whose
hostPath is the FUSE view. The PV controller binds a pre-bound claim at once, so the provisioner (which
answers only claims the scheduler left without a volume) leaves it alone. The layout is the local
platform's: ``<dir>/disk`` the small filesystem, ``<dir>/disk/data`` the real files, ``<dir>/data`` the
FUSE view the pod mounts; a "full" fault's ballast lives in ``<dir>/disk``, outside PostgreSQL's files.

Everything is named after ``prefix`` (mount fsnames, the directory, the FUSE daemon's command line), so
``local.diskfault.leftovers(prefix)`` sees whatever a dead run left and ``cleanup_leftovers`` sweeps it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import psutil

from harness.platforms.base import Unsupported
from harness.platforms.kubernetes import naming

log = logging.getLogger(__name__)

CLAIM = "data-goverse-postgres-0"  # the StatefulSet goverse-postgres's claim template "data", ordinal 0
PG_UID = 70  # the postgres:16-alpine image's postgres user (the manifests' runAsUser/fsGroup)
SIZE_MB = 160  # as the local platform's PG_DISK_MB: initdb needs ~40 MB, WAL segments 16 MB each


def pv_name(run_id: str) -> str:
    return f"gvh-{naming.check_run_id(run_id)}-pgdata"


def prebound_pv(run_id: str, namespace: str, path: str, node: str, storage_class: str,
                capacity: str) -> dict[str, Any]:
    """The PersistentVolume pre-bound to PostgreSQL's claim (pure). ``capacity`` must be at least the
    claim's request, or the claim is not bound to it (and the provisioner answers it instead): it is
    declarative only, what PostgreSQL can write is the small filesystem's size. ``Retain``: nothing but
    the harness touches the directory (a mount the harness removes); pinned to ``node``, where the mount
    is; no ``goverse-harness/provisioned`` label, so the provisioner's reclaim loop never sees it."""
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv_name(run_id), "labels": naming.run_labels(run_id)},
            "spec": {"capacity": {"storage": capacity}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": storage_class,
                     "volumeMode": "Filesystem",
                     "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": namespace,
                                  "name": CLAIM},
                     "hostPath": {"path": path, "type": "Directory"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}}


def claim_request(docs: list[dict[str, Any]]) -> str:
    """What the rendered PostgreSQL StatefulSet's claim template ``data`` requests (pure)."""
    for d in docs:
        if d.get("kind") == "StatefulSet" and d["metadata"]["name"] == "goverse-postgres":
            for t in d["spec"].get("volumeClaimTemplates", []):
                if t["metadata"]["name"] == "data":
                    return str(t["spec"]["resources"]["requests"]["storage"])
    raise ValueError("the rendered manifests have no goverse-postgres StatefulSet with a 'data' claim template")


def bound_here(core: Any, namespace: str, run_id: str) -> tuple[bool, str]:
    """Whether PostgreSQL's claim is bound to the harness's volume (and not to one the provisioner made):
    a fault on the small filesystem would otherwise touch nothing PostgreSQL uses."""
    claim = core.read_namespaced_persistent_volume_claim(CLAIM, namespace)
    got = claim.spec.volume_name
    return got == pv_name(run_id), f"{CLAIM} is bound to {got or 'nothing'}, not to {pv_name(run_id)}"


def local_node(core: Any) -> tuple[str | None, str]:
    """The cluster's node if it is this machine (one node, whose InternalIP is an address here), and why
    not otherwise: a hostPath the harness mounts is only seen by pods on this machine."""
    nodes = core.list_node().items
    if len(nodes) != 1:
        return None, f"the cluster has {len(nodes)} nodes (a volume mounted here reaches pods on this machine only)"
    here = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}
    node = nodes[0]
    ips = [a.address for a in (node.status.addresses or []) if a.type == "InternalIP"]
    if not any(ip in here for ip in ips):
        return None, f"the cluster's node {node.metadata.name} ({', '.join(ips)}) is not this machine"
    return node.metadata.name, ""


def default_storage_class(dyn: Any) -> str:
    """The class the API server defaults PostgreSQL's claim to (the claim template names none): the PV
    must carry the same class, or the claim never binds to it."""
    from harness.platforms.kubernetes import apply as k8s

    items = k8s.resource(dyn, "storage.k8s.io/v1", "StorageClass").get().to_dict()["items"]
    for sc in items:
        if (sc["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true":
            return str(sc["metadata"]["name"])
    return ""


class PostgresFaultVolume:
    """The small filesystem, the FUSE layer over it and the pre-bound PV of one run (see the module
    docstring). :meth:`create` undoes its own partial work on any error (Ctrl-C included);
    :meth:`remove` is idempotent and removes the PV, the FUSE daemon and mount, the small filesystem and
    the directory."""

    def __init__(self, dyn: Any, run_id: str, namespace: str, node: str, storage_class: str,
                 capacity: str = "1Gi", size_mb: int = SIZE_MB, workdir: str | Path | None = None) -> None:
        self.dyn = dyn
        self.run_id = run_id
        self.namespace = namespace
        self.node = node
        self.storage_class = storage_class
        self.capacity = capacity
        self.size_mb = size_mb
        self.prefix = f"gvh-{run_id}-pgvol"
        self.root = Path(workdir or tempfile.gettempdir()) / self.prefix
        self.disk: Any = None  # local.smallfs.SmallFilesystem
        self.layer: Any = None  # local.faultfs.FaultFS
        self.pv: dict[str, Any] | None = None
        self.unwired: dict[str, str] = {}  # disk-latency/disk-eio -> why the FUSE layer is missing

    def mount(self) -> Path:
        """The small filesystem and the FUSE layer over it (when FUSE works here); returns the path the
        pod is to mount (the FUSE view, or the small filesystem's data directory without FUSE)."""
        from harness.platforms.local.diskfault import FaultFS, SmallFilesystem, fuse_support

        if os.geteuid() != 0:
            raise Unsupported("mounting PostgreSQL's volume needs root on the cluster's node")
        self.root.mkdir(mode=0o755, exist_ok=False)
        owner = (PG_UID, PG_UID)  # PostgreSQL runs as uid 70 from the start (runAsUser), never as root
        self.disk = SmallFilesystem(self.prefix, self.root / "disk", size_mb=self.size_mb, kind="tmpfs",
                                    owner=owner, mode=0o700, workdir=self.root).mount()
        source = self.disk.mountpoint / "data"
        source.mkdir(mode=0o700)
        os.chown(source, *owner)
        ok, why = fuse_support()
        if ok:
            try:
                self.layer = FaultFS(self.prefix, source, self.root / "data").mount()
                return self.root / "data"
            except Exception as exc:  # noqa: BLE001 - "full" still works on the small filesystem alone
                log.warning("no FUSE layer over PostgreSQL's volume: %s", exc)
                why = f"the FUSE layer over PostgreSQL's volume did not mount: {exc}"
                self.layer = None
        self.unwired = {"disk-latency": why, "disk-eio": why}
        return source

    def create(self) -> PostgresFaultVolume:
        """:meth:`mount`, then the PV pre-bound to PostgreSQL's claim; on any error (Ctrl-C included)
        what was made is removed before the error goes on."""
        from harness.platforms.kubernetes import apply as k8s

        try:
            view = self.mount()
            self.pv = prebound_pv(self.run_id, self.namespace, str(view), self.node, self.storage_class,
                                  self.capacity)
            k8s.apply(self.dyn, self.pv)
        except BaseException:
            self.remove()
            raise
        log.info("PostgreSQL's volume for %s: %s (%s MB tmpfs%s)", self.namespace, pv_name(self.run_id),
                 self.size_mb, ", FUSE layer" if self.layer is not None else "")
        return self

    def remove(self) -> None:
        """Delete the PV (after the namespace: the claim's protection finalizer holds it until then), stop
        the FUSE daemon, unmount both filesystems and delete the directory. Never raises."""
        from harness.platforms.kubernetes import apply as k8s
        from harness.platforms.kubernetes import watch

        if self.pv is not None:
            try:
                k8s.delete(self.dyn, "v1", "PersistentVolume", pv_name(self.run_id))
                watch.wait_gone(self.dyn, k8s.resource(self.dyn, "v1", "PersistentVolume"), None,
                                pv_name(self.run_id), 120.0, f"PersistentVolume {pv_name(self.run_id)} deleted")
                self.pv = None
            except Exception as exc:  # noqa: BLE001 - unmount anyway; the PV is named in the log
                log.error("PersistentVolume %s not deleted: %s", pv_name(self.run_id), exc)
        for part in ("layer", "disk"):
            obj = getattr(self, part)
            if obj is not None:
                try:
                    obj.unmount()
                    setattr(self, part, None)
                except Exception as exc:  # noqa: BLE001 - the sweep below gets what is left
                    log.error("unmounting PostgreSQL's %s failed: %s", part, exc)
        from harness.platforms.local.diskfault import cleanup_leftovers

        with contextlib.suppress(Exception):
            cleanup_leftovers(self.prefix)
        from harness.platforms.local.mounts import mounts

        if not any(str(self.root) in m[1] for m in mounts()):
            shutil.rmtree(self.root, ignore_errors=True)
