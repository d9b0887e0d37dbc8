"""Build the cluster's Go programs from the Go module proxy into the versioned cache.

Why from modules: machines of ours have no Docker engine and no container registry, but they do reach
the Go module proxy. ``k8s.io/kubernetes`` is not meant to be required as a module (its staging
modules are ``replace``d to ``./staging``), so the go.mod requires and replaces every staging module at
the matching ``v0.x`` tag; the three ``k8s.io/sample-*`` modules are not served at all and become empty
local stubs. A result directory is used only when its ``.complete`` marker exists, so an interrupted
build is redone, never half-used. Builds run under ``nice`` (the machine is shared).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from harness.platforms.base import PlatformError
from harness.platforms.kubernetes.cluster import versions as v

log = logging.getLogger(__name__)

_SAMPLES = ("sample-apiserver", "sample-cli-plugin", "sample-controller")

COREDNS_MAIN = """// A CoreDNS with only the plugins a hermetic in-cluster DNS needs (no forward, no cloud plugins):
// builds in a fraction of the full CoreDNS's time.
package main

import (
\t"github.com/coredns/coredns/core/dnsserver"
\t"github.com/coredns/coredns/coremain"
\t_ "github.com/coredns/coredns/plugin/cache"
\t_ "github.com/coredns/coredns/plugin/errors"
\t_ "github.com/coredns/coredns/plugin/health"
\t_ "github.com/coredns/coredns/plugin/kubernetes"
\t_ "github.com/coredns/coredns/plugin/loadbalance"
\t_ "github.com/coredns/coredns/plugin/ready"
\t_ "github.com/coredns/coredns/plugin/reload"
\t_ "github.com/coredns/coredns/plugin/template"
)

func init() {
\tdnsserver.Directives = []string{"reload", "ready", "health", "errors", "loadbalance", "cache", "template",
\t\t"kubernetes"}
}

