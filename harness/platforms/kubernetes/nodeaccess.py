"""Faults applied from the node itself, for clusters whose node the harness runs on (the binaries
provider): what Chaos Mesh's daemon does, without Chaos Mesh.

- partitions: the same nft drops as the local platform (``local.firewall.plan``/``render_nft``), installed
  inside each pod's network namespace (entered through one of the pod's processes with ``nsenter``);
  a peer reached through a Service (etcd, PostgreSQL) is also dropped by its ClusterIP when every
  instance behind the Service is dropped, because replies come back un-DNATed to that address;
- pause: the instance's container's cgroup freezer (v1 ``freezer.state``, v2 ``cgroup.freeze``), which
  stops every process of the container like SIGSTOP would, and thaws it on resume.

Why a pod's processes are found through ``/proc/*/cgroup``: the kubelet (cgroupfs driver) puts every
container of a pod under ``…/pod<uid>/``, so a pid from there names the pod's sandbox namespaces.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.platforms.base import PlatformError, Unsupported

if TYPE_CHECKING:
    from harness.platforms.local.cgroups import Hierarchy

TABLE = "gvh_partition"


def service_drops(grudge: Mapping[str, Iterable[str]], services: Mapping[str, tuple[Sequence[str], str]]
                  ) -> dict[str, set[str]]:
    """The Service ClusterIPs each grudge holder must also drop: ``services`` maps a Service to (the
    instances behind it, its ClusterIP). A holder that drops packets from *every* instance behind a
    Service drops its ClusterIP too — replies to connections made through the Service come back from
    that address, so the pod-IP drops alone never match them (a one-way cut of a node from a 3-member
    etcd left its lease alive). A holder that drops only some of them keeps the ClusterIP: dropping it
    would cut the members it still reaches."""
    out: dict[str, set[str]] = {}
    for holder, held in grudge.items():
        held_set = set(held)
        for members, ip in services.values():
            if members and ip and set(members) <= held_set:
                out.setdefault(holder, set()).add(ip)
    return out


def pod_pids(uid: str) -> list[int]:
    """Processes of the pod with this uid on this machine (empty if the pod is not on this node)."""
    marker = f"pod{uid}"
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if marker in (p / "cgroup").read_text():
                out.append(int(p.name))
        except OSError:
            continue
    return sorted(out)


def is_sandbox(pid: int) -> bool:
    """The pod's pause process (it holds the namespaces; killing it would tear the sandbox down)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "pause"
    except OSError:
        return False


def netns_pid(uid: str) -> int:
    pids = pod_pids(uid)
    if not pids:
        raise Unsupported(f"pod {uid} has no process on this machine: the harness does not run on its node")
    return pids[0]


def nft_in_pod(uid: str, script: str) -> None:
    """Run an ``nft -f`` script inside the pod's network namespace."""
    pid = netns_pid(uid)
    res = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "nft", "-f", "-"], input=script, text=True,
                         capture_output=True, check=False, timeout=30)
    if res.returncode != 0:
        raise PlatformError(f"nft in pod {uid} (pid {pid}) failed: {res.stderr.strip()}")


def isolate_script() -> str:
    """Every packet in and out of the pod dropped but loopback: from the rest of the cluster the pod is a
    machine that went down (its restarted container can neither register nor be reached)."""
    return (f"add table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n"
            "  chain input {\n    type filter hook input priority -10; policy drop;\n    iif lo accept\n  }\n"
            "  chain output {\n    type filter hook output priority -10; policy drop;\n    oif lo accept\n  }\n}\n")


def heal_script() -> str:
    return f"add table inet {TABLE}\ndelete table inet {TABLE}\n"


def freezer_files(uid: str, container_id: str | None = None) -> list[Path]:
    """The freeze control file (cgroup v1 freezer or v2 ``cgroup.freeze``) of the pod, or with
    ``container_id`` of that container only (a node pod's pg-proxy sidecar stays running: a paused node
    is a stopped process, not a stopped network path — the local platform's proxy is not paused either)."""
    sub = f"pod{uid}/*{container_id.rsplit('://', 1)[-1]}*" if container_id else f"pod{uid}"
    v1 = sorted(Path("/sys/fs/cgroup/freezer").glob(f"kubepods*/**/{sub}/freezer.state"))
    if v1:
        return v1[:1]
    return sorted(Path("/sys/fs/cgroup").glob(f"kubepods*/**/{sub}/cgroup.freeze"))[:1]


def freeze(uid: str, frozen: bool, container_id: str | None = None) -> Path:
    files = freezer_files(uid, container_id)
    if not files:
        raise Unsupported(f"no cgroup freezer for pod {uid}{f' container {container_id}' if container_id else ''} "
                          "on this machine (not its node, or no freezer)")
    f = files[0]
    f.write_text(("FROZEN" if frozen else "THAWED") if f.name == "freezer.state" else ("1" if frozen else "0"))
    return f


def is_frozen(path: Path) -> bool:
    text = path.read_text().strip()
    return text == "FROZEN" if path.name == "freezer.state" else text == "1"


def container_pids(uid: str, container_id: str | None = None) -> list[int]:
    """Processes of the pod's containers (not its sandbox), oldest pid first; with ``container_id``
    (``containerd://<id>`` or the bare id) only that container's: a pod with a sidecar (the node's
    pg-proxy, started first) has more than one, and the oldest is then not the app's."""
    pids = [p for p in pod_pids(uid) if not is_sandbox(p)]
    if not container_id:
        return pids
    cid = container_id.rsplit("://", 1)[-1]
    out = []
    for p in pids:
        try:
            if cid in Path(f"/proc/{p}/cgroup").read_text():
                out.append(p)
        except OSError:
            continue
    return out


def container_pid(uid: str, container_id: str | None = None) -> int:
    """The oldest process of the pod's container ``container_id`` (else of any container but the
    sandbox): the app container's main process."""
    pids = container_pids(uid, container_id)
    if not pids:
        raise Unsupported(f"pod {uid} has no container process on this machine: the harness does not run on its node")
    return pids[0]


def container_hierarchy(controller: str, pid: int) -> Hierarchy:
    """The cgroup v1 hierarchy of ``controller`` with the container's own group as the base, so the
    local platform's limits (``local.cgroups.CpuLimit``/``MemoryLimit``) nest their group *inside* the
    container's: the pod's own limits stay above ours, and the kubelet's accounting still sees the
    processes. cgroup v2 forbids a group with processes to have children with controllers, so there the
    limit would have to be written on the container's group itself: not done, Unsupported."""
    from harness.platforms.local import cgroups

    try:
        own = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError as exc:
        raise Unsupported(f"pid {pid} is gone: {exc}") from None
    h = cgroups.find_hierarchy(controller, self_cgroup=own)
    if h.version != "v1":
        raise Unsupported(f"the {controller} controller is on cgroup v2 here: a limit inside a container's "
                          "group needs v1 (v2 forbids controllers below a group with processes)")
    return h
