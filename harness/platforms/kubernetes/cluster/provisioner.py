"""A hostPath volume provisioner for the binaries cluster's default StorageClass.

Why: a bare cluster has no StorageClass, and the manifests' StatefulSets claim volumes. This watches
PersistentVolumeClaims of class ``standard`` and answers each pending one with a hostPath
PersistentVolume pre-bound to it (a directory under the cluster's state dir, mode 0777 because hostPath
ignores fsGroup); when a claim is deleted its volume turns ``Released`` and the provisioner deletes the
volume and its directory (reclaim policy Delete). One node only, so hostPath is as durable as the node.

Run by ``cluster up`` as ``python -m harness.platforms.kubernetes.cluster.provisioner KUBECONFIG ROOT``.
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from harness.platforms.kubernetes.cluster import versions as v
from harness.platforms.kubernetes.cluster.configs import PROVISIONER_NAME

log = logging.getLogger("gvh-provisioner")


def pv_for(claim: dict[str, Any], root: Path) -> dict[str, Any]:
    """The PersistentVolume answering ``claim`` (pure)."""
    meta = claim["metadata"]
    name = f"pvc-{meta['uid']}"
    size = claim["spec"].get("resources", {}).get("requests", {}).get("storage", "1Gi")
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER_NAME},
                         "labels": {"goverse-harness/provisioned": "true"}},
            "spec": {"capacity": {"storage": size}, "accessModes": claim["spec"].get("accessModes", ["ReadWriteOnce"]),
                     "persistentVolumeReclaimPolicy": "Delete", "storageClassName": v.STORAGE_CLASS,
                     "volumeMode": "Filesystem",
                     "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                                  "name": meta["name"], "uid": meta["uid"]},
                     "hostPath": {"path": str(root / name), "type": "DirectoryOrCreate"}}}


SELECTED_NODE = "volume.kubernetes.io/selected-node"


def wants_volume(claim: dict[str, Any]) -> bool:
    """A pending claim of our class (or of no class: ours is the default) that has no volume yet and
    for which the scheduler has picked a node (the class binds WaitForFirstConsumer) (pure)."""
    spec, status = claim.get("spec", {}), claim.get("status", {})
    cls = spec.get("storageClassName")
    selected = (claim["metadata"].get("annotations") or {}).get(SELECTED_NODE)
    return (cls in (None, v.STORAGE_CLASS) and bool(selected) and not spec.get("volumeName")
            and status.get("phase", "Pending") == "Pending" and not claim["metadata"].get("deletionTimestamp"))


class Provisioner:
    def __init__(self, api: Any, root: Path) -> None:
        from kubernetes import client

        self.core: Any = client.CoreV1Api(api)
        self.root = root
        self.stop = threading.Event()

    def provision(self, claim: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        pv = pv_for(claim, self.root)
        path = Path(pv["spec"]["hostPath"]["path"])
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)
        try:
            self.core.create_persistent_volume(pv)
            log.info("provisioned %s for %s/%s", pv["metadata"]["name"], claim["metadata"]["namespace"],
                     claim["metadata"]["name"])
        except ApiException as exc:
            if exc.status != 409:
                raise

    def reclaim(self, pv: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        path = Path(pv["spec"]["hostPath"]["path"])
        if path.parent == self.root:
            shutil.rmtree(path, ignore_errors=True)
        try:
            self.core.delete_persistent_volume(pv["metadata"]["name"])
            log.info("deleted released %s", pv["metadata"]["name"])
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _loop_claims(self) -> None:
        from kubernetes import watch

        while not self.stop.is_set():
            try:
                for ev in watch.Watch().stream(self.core.list_persistent_volume_claim_for_all_namespaces,
                                               timeout_seconds=30):
                    obj = self.core.api_client.sanitize_for_serialization(ev["object"])
                    if ev["type"] in ("ADDED", "MODIFIED") and wants_volume(obj):
                        self.provision(obj)
                    if self.stop.is_set():
                        return
            except Exception as exc:  # noqa: BLE001 - the API server may restart; keep watching
                log.warning("claim watch: %s", exc)
                self.stop.wait(1.0)

    def _loop_volumes(self) -> None:
        from kubernetes import watch

        while not self.stop.is_set():
            try:
                for ev in watch.Watch().stream(self.core.list_persistent_volume, timeout_seconds=30,
                                               label_selector="goverse-harness/provisioned=true"):
                    obj = self.core.api_client.sanitize_for_serialization(ev["object"])
                    if ev["type"] != "DELETED" and obj.get("status", {}).get("phase") in ("Released", "Failed"):
                        self.reclaim(obj)
                    if self.stop.is_set():
                        return
            except Exception as exc:  # noqa: BLE001
                log.warning("volume watch: %s", exc)
                self.stop.wait(1.0)

    def run(self) -> None:
        threads = [threading.Thread(target=self._loop_claims, daemon=True),
                   threading.Thread(target=self._loop_volumes, daemon=True)]
        for t in threads:
            t.start()
        self.stop.wait()


def main(argv: list[str]) -> int:
    from kubernetes import config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    kubeconfig, root = argv[0], Path(argv[1])
    root.mkdir(parents=True, exist_ok=True)
    prov = Provisioner(config.new_client_from_config(config_file=kubeconfig), root)
    signal.signal(signal.SIGTERM, lambda *_: prov.stop.set())
    signal.signal(signal.SIGINT, lambda *_: prov.stop.set())
    prov.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
