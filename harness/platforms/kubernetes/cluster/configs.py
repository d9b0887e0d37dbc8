"""Pure rendering of every file and command line the binaries cluster runs with.

Kept free of I/O so the tests can check the properties that matter without starting anything:
containerd restricts oom_score_adj (root on our VMs lacks CAP_SYS_RESOURCE, and every sandbox fails
without it), every listener is on the node IP or loopback, DNS has no forwarder (hermetic), the CNI
bridge does not masquerade, and NodePorts open only on the node IP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.platforms.kubernetes.cluster import versions as v

PAUSE_IMAGE = f"registry.k8s.io/pause:{v.PAUSE_TAG}"
COREDNS_IMAGE = f"registry.k8s.io/coredns/coredns:{v.COREDNS}"


@dataclass(frozen=True)
class Layout:
    """Paths of one cluster's state directory (``versions.state_root()``)."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_sock(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def cni_conf(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.conf / "admin.kubeconfig"

    def kubeconfig(self, who: str) -> Path:
        return self.conf / f"{who}.kubeconfig"


def kubeconfig(layout: Layout, who: str, context: str = v.CONTEXT) -> dict[str, Any]:
    """A kubeconfig for identity ``who`` (file paths into the PKI, never inline keys)."""
    pki = layout.pki
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": context, "cluster": {"server": f"https://{v.NODE_IP}:{v.APISERVER_PORT}",
                                                   "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": who, "user": {"client-certificate": str(pki / f"{who}.crt"),
                                         "client-key": str(pki / f"{who}.key")}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": who}}],
    }


def containerd_config(layout: Layout, cni_bin: Path) -> str:
    return f"""version = 2
root = "{layout.containerd_root}"
state = "{layout.containerd_state}"
[grpc]
  address = "{layout.containerd_sock}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{layout.root / 'containerd' / 'opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # root in our VMs lacks CAP_SYS_RESOURCE: without this every sandbox fails with
  # "can't get final child's PID from pipe: EOF" (oom_score_adj -998 refused)
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{layout.cni_conf}"
"""


def cni_conflist(layout: Layout) -> dict[str, Any]:
    """Bridge + host-local on the node's pod subnet; no masquerade (nothing is to leave the machine)."""
    return {"cniVersion": "1.0.0", "name": "gvh", "plugins": [
        {"type": "bridge", "bridge": v.BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": v.NODE_POD_SUBNET}]],
                  "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(layout.cni_ipam)}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ]}


def kubelet_config(layout: Layout) -> dict[str, Any]:
    pki = layout.pki
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": v.NODE_IP, "healthzBindAddress": "127.0.0.1", "readOnlyPort": 0,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki / "kubelet.crt"), "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_sock}",
        "clusterDomain": "cluster.local", "clusterDNS": [v.DNS_SERVICE_IP], "resolvConf": "",
        "podLogsDir": str(layout.pod_logs),
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False, "maxPods": 110, "shutdownGracePeriod": "0s",
    }


def kube_proxy_config(layout: Layout) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig("kube-proxy"))},
        "mode": "iptables", "clusterCIDR": v.POD_CIDR, "hostnameOverride": v.NODE_NAME,
        "bindAddress": v.NODE_IP, "metricsBindAddress": "127.0.0.1:10249", "healthzBindAddress": "127.0.0.1:10256",
        "nodePortAddresses": [f"{v.NODE_IP}/32"], "conntrack": {"maxPerCore": 0},
    }


