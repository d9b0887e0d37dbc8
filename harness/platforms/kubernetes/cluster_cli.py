"""``goverse-harness cluster up|down|status|load-image|build-images [--provider kind|k3d|binaries]``.

Kept apart from ``harness/cli.py`` (which only forwards ``cluster …`` here) so the Kubernetes half owns
its command line. Exit codes: 0 ok, 1 the operation failed (message on stderr), 2 bad arguments,
3 ``down`` left something behind, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from harness.platforms.base import PlatformError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="goverse-harness cluster",
                                description="Bring a test Kubernetes cluster up or down (kind/k3d with Docker, "
                                            "binaries without).")
    p.add_argument("action", choices=("up", "down", "status", "load-image", "build-images"))
    p.add_argument("images", nargs="*", help="load-image: image archives (OCI tar) or names of built images "
                                             "(refstack, postgres, etcd); build-images: which to build")
    p.add_argument("--provider", choices=("kind", "k3d", "binaries"),
                   help="default: kind when a Docker engine answers, else binaries")
    p.add_argument("--cluster-name", default="goverse-harness", help="kind/k3d cluster name")
    p.add_argument("--export-logs", type=Path, metavar="DIR", help="down: save cluster logs into DIR first")
    p.add_argument("--with-images", action="store_true",
                   help="up: also build (cached) and load the refstack, PostgreSQL and etcd images")
    p.add_argument("--tag", default="dev",
                   help="build-images/load-image: the refstack image's tag (default dev); another tag builds "
                        "and loads goverse-harness/refstack:TAG beside the shared one (then --image or GVH_IMAGE)")
    return p


def _build(names: list[str], tag: str = "dev") -> list[Path]:
    from harness.platforms.kubernetes.cluster import images

    out = []
    for name in names or ["refstack", "postgres", "etcd"]:
        if name not in images.BUILDERS:
            raise PlatformError(f"image {name!r}: allowed {', '.join(images.BUILDERS)} or a path to an OCI archive")
        t0 = time.monotonic()
        out.append(images.build_refstack(tag) if name == "refstack" else images.BUILDERS[name]())
        print(f"[images] {name}: {out[-1]} ({time.monotonic() - t0:.1f} s)", flush=True)
    return out


def main(argv: list[str]) -> int:
    from harness.platforms.kubernetes.cluster import make_provider

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        if args.action == "build-images":
            _build(args.images, args.tag)
            return 0
        prov = make_provider(args.provider, args.cluster_name)
        if args.action == "up":
            prov.up()
            if args.with_images:
                t0 = time.monotonic()
                for archive in _build([]):
                    prov.load_image(archive)
                print(f"[cluster] images built and loaded: {time.monotonic() - t0:.1f} s", flush=True)
            print(f"export KUBECONFIG={prov.kubeconfig}")
            return 0
        if args.action == "down":
            left = prov.down(args.export_logs)
            if left:
                print("cluster down left: " + "; ".join(left), file=sys.stderr)
                return 3
            return 0
        if args.action == "status":
            print(json.dumps(prov.status(), indent=1))
            return 0
        archives = [Path(a) if Path(a).exists() else None for a in args.images]
        names = [a for a, p in zip(args.images, archives, strict=True) if p is None]
        # no argument: build and load the default images; only archives: load just those (an empty
        # names list must not mean "all defaults", which reloaded images nobody asked for)
        built = _build(names, args.tag) if names or not args.images else []
        for archive in [p for p in archives if p is not None] + built:
            print(f"loaded {prov.load_image(archive)}", flush=True)
        return 0
    except PlatformError as exc:
        print(f"goverse-harness cluster {args.action}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"goverse-harness cluster {args.action}: interrupted", file=sys.stderr)
        return 130
    except BaseException as exc:
        if type(exc).__name__ != "Interrupted":  # SIGTERM during binaries `up` (after its teardown)
            raise
        print(f"goverse-harness cluster {args.action}: {exc}; what had been started was taken down",
              file=sys.stderr)
        return 143
