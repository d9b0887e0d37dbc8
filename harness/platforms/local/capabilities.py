"""What this machine lets the local platform do, detected by trying it (never assumed).

Why try instead of reading versions: a container may be root yet lack CAP_NET_ADMIN, a kernel may be
built without ``sch_netem`` and without loadable modules (this one), cgroup controllers may sit on v1,
v2 or be split between both. Each probe does the smallest real thing — create and delete a scratch
namespace, add a netem qdisc inside it, list nft tables inside it — so ``goverse-harness doctor`` and the
scenarios' skips tell the truth, with the reason.

``detect()`` returns ``{name: (available, why)}``: the primitives (``root``, ``netns``, ``nft``,
``iptables``, ``netem``, ``cgroup-cpu``, ``cgroup-memory``, ``cgroup-version``, ``tmpfs``, ``loop``,
``fuse``) and one entry per fault kind, ``fault:<kind>``, saying how it would be applied or why not.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

from harness.platforms.base import Unsupported
from harness.platforms.local import cgroups
from harness.platforms.local.diskfault import fuse_support
from harness.platforms.local.netns import sh

Caps = dict[str, tuple[bool, str]]


def _scratch_ns_probes() -> Caps:
    """Create one scratch namespace and try netem, nft and iptables inside it."""
    caps: Caps = {}
    ns = f"gvhcap{os.urandom(3).hex()}"
    r = sh(["ip", "netns", "add", ns], check=False)
    if r.returncode != 0:
        why = r.stderr.strip() or "ip netns add failed"
        return {k: (False, f"no network namespace: {why}") for k in ("netns", "netem", "nft", "iptables")}
    try:
        caps["netns"] = (True, "ip netns + veth + bridge")
        wrap = ["ip", "netns", "exec", ns]
        if shutil.which("tc"):
            r = sh([*wrap, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"], check=False)
            caps["netem"] = (r.returncode == 0, "tc netem works" if r.returncode == 0 else
                             f"tc netem refused ({r.stderr.strip() or r.returncode}): kernel lacks sch_netem")
        else:
            caps["netem"] = (False, "tc is not installed (iproute2)")
        for tool, argv in (("nft", ["nft", "list", "tables"]), ("iptables", ["iptables", "-w", "-S"])):
            if not shutil.which(tool):
                caps[tool] = (False, f"{tool} is not installed")
                continue
            r = sh([*wrap, *argv], check=False)
            caps[tool] = (r.returncode == 0, f"{tool} works in a namespace" if r.returncode == 0
                          else f"{tool} failed: {r.stderr.strip()}")
    finally:
        sh(["ip", "netns", "delete", ns], check=False)
    return caps


def _cgroup_probes() -> Caps:
    caps: Caps = {}
    versions = []
    for ctrl in ("cpu", "memory"):
        ok, why = cgroups.available(ctrl)
        caps[f"cgroup-{ctrl}"] = (ok, why)
        try:
            versions.append(f"{ctrl} {cgroups.find_hierarchy(ctrl).version}")
        except Unsupported:
            versions.append(f"{ctrl} none")
    unified = any(m[0] == "cgroup2" for m in cgroups.parse_mountinfo(cgroups.MOUNTINFO.read_text()))
    legacy = any(m[0] == "cgroup" for m in cgroups.parse_mountinfo(cgroups.MOUNTINFO.read_text()))
    layout = "hybrid" if unified and legacy else "v2" if unified else "v1" if legacy else "none"
    caps["cgroup-version"] = (layout != "none", f"{layout}: {', '.join(versions)}")
    return caps


def _fs_probes(root: bool) -> Caps:
    filesystems = Path("/proc/filesystems").read_text().split()
    caps: Caps = {
        "tmpfs": (root and "tmpfs" in filesystems,
                  "tmpfs with size=" if root else "mounting needs root"),
    }
    loop_ok = root and os.path.exists("/dev/loop-control") and bool(shutil.which("losetup")) \
        and bool(shutil.which("mkfs.ext4"))
    caps["loop"] = (loop_ok, "loop-mounted ext4 image" if loop_ok else
                    "needs root, /dev/loop-control, losetup and mkfs.ext4")
    caps["fuse"] = fuse_support()
    return caps


def fault_kinds(c: Caps) -> Caps:
    """How each fault kind is applied here, or why it cannot be (pure, from the primitives)."""
    def ok(k: str) -> bool:
        return c.get(k, (False, ""))[0]

    out: Caps = {
        "fault:kill": (True, "signal to the process group"),
        "fault:pause": (True, "SIGSTOP / SIGCONT"),
        "fault:restart": (True, "SIGTERM (grace) or SIGKILL, then start"),
        "fault:scale": (True, "start / stop instances"),
    }
    if ok("netns") and (ok("nft") or ok("iptables")):
        out["fault:partition"] = (True, f"{'nft' if ok('nft') else 'iptables'} drops inside namespaces")
    elif not ok("netns"):
        out["fault:partition"] = (False, f"needs network namespaces: {c.get('netns', (False, '?'))[1]}")
    else:
        out["fault:partition"] = (False, "neither nft nor iptables works in a namespace")
    link_how = "tc netem" if ok("netem") else "TCP fault proxy (no netem here)"
    out["fault:latency"] = (True, link_how)
    out["fault:timeout"] = (True, "TCP fault proxy black hole")
    out["fault:reset"] = (True, "TCP fault proxy RST")
    out["fault:cpu-stress"] = (ok("cgroup-cpu"), f"cgroup cpu quota: {c['cgroup-cpu'][1]}"
                               if ok("cgroup-cpu") else c.get("cgroup-cpu", (False, "no cpu cgroup"))[1])
    out["fault:memory-pressure"] = (ok("cgroup-memory"), f"cgroup memory limit: {c['cgroup-memory'][1]}"
                                    if ok("cgroup-memory") else c.get("cgroup-memory", (False, "?"))[1])
    full = ok("tmpfs") or ok("loop")
    out["fault:disk-full"] = (full, "ballast on a small tmpfs/ext4 under the data directory" if full
                              else "needs root to mount a small filesystem")
    for kind in ("latency", "eio"):
        out[f"fault:disk-{kind}"] = (ok("fuse"), "FUSE pass-through layer" if ok("fuse")
                                     else c.get("fuse", (False, "?"))[1])
    return out


@functools.lru_cache(maxsize=1)
def _detect() -> tuple[tuple[str, tuple[bool, str]], ...]:
    root = os.geteuid() == 0
    caps: Caps = {"root": (root, "euid 0" if root else f"euid {os.geteuid()}: most faults need root")}
    if root and shutil.which("ip"):
        caps.update(_scratch_ns_probes())
    else:
        why = "needs root" if not root else "ip (iproute2) is not installed"
        caps.update({k: (False, why) for k in ("netns", "netem", "nft", "iptables")})
    caps.update(_cgroup_probes())
    caps.update(_fs_probes(root))
    caps.update(fault_kinds(caps))
    return tuple(caps.items())


def detect(refresh: bool = False) -> Caps:
    """``{capability: (available, why)}``; cached for the process unless ``refresh``."""
    if refresh:
        _detect.cache_clear()
    return dict(_detect())


def require(name: str) -> str:
    """The reason ``name`` is available, or :class:`Unsupported` with the reason it is not."""
    ok, why = detect().get(name, (False, f"unknown capability {name!r}"))
    if not ok:
        raise Unsupported(f"{name}: {why}")
    return why
