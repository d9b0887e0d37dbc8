"""How long a fresh machine spends building what the Kubernetes tier needs, with every cache empty.

Why: `.ci/run` must stay under 75 minutes on a fresh machine; the warm run never builds, so the cold
figure is the warm one plus this. Each part is built into a throw-away cache (``GVH_CACHE_DIR``) with
empty Go module and build caches (``GOMODCACHE``, ``GOCACHE``), so nothing under ``~/.cache`` or
``~/go`` is read or changed; modules come from the Go module proxy as on a new machine. Apt packages
(~30 s when missing) and the Python environment are not included. Prints seconds per part.

    python3 benchmarks/bench_cold_build.py [--keep DIR] [--only PART]    # needs root for the images (debootstrap)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PARTS = ("kubernetes", "cni", "coredns", "pause", "images")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="build into this directory and keep it (default: a temp dir, removed)")
    ap.add_argument("--only", choices=PARTS, action="append", help="build only these parts (repeatable)")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="gvh-cold-"))
    env = dict(os.environ, GVH_CACHE_DIR=str(root / "cache"), GOMODCACHE=str(root / "gomod"),
               GOCACHE=str(root / "gocache"), GOPATH=str(root / "gopath"))
    code = ("import sys, time\nfrom harness.platforms.kubernetes.cluster import gobuild\n"
            "fn = {'kubernetes': gobuild.build_kubernetes, 'cni': gobuild.build_cni_plugins,"
            " 'coredns': gobuild.build_coredns, 'pause': gobuild.build_pause}[sys.argv[1]]\nfn()\n")
    figures: dict[str, float] = {}
    try:
        for part in args.only or PARTS:
            t0 = time.monotonic()
            cmd = ([sys.executable, "-m", "harness.cli", "cluster", "build-images", "refstack", "postgres", "etcd"]
                   if part == "images" else [sys.executable, "-c", code, part])
            subprocess.run(cmd, env=env, check=True)
            figures[part] = round(time.monotonic() - t0, 1)
            print(f"{part:<12} {figures[part]:8.1f} s", flush=True)
    finally:
        if args.keep is None:
            subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)  # Go's module cache is read-only
            shutil.rmtree(root, ignore_errors=True)
    print(f"{'total':<12} {sum(figures.values()):8.1f} s   (load average {os.getloadavg()[0]:.1f} at the end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