func main() { coremain.Run() }
"""


def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        raise PlatformError("the binaries provider builds Kubernetes from Go modules: install Go >= 1.24 "
                            "(`go` on PATH)")
    return go


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(CGO_ENABLED="0", GOFLAGS="-mod=mod -buildvcs=false")
    return env


def _run(args: list[str], cwd: Path, what: str, timeout: float = 3600) -> str:
    res = subprocess.run(["nice", "-n", "19", *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                         timeout=timeout, check=False)
    if res.returncode != 0:
        raise PlatformError(f"{what} failed ({res.returncode}): {res.stderr.strip()[-3000:]}")
    return res.stdout


def kubernetes_gomod(kubernetes_mod: str, version: str = v.KUBERNETES, staging: str = v.KUBERNETES_STAGING) -> str:
    """The go.mod that builds ``k8s.io/kubernetes`` commands from modules (pure: takes its go.mod text)."""
    lines = ["module gvhk8sbuild", "", "go 1.24.0", "", f"require k8s.io/kubernetes {version}", ""]
    for raw in kubernetes_mod.splitlines():
        parts = raw.split()
        if "=>" not in parts or "./staging" not in raw:
            continue
        mod = parts[0] if parts[0] != "replace" else parts[1]
        name = mod.split("/", 1)[1] if mod.startswith("k8s.io/") else ""
        if name in _SAMPLES:
            lines += [f"require {mod} v0.0.0", f"replace {mod} => ./stub/{name}"]
        else:
            lines += [f"require {mod} {staging}", f"replace {mod} => {mod} {staging}"]
    return "\n".join(lines) + "\n"


def _done(out: Path, names: Iterable[str]) -> bool:
    return (out / ".complete").exists() and all((out / n).exists() for n in names)


def _finish(out: Path, timings: dict[str, float]) -> None:
    (out / ".complete").write_text(json.dumps(timings, indent=1) + "\n")


def build_kubernetes(work: Path | None = None) -> Path:
    """kube-apiserver, -controller-manager, -scheduler, kubelet and kube-proxy; returns the bin dir."""
    out = v.cache_dir("kubernetes", v.KUBERNETES) / "bin"
    if _done(out, v.KUBE_COMPONENTS):
        return out
    go = _go()
    work = work or v.cache_root() / "build" / f"kubernetes-{v.KUBERNETES}"
    work.mkdir(parents=True, exist_ok=True)
    info = json.loads(_run([go, "mod", "download", "-json", f"k8s.io/kubernetes@{v.KUBERNETES}"], work,
                           "go mod download k8s.io/kubernetes"))
    (work / "go.mod").write_text(kubernetes_gomod(Path(info["GoMod"]).read_text()))
    for name in _SAMPLES:
        (work / "stub" / name).mkdir(parents=True, exist_ok=True)
        (work / "stub" / name / "go.mod").write_text(f"module k8s.io/{name}\n\ngo 1.24.0\n")
    imports = "\n".join(f' _ "k8s.io/kubernetes/cmd/{c}"' for c in v.KUBE_COMPONENTS)
    (work / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    _run([go, "mod", "tidy"], work, "go mod tidy (kubernetes)")
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    ver = "k8s.io/component-base/version"
    ldflags = f"-s -w -X {ver}.gitVersion={v.KUBERNETES} -X {ver}.gitTreeState=clean"
    for comp in v.KUBE_COMPONENTS:
        t0 = time.monotonic()
        _run([go, "build", "-ldflags", ldflags, "-o", str(out / comp), f"k8s.io/kubernetes/cmd/{comp}"], work,
             f"go build {comp}")
        timings[comp] = round(time.monotonic() - t0, 1)
        log.info("built %s in %.0f s", comp, timings[comp])
    _finish(out, timings)
    return out


def _simple_module(name: str, module: str, version: str, work: Path) -> str:
    go = _go()
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "go.mod").exists():
        _run([go, "mod", "init", name], work, f"go mod init {name}")
    _run([go, "get", f"{module}@{version}"], work, f"go get {module}@{version}")
    return go


def build_cni_plugins() -> Path:
    """The CNI plugins the node uses (bridge, host-local, loopback, portmap)."""
    out = v.cache_dir("cni-plugins", v.CNI_PLUGINS) / "bin"
    if _done(out, v.CNI_PLUGIN_PATHS):
        return out
    work = v.cache_root() / "build" / f"cni-plugins-{v.CNI_PLUGINS}"
    module = "github.com/containernetworking/plugins"
    go = _simple_module("gvhcnibuild", module, v.CNI_PLUGINS, work)
    imports = "\n".join(f' _ "{module}/{p}"' for p in v.CNI_PLUGIN_PATHS.values())
    (work / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    _run([go, "mod", "tidy"], work, "go mod tidy (cni)")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    for name, path in v.CNI_PLUGIN_PATHS.items():
        _run([go, "build", "-ldflags", "-s -w", "-o", str(out / name), f"{module}/{path}"], work, f"go build {name}")
    _finish(out, {"all": round(time.monotonic() - t0, 1)})
    return out


def build_coredns() -> Path:
    """A minimal CoreDNS (see ``COREDNS_MAIN``); returns the binary's path."""
    out = v.cache_dir("coredns", v.COREDNS) / "bin"
    if _done(out, ["coredns"]):
        return out / "coredns"
    work = v.cache_root() / "build" / f"coredns-{v.COREDNS}"
    go = _simple_module("gvhcoredns", "github.com/coredns/coredns", v.COREDNS, work)
    (work / "main.go").write_text(COREDNS_MAIN)
    _run([go, "mod", "tidy"], work, "go mod tidy (coredns)")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    _run([go, "build", "-ldflags", "-s -w", "-o", str(out / "coredns"), "."], work, "go build coredns")
    _finish(out, {"coredns": round(time.monotonic() - t0, 1)})
    return out / "coredns"


def build_pause() -> Path:
    """The sandbox's pause binary, from Kubernetes' own pause.c (static, with the C compiler)."""
    out = v.cache_dir("pause", v.PAUSE_TAG) / "bin"
    if _done(out, ["pause"]):
        return out / "pause"
    go = _go()
    gomodcache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    src = Path(gomodcache) / f"k8s.io/kubernetes@{v.KUBERNETES}/build/pause/linux/pause.c"
    if not src.exists():
        raise PlatformError(f"{src} is missing: build Kubernetes first")
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise PlatformError("building the pause image needs a C compiler (apt-get install gcc)")
    out.mkdir(parents=True, exist_ok=True)
    _run([cc, "-Os", "-static", "-DVERSION=gvh", "-o", str(out / "pause"), str(src)], out, "cc pause.c")
    _finish(out, {})
    return out / "pause"
