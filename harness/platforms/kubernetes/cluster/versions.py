"""Pinned versions, the cluster's addresses, and where built things are cached.

Why pinned: the binaries provider compiles everything from the Go module proxy; a moving version would
make a warm cache miss and a CI run unreproducible. Why these addresses: every one of them lives on this
machine (the node IP on ``lo``, pods inside network namespaces behind a bridge), the service and pod
ranges get blackhole routes so nothing addressed to them can leave, and all of it stays clear of the
local platform's 10.77.0.0/16.
"""

from __future__ import annotations

import os
from pathlib import Path

KUBERNETES = "v1.34.4"
KUBERNETES_STAGING = "v0.34.4"
COREDNS = "v1.14.7"
CNI_PLUGINS = "v1.10.0"
PAUSE_TAG = "3.10.1"

NODE_NAME = "gvh-node"
NODE_IP = "10.200.0.1"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
POD_CIDR = "10.244.0.0/16"
NODE_POD_SUBNET = "10.244.0.0/24"
BRIDGE = "gvhcni0"
APISERVER_PORT = 6443
ETCD_CLIENT_PORT = 23790
ETCD_PEER_PORT = 23791
STORAGE_CLASS = "standard"
CONTEXT = "gvh-binaries"

KUBE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
CNI_PLUGIN_PATHS = {"bridge": "plugins/main/bridge", "host-local": "plugins/ipam/host-local",
                    "loopback": "plugins/main/loopback", "portmap": "plugins/meta/portmap"}


def cache_root() -> Path:
    """``~/.cache/goverse-harness`` (``GVH_CACHE_DIR`` overrides, ``XDG_CACHE_HOME`` is honoured)."""
    if os.environ.get("GVH_CACHE_DIR"):
        return Path(os.environ["GVH_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "goverse-harness"


def cache_dir(component: str, version: str) -> Path:
    """``<cache>/<component>/<version>/``: one directory per built thing and version."""
    return cache_root() / component / version


def state_root() -> Path:
    """Where a running cluster keeps its PKI, configs, logs, pid files and data (``GVH_CLUSTER_DIR``)."""
    return Path(os.environ.get("GVH_CLUSTER_DIR") or "/var/lib/goverse-harness-cluster")
