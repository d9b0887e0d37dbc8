"""Faults applied from the node itself, for clusters whose node the harness runs on (the binaries
provider): what Chaos Mesh's daemon does, without Chaos Mesh.

- partitions: the same nft drops as the local platform (``local.firewall.plan``/``render_nft``), installed
  inside each pod's network namespace (entered through one of the pod's processes with ``nsenter``);
  a peer reached through a Service (etcd, PostgreSQL) is also dropped by its ClusterIP, because replies
  come back un-DNATed to that address;
- pause: the pod's cgroup freezer (v1 ``freezer.state``, v2 ``cgroup.freeze``), which stops every
  process of the pod like SIGSTOP would, and thaws it on resume.

Why a pod's processes are found through ``/proc/*/cgroup``: the kubelet (cgroupfs driver) puts every
container of a pod under ``…/pod<uid>/``, so a pid from there names the pod's sandbox namespaces.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.platforms.base import PlatformError, Unsupported

TABLE = "gvh_partition"


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


def heal_script() -> str:
    return f"add table inet {TABLE}\ndelete table inet {TABLE}\n"


def freezer_files(uid: str) -> list[Path]:
    """The pod-level freeze control file (cgroup v1 freezer or v2 ``cgroup.freeze``)."""
    v1 = sorted(Path("/sys/fs/cgroup/freezer").glob(f"kubepods*/**/pod{uid}/freezer.state"))
    if v1:
        return v1[:1]
    return sorted(Path("/sys/fs/cgroup").glob(f"kubepods*/**/pod{uid}/cgroup.freeze"))[:1]


def freeze(uid: str, frozen: bool) -> Path:
    files = freezer_files(uid)
    if not files:
        raise Unsupported(f"no cgroup freezer for pod {uid} on this machine (not its node, or no freezer)")
    f = files[0]
    f.write_text(("FROZEN" if frozen else "THAWED") if f.name == "freezer.state" else ("1" if frozen else "0"))
    return f


def is_frozen(path: Path) -> bool:
    text = path.read_text().strip()
    return text == "FROZEN" if path.name == "freezer.state" else text == "1"