def commands(layout: Layout, kube_bin: Path) -> dict[str, list[str]]:
    """Each process's command line, in start order (etcd and containerd come from Debian)."""
    pki, conf = layout.pki, layout.conf
    url = f"http://127.0.0.1:{v.ETCD_CLIENT_PORT}"
    return {
        "etcd": ["etcd", "--name", "gvh", "--data-dir", str(layout.etcd_data), "--listen-client-urls", url,
                 "--advertise-client-urls", url, "--listen-peer-urls", f"http://127.0.0.1:{v.ETCD_PEER_PORT}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{v.ETCD_PEER_PORT}",
                 "--initial-cluster", f"gvh=http://127.0.0.1:{v.ETCD_PEER_PORT}", "--unsafe-no-fsync",
                 "--quota-backend-bytes", str(2 * 1024**3)],
        "kube-apiserver": [
            str(kube_bin / "kube-apiserver"), f"--advertise-address={v.NODE_IP}", f"--bind-address={v.NODE_IP}",
            f"--secure-port={v.APISERVER_PORT}", f"--etcd-servers={url}",
            f"--service-cluster-ip-range={v.SERVICE_CIDR}", f"--client-ca-file={pki / 'ca.crt'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true", "--profiling=false", "--event-ttl=1h",
            # reach the kubelet by its IP: the node name is in no DNS (logs, exec, port-forward)
            "--kubelet-preferred-address-types=InternalIP",
            # Debian's etcd 3.4.23 has no progress notifications: the watch cache of a 1.34 API server then
            # lags behind etcd and a watch "from now" on a quiet resource times out (504 "Too large
            # resource version"); without the cache every read and watch goes to etcd (one node: cheap)
            "--watch-cache=false"],
        "kube-controller-manager": [
            str(kube_bin / "kube-controller-manager"), f"--kubeconfig={layout.kubeconfig('controller-manager')}",
            f"--authentication-kubeconfig={layout.kubeconfig('controller-manager')}",
            f"--authorization-kubeconfig={layout.kubeconfig('controller-manager')}",
            "--bind-address=127.0.0.1", "--leader-elect=false", "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--root-ca-file={pki / 'ca.crt'}", f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={v.SERVICE_CIDR}", "--allocate-node-cidrs=false", "--profiling=false"],
        "kube-scheduler": [
            str(kube_bin / "kube-scheduler"), f"--kubeconfig={layout.kubeconfig('scheduler')}",
            f"--authentication-kubeconfig={layout.kubeconfig('scheduler')}",
            f"--authorization-kubeconfig={layout.kubeconfig('scheduler')}",
            "--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false"],
        "containerd": ["containerd", "--config", str(conf / "containerd.toml")],
        "kubelet": [
            str(kube_bin / "kubelet"), f"--config={conf / 'kubelet.yaml'}",
            f"--kubeconfig={layout.kubeconfig('kubelet')}", f"--node-ip={v.NODE_IP}",
            f"--hostname-override={v.NODE_NAME}", f"--root-dir={layout.kubelet_root}"],
        "kube-proxy": [str(kube_bin / "kube-proxy"), f"--config={conf / 'kube-proxy.yaml'}"],
    }


def coredns_objects() -> list[dict[str, Any]]:
    """CoreDNS in kube-system: cluster.local from the API, every other name NXDOMAIN (no forwarder)."""
    corefile = """cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
    loadbalance
    reload
}
.:53 {
    errors
    template ANY ANY {
        rcode NXDOMAIN
    }
}
"""
    labels = {"k8s-app": "kube-dns"}
    meta = {"name": "coredns", "namespace": "kube-system"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "system:coredns"},
         "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"Corefile": corefile}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {**meta, "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"serviceAccountName": "coredns", "dnsPolicy": "Default", "enableServiceLinks": False,
                      "containers": [{
                          "name": "coredns", "image": COREDNS_IMAGE, "imagePullPolicy": "Never",
                          "args": ["-conf", "/etc/coredns/Corefile"],
                          "ports": [{"containerPort": 53, "protocol": "UDP", "name": "dns"},
                                    {"containerPort": 53, "protocol": "TCP", "name": "dns-tcp"}],
                          "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                          "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                          "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                          "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}]}],
                      "volumes": [{"name": "config", "configMap": {"name": "coredns"}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system",
                                                             "labels": labels},
         "spec": {"clusterIP": v.DNS_SERVICE_IP, "selector": labels,
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}},
    ]


def storage_class() -> dict[str, Any]:
    """The default StorageClass; PVs for it come from ``provisioner`` (hostPath under the state dir)."""
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": v.STORAGE_CLASS,
                         "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            # WaitForFirstConsumer: the scheduler picks the node first and then waits for the claim to be
            # bound (with Immediate a pod scheduled before its claim was bound could sit Pending for the
            # scheduler's 5-minute unschedulable retry)
            "provisioner": PROVISIONER_NAME, "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}


PROVISIONER_NAME = "goverse-harness.io/hostpath"


def write_all(layout: Layout, cni_bin: Path) -> None:
    """Write every config file (kubeconfigs, containerd, CNI, kubelet, kube-proxy)."""
    for d in (layout.conf, layout.logs, layout.run, layout.cni_conf, layout.cni_ipam, layout.volumes,
              layout.pod_logs, layout.kubelet_root):
        d.mkdir(parents=True, exist_ok=True)
    for who in ("admin", "controller-manager", "scheduler", "kube-proxy", "kubelet"):
        p = layout.kubeconfig(who)
        p.write_text(yaml.safe_dump(kubeconfig(layout, who)))
        p.chmod(0o600)
    (layout.conf / "containerd.toml").write_text(containerd_config(layout, cni_bin))
    (layout.cni_conf / "10-gvh.conflist").write_text(json.dumps(cni_conflist(layout), indent=1))
    (layout.conf / "kubelet.yaml").write_text(yaml.safe_dump(kubelet_config(layout)))
    (layout.conf / "kube-proxy.yaml").write_text(yaml.safe_dump(kube_proxy_config(layout)))
