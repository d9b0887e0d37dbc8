"""The host side of the binaries cluster: addresses, routes, the egress guard, sysctls, leftovers.

Why each piece:
- the node IP sits on ``lo`` (this kernel has no dummy module), so the API server and kubelet are
  reachable only from this machine;
- blackhole routes for the service and pod ranges: a packet to either that nothing else claims is
  dropped here instead of following the default route out;
- ``GVH-EGRESS`` (a FORWARD chain of our own) drops anything a pod sends to an address outside the pod
  and service ranges, so a pod's default route can never carry traffic off the machine;
- kubelet and kube-proxy change sysctls (kernel.panic, vm.overcommit_memory, route_localnet …): the
  values before ``up`` are recorded and put back at ``down`` unless someone changed them since;
- kubelet creates iptables chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT) that
  ``kube-proxy --cleanup`` leaves, and bind-mounts its root directory onto itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path

from harness.platforms.kubernetes.cluster import versions as v

log = logging.getLogger(__name__)

# every sysctl the cluster (us, kubelet, kube-proxy) may change
SYSCTLS = ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
           "kernel.panic", "kernel.panic_on_oops", "vm.overcommit_memory", "vm.panic_on_oom",
           "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.conf.all.route_localnet",
           "net.netfilter.nf_conntrack_max", "net.netfilter.nf_conntrack_tcp_timeout_established",
           "net.netfilter.nf_conntrack_tcp_timeout_close_wait", "net.ipv4.vs.conntrack")
OUR_SYSCTLS = {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1",
               "net.bridge.bridge-nf-call-ip6tables": "1"}
EGRESS_CHAIN = "GVH-EGRESS"
KUBELET_CHAINS = {"filter": ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY"),
                  "mangle": ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"), "nat": ("KUBE-KUBELET-CANARY",)}


def sh(args: Sequence[str], check: bool = False) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=60)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {res.stderr.strip()}")
    return res


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls(names: Sequence[str] = SYSCTLS) -> dict[str, str]:
    out = {}
    for n in names:
        p = _sysctl_path(n)
        if p.exists():
            out[n] = " ".join(p.read_text().split())
    return out


def write_sysctl(name: str, value: str) -> None:
    try:
        _sysctl_path(name).write_text(value)
    except OSError as exc:
        log.warning("sysctl %s=%s: %s", name, value, exc)


def to_restore(before: dict[str, str], after_up: dict[str, str], now: dict[str, str]) -> dict[str, str]:
    """Sysctls to put back (pure): changed during the cluster's life and not changed by anyone since it
    recorded them at ``up`` (``after_up`` empty: compare with nothing, restore every difference)."""
    out = {}
    for name, orig in before.items():
        cur = now.get(name)
        if cur is None or cur == orig:
            continue
        if after_up and name in after_up and after_up[name] != cur and after_up[name] == orig:
            continue  # we had not changed it; someone else did since
        out[name] = orig
    return out


def setup(state: Path) -> None:
    """Record sysctls, add the node IP, the blackhole routes and the egress guard, set forwarding."""
    rec = state / "sysctls.json"
    if not rec.exists():
        rec.write_text(json.dumps(read_sysctls(), indent=1))
    if not Path("/proc/sys/net/bridge").exists():
        sh(["modprobe", "br_netfilter"])
    for name, value in OUR_SYSCTLS.items():
        write_sysctl(name, value)
    if v.NODE_IP not in sh(["ip", "-4", "addr", "show", "dev", "lo"]).stdout:
        sh(["ip", "addr", "add", f"{v.NODE_IP}/32", "dev", "lo"], check=True)
    for cidr in (v.SERVICE_CIDR, v.POD_CIDR):
        sh(["ip", "route", "replace", "blackhole", cidr])
    ipt = ["iptables", "-w"]
    if sh([*ipt, "-L", EGRESS_CHAIN, "-n"]).returncode != 0:
        sh([*ipt, "-N", EGRESS_CHAIN], check=True)
        for dst in (v.POD_CIDR, v.SERVICE_CIDR, f"{v.NODE_IP}/32"):
            sh([*ipt, "-A", EGRESS_CHAIN, "-d", dst, "-j", "RETURN"], check=True)
        sh([*ipt, "-A", EGRESS_CHAIN, "-j", "DROP"], check=True)
    if sh([*ipt, "-C", "FORWARD", "-s", v.POD_CIDR, "-j", EGRESS_CHAIN]).returncode != 0:
        sh([*ipt, "-I", "FORWARD", "1", "-s", v.POD_CIDR, "-j", EGRESS_CHAIN], check=True)


def record_after_up(state: Path) -> None:
    (state / "sysctls-up.json").write_text(json.dumps(read_sysctls(), indent=1))


def teardown(state: Path, kube_proxy: Path | None) -> list[str]:
    """Undo ``setup`` and what kubelet/kube-proxy left; returns what could not be undone."""
    problems: list[str] = []
    if kube_proxy is not None and kube_proxy.exists():
        sh([str(kube_proxy), "--cleanup"])
    for ipt in ("iptables", "ip6tables"):
        for chain in ("INPUT", "OUTPUT"):
            while sh([ipt, "-w", "-D", chain, "-j", "KUBE-FIREWALL"]).returncode == 0:
                pass
        for table, chains in KUBELET_CHAINS.items():
            for chain in chains:
                sh([ipt, "-w", "-t", table, "-F", chain])
                sh([ipt, "-w", "-t", table, "-X", chain])
    while sh(["iptables", "-w", "-D", "FORWARD", "-s", v.POD_CIDR, "-j", EGRESS_CHAIN]).returncode == 0:
        pass
    sh(["iptables", "-w", "-F", EGRESS_CHAIN])
    sh(["iptables", "-w", "-X", EGRESS_CHAIN])
    sh(["ip", "link", "del", v.BRIDGE])
    for cidr in (v.SERVICE_CIDR, v.POD_CIDR):
        sh(["ip", "route", "del", "blackhole", cidr])
    sh(["ip", "addr", "del", f"{v.NODE_IP}/32", "dev", "lo"])
    rec = state / "sysctls.json"
    if rec.exists():
        before = json.loads(rec.read_text())
        up = state / "sysctls-up.json"
        after_up = json.loads(up.read_text()) if up.exists() else {}
        for name, value in to_restore(before, after_up, read_sysctls()).items():
            write_sysctl(name, value)
    return problems


CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBELET_CGROUP = "kubepods"  # the kubelet's pod hierarchy (cgroupfs driver), in every controller


def kubelet_cgroups(root: Path = CGROUP_ROOT) -> list[Path]:
    """The kubelet's pod cgroup hierarchies still present: ``<controller>/kubepods`` under cgroup v1,
    ``kubepods`` under a v2 (unified) root. The kubelet creates them and never removes them itself."""
    if not root.is_dir():
        return []
    found = [d / KUBELET_CGROUP for d in sorted(root.iterdir()) if (d / KUBELET_CGROUP).is_dir()]
    return found + ([root / KUBELET_CGROUP] if (root / KUBELET_CGROUP).is_dir() else [])


def remove_kubelet_cgroups(root: Path = CGROUP_ROOT) -> list[str]:
    """Remove the kubelet's pod cgroups, deepest first (a cgroup directory goes with ``rmdir`` once it has
    no process and no child); returns those that would not go (a process still in one)."""
    problems = []
    for top in kubelet_cgroups(root):
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        try:
            top.rmdir()
        except OSError as exc:
            problems.append(f"cgroup {top}: {exc.strerror}")
    return problems


def leftovers() -> list[str]:
    """What of a cluster is still on this host (empty when ``down`` left nothing)."""
    out = [f"cgroup {d}" for d in kubelet_cgroups()]
    if v.NODE_IP in sh(["ip", "-4", "addr", "show", "dev", "lo"]).stdout:
        out.append(f"address {v.NODE_IP} on lo")
    routes = sh(["ip", "route", "show", "type", "blackhole"]).stdout
    out += [f"route blackhole {c}" for c in (v.SERVICE_CIDR, v.POD_CIDR) if c in routes]
    if sh(["ip", "link", "show", v.BRIDGE]).returncode == 0:
        out.append(f"link {v.BRIDGE}")
    for ipt in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            rules = sh([ipt, "-w", "-t", table, "-S"]).stdout
            chains = {line.split()[1] for line in rules.splitlines() if line.startswith("-N ")}
            out += [f"{ipt} -t {table} chain {c}" for c in sorted(chains) if c.startswith(("KUBE-", "GVH-", "CNI-"))]
    mounts = Path("/proc/self/mounts").read_text()
    for line in mounts.splitlines():
        target = line.split()[1]
        if target.startswith((str(v.state_root()), "/var/lib/kubelet", "/run/containerd")):
            out.append(f"mount {target}")
    for p in ("/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/var/lib/cni", "/run/containerd",
              str(v.state_root())):
        if Path(p).exists():
            out.append(f"path {p}")
    return out
