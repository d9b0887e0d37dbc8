"""Container images without a Docker engine: Debian packages and wheels, packed with umoci.

Why this way: our machines have no Docker engine and no registry, but they have apt (Debian's mirror)
and PyPI. ``debootstrap`` makes a Debian rootfs, packages are added with ``dpkg -x`` (no maintainer
scripts need to run for a container), Python wheels are downloaded on the host and installed offline
inside the rootfs (pip inside a chroot cannot verify this network's TLS), and Debian's ``umoci`` packs
a directory as an OCI image (one layer). ``ctr images import`` then loads it into the cluster's
containerd under the *normalized* name (``docker.io/…``), which is what the CRI looks up.

Images are cached per content key under ``~/.cache/goverse-harness/images/<name>/<key>/image.tar``:
the refstack key covers the harness sources and the requirements file, so an unchanged tree reuses it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.platforms.base import PlatformError
from harness.platforms.kubernetes.cluster import gobuild
from harness.platforms.kubernetes.cluster import versions as v
from harness.platforms.kubernetes.cluster.configs import COREDNS_IMAGE, PAUSE_IMAGE

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[4]
REQUIREMENTS = REPO / "docker" / "refstack-requirements.txt"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "tzdata")
REFSTACK_IMAGE = "docker.io/goverse-harness/refstack:dev"
POSTGRES_IMAGE = "docker.io/library/postgres:16-alpine"
ETCD_IMAGE = "quay.io/coreos/etcd:v3.5.17"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

POSTGRES_ENTRYPOINT = r"""#!/bin/sh
# Stand-in for the postgres image's entrypoint: POSTGRES_USER, POSTGRES_PASSWORD_FILE, POSTGRES_DB, PGDATA.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
if [ "${1:-postgres}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA" && chmod 700 "$PGDATA"
  # UTF8 explicitly: with no locale in the image initdb picks SQL_ASCII, and psycopg then returns text
  # columns as bytes (the stack saw object_type b'Counter' != 'Counter')
  initdb -D "$PGDATA" --username="${POSTGRES_USER:-postgres}" --pwfile="${POSTGRES_PASSWORD_FILE}" \
    --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 --no-sync >/dev/null
  printf "host all all all scram-sha-256\n" >> "$PGDATA/pg_hba.conf"
  if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
    echo "CREATE DATABASE \"$POSTGRES_DB\";" | postgres --single -D "$PGDATA" -j postgres >/dev/null
  fi
fi
[ "${1:-postgres}" = postgres ] && shift && exec postgres -c listen_addresses='*' "$@"
exec "$@"
"""


@dataclass(frozen=True)
class ImageSpec:
    name: str  # normalized reference, e.g. docker.io/goverse-harness/refstack:dev
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = (PATH_ENV,)
    user: str | None = None
    workdir: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


def split_ref(ref: str) -> tuple[str, str]:
    """``registry/repo:tag`` -> (``registry/repo``, ``tag``) (pure)."""
    head, _, tag = ref.rpartition(":")
    if "/" in tag or not head:
        return ref, "latest"
    return head, tag


def requirements() -> list[str]:
    """The reference stack's runtime Python requirements (shared with docker/refstack.Dockerfile)."""
    lines = [ln.split("#", 1)[0].strip() for ln in REQUIREMENTS.read_text().splitlines()]
    return [ln for ln in lines if ln]


def _run(args: Sequence[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = 1800) -> str:
    res = subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout, check=False)
    if res.returncode != 0:
        raise PlatformError(f"{what} failed ({res.returncode}): {(res.stderr or res.stdout).strip()[-3000:]}")
    return res.stdout


def _need(tool: str, package: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        raise PlatformError(f"building images needs {tool!r}: apt-get install {package}")
    return exe


def mirror() -> str:
    """The Debian mirror apt on this machine uses (so debootstrap goes where apt already goes)."""
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if not f.is_file() or f.name.endswith(".disabled-by-farm"):
            continue
        for line in f.read_text().splitlines():
            words = line.split()
            if line.startswith("URIs:") and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if line.startswith("deb ") and len(words) > 2 and "security" not in words[1]:
                return words[1] if not words[1].startswith("[") else words[2]
    return "http://deb.debian.org/debian"


def pack(rootfs: Path, spec: ImageSpec, out: Path) -> Path:
    """Pack ``rootfs`` as a one-layer OCI image archive at ``out`` with umoci."""
    umoci = _need("umoci", "umoci")
    repo, tag = split_ref(spec.name)
    with tempfile.TemporaryDirectory(prefix="gvh-oci-", dir=out.parent) as tmp:
        layout, layer = Path(tmp) / "layout", Path(tmp) / "layer.tar"
        _run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(layer), "."], "tar rootfs")
        _run([umoci, "init", "--layout", str(layout)], "umoci init")
        _run([umoci, "new", "--image", f"{layout}:{tag}"], "umoci new")
        _run([umoci, "raw", "add-layer", "--image", f"{layout}:{tag}", str(layer)], "umoci raw add-layer")
        cfg = [umoci, "config", "--image", f"{layout}:{tag}", "--config.env", spec.env[0] if spec.env else PATH_ENV]
        for e in spec.env[1:]:
            cfg += ["--config.env", e]
        for a in spec.entrypoint:
            cfg += ["--config.entrypoint", a]
        for a in spec.cmd:
            cfg += ["--config.cmd", a]
        if spec.user:
            cfg += ["--config.user", spec.user]
        if spec.workdir:
            cfg += ["--config.workingdir", spec.workdir]
        for k, val in spec.labels.items():
            cfg += ["--config.label", f"{k}={val}"]
        _run(cfg, "umoci config")
        _run([umoci, "gc", "--layout", str(layout)], "umoci gc")
        tmp_out = out.with_suffix(".partial")
        _run(["tar", "-C", str(layout), "-cf", str(tmp_out), "."], "tar OCI layout")
        tmp_out.replace(out)
    (out.parent / "name").write_text(spec.name + "\n")
    return out


def _cached(name: str, key: str) -> Path:
    return v.cache_root() / "images" / name / key / "image.tar"


def _key(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def tree_hash(paths: Iterable[Path]) -> str:
    """A content hash over files (sorted paths + bytes), ignoring caches."""
    h = hashlib.sha256()
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()
                                                     and "__pycache__" not in p.parts and p.suffix != ".pyc")
        for f in files:
            h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def base_rootfs() -> Path:
    """A Debian minbase with Python (debootstrap), cached; callers copy it, never change it."""
    key = _key(SUITE, *BASE_PACKAGES)
    root = v.cache_root() / "rootfs" / f"{SUITE}-{key}"
    if (root / ".complete").exists():
        return root / "rootfs"
    debootstrap = _need("debootstrap", "debootstrap")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    t0 = time.monotonic()
    _run(["nice", "-n", "10", debootstrap, "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE,
          str(root / "rootfs"), mirror()], "debootstrap", timeout=1800)
    rfs = root / "rootfs"
    for junk in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/locale",
                 "usr/share/info"):
        shutil.rmtree(rfs / junk, ignore_errors=True)
    (rfs / "etc" / "resolv.conf").write_text("")
    (root / ".complete").write_text(f"{time.monotonic() - t0:.0f}\n")
    return rfs


def _copy_rootfs(src: Path, dst: Path) -> None:
    _run(["cp", "-a", str(src), str(dst)], "copy rootfs")


def _add_user(rootfs: Path, name: str, uid: int, home: str) -> None:
    passwd, group = rootfs / "etc" / "passwd", rootfs / "etc" / "group"
    lines = [ln for ln in passwd.read_text().splitlines() if not ln.startswith(f"{name}:")]
    passwd.write_text("\n".join([*lines, f"{name}:x:{uid}:{uid}::{home}:/usr/sbin/nologin"]) + "\n")
    glines = [ln for ln in group.read_text().splitlines() if not ln.startswith(f"{name}:")]
    group.write_text("\n".join([*glines, f"{name}:x:{uid}:"]) + "\n")


def _deb_closure(packages: Sequence[str], present: Path) -> list[str]:
    """Packages (with their Depends, recursively) that the rootfs at ``present`` does not have yet."""
    out = _run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                "--no-breaks", "--no-replaces", "--no-enhances", "--no-pre-depends", *packages], "apt-cache depends")
    names = {ln.strip() for ln in out.splitlines() if ln and not ln.startswith(" ") and not ln.startswith("<")}
    status = (present / "var" / "lib" / "dpkg" / "status").read_text()
    have = {blk.split("\n", 1)[0].removeprefix("Package: ").split(":")[0] for blk in status.split("\n\n")
            if blk.startswith("Package: ") and "Status: install ok installed" in blk}
    return sorted(n for n in names if n.split(":")[0] not in have)


def _dpkg_extract(packages: Sequence[str], rootfs: Path, work: Path) -> None:
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    _run(["apt-get", "download", *packages], "apt-get download", cwd=debs, timeout=900)
    for deb in sorted(debs.glob("*.deb")):
        # not `dpkg-deb -x`: its tar replaces the merged-/usr symlinks (/lib, /bin) with directories when a
        # package ships files under /lib, and then nothing finds ld.so ("exec …: no such file or directory")
        _run(["sh", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -x --keep-directory-symlink -C "$2"', "x", str(deb),
              str(rootfs)], f"extract {deb.name}")


def refstack_ref(tag: str = "dev") -> str:
    """The refstack image's normalized name under ``tag`` (pure). Another tag than ``dev`` lets a branch
    load its own build beside the shared one (``cluster load-image refstack --tag BRANCH``)."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
        raise PlatformError(f"--tag {tag!r}: an image tag is letters, digits, '_', '.', '-' (at most 128, "
                            "not starting with '.' or '-')")
    return f"{split_ref(REFSTACK_IMAGE)[0]}:{tag}"


def build_refstack(tag: str = "dev") -> Path:
    """The reference stack: base rootfs + /opt/venv with requirements + the harness (no deps)."""
    reqs = requirements()
    name = refstack_ref(tag)
    key = _key(_key(SUITE, *BASE_PACKAGES), *reqs, tree_hash([REPO / "harness", REPO / "pyproject.toml"]),
               *(() if name == REFSTACK_IMAGE else (name,)))
    out = _cached("refstack", key)
    if out.exists():
        return out
    base = base_rootfs()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gvh-refstack-", dir=out.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        _copy_rootfs(base, rootfs)
        wheels = rootfs / "tmp" / "wheels"
        wheels.mkdir(parents=True)
        env = {k: val for k, val in os.environ.items() if k not in ("PIP_FIND_LINKS",)}
        _run(["python3", "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", "3.11",
              "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
              "--platform", "manylinux_2_28_x86_64", "--platform", "any", "-d", str(wheels), *reqs,
              "setuptools>=61", "wheel"], "pip download (refstack wheels)", env=env, timeout=900)
        src = rootfs / "tmp" / "src"
        src.mkdir()
        shutil.copy2(REPO / "pyproject.toml", src)
        shutil.copy2(REPO / "README.md", src)
        shutil.copytree(REPO / "harness", src / "harness", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        quoted = " ".join(f"'{r}'" for r in reqs)
        script = (f"python3 -m venv /opt/venv && /opt/venv/bin/pip install -q --no-index --find-links /tmp/wheels "
                  f"{quoted} && cd /tmp/src && /opt/venv/bin/pip install -q --no-index --find-links /tmp/wheels "
                  "--no-deps . && find /opt/venv -name __pycache__ -prune -exec rm -rf {} + && "
                  "/opt/venv/bin/python -m compileall -q /opt/venv/lib")
        chroot_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        _run(["chroot", str(rootfs), "/bin/sh", "-c", script], "venv install in the image rootfs", env=chroot_env)
        shutil.rmtree(wheels)
        shutil.rmtree(src)
        pack(rootfs, ImageSpec(name, entrypoint=("python", "-m", "harness.refstack"), cmd=("--help",),
                               env=("PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                    "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "LOG_FORMAT=json"),
                               user="65532:65532"), out)
    return out


def build_postgres() -> Path:
    """A stand-in for ``postgres:16-alpine``: Debian's PostgreSQL 15 with the same entrypoint interface
    (``POSTGRES_USER``, ``POSTGRES_PASSWORD_FILE``, ``POSTGRES_DB``, ``PGDATA``; uid 70 like alpine's)."""
    out = _cached("postgres", _key(_key(SUITE, *BASE_PACKAGES), "postgresql-15", POSTGRES_ENTRYPOINT, "keep-dirlink"))
    if out.exists():
        return out
    base = base_rootfs()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gvh-pg-", dir=out.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        _copy_rootfs(base, rootfs)
        _dpkg_extract(_deb_closure(["postgresql-15"], rootfs), rootfs, Path(tmp))
        _add_user(rootfs, "postgres", 70, "/var/lib/postgresql")
        ep = rootfs / "usr" / "local" / "bin" / "docker-entrypoint.sh"
        ep.write_text(POSTGRES_ENTRYPOINT)
        ep.chmod(0o755)
        for d in ("var/lib/postgresql", "var/run/postgresql"):
            (rootfs / d).mkdir(parents=True, exist_ok=True)
            os.chown(rootfs / d, 70, 70)
        pack(rootfs, ImageSpec(POSTGRES_IMAGE, entrypoint=("docker-entrypoint.sh",), cmd=("postgres",),
                               env=("PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                                    "/usr/bin:/sbin:/bin", "PGDATA=/var/lib/postgresql/data")), out)
    return out


def build_etcd() -> Path:
    """A stand-in for ``quay.io/coreos/etcd``: Debian's etcd and etcdctl at /usr/local/bin (the manifests'
    command; the backup CronJob and the restore Jobs run etcdctl from the same image, as the real one has it)."""
    out = _cached("etcd", _key(_key(SUITE, *BASE_PACKAGES), "etcd-server", "etcd-client", "keep-dirlink"))
    if out.exists():
        return out
    base = base_rootfs()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gvh-etcd-", dir=out.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        _copy_rootfs(base, rootfs)
        _dpkg_extract(["etcd-server", "etcd-client"], rootfs, Path(tmp))
        (rootfs / "usr" / "local" / "bin").mkdir(parents=True, exist_ok=True)
        for exe in ("etcd", "etcdctl"):
            shutil.move(str(rootfs / "usr" / "bin" / exe), rootfs / "usr" / "local" / "bin" / exe)
        pack(rootfs, ImageSpec(ETCD_IMAGE, entrypoint=("/usr/local/bin/etcd",),
                               env=(PATH_ENV, "ETCD_UNSUPPORTED_ARCH=")), out)
    return out


def _single_binary(name: str, ref: str, binary: Path, entry: str) -> Path:
    out = _cached(name, _key(ref, hashlib.sha256(binary.read_bytes()).hexdigest()))
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"gvh-{name}-", dir=out.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        (rootfs / "etc").mkdir(parents=True)
        (rootfs / "tmp").mkdir(mode=0o1777)
        (rootfs / "etc" / "passwd").write_text("root:x:0:0::/:/nologin\nnobody:x:65534:65534::/:/nologin\n")
        shutil.copy2(binary, rootfs / entry.lstrip("/"))
        pack(rootfs, ImageSpec(ref, entrypoint=(entry,)), out)
    return out


def build_pause() -> Path:
    return _single_binary("pause", PAUSE_IMAGE, gobuild.build_pause(), "/pause")


def build_coredns() -> Path:
    return _single_binary("coredns", COREDNS_IMAGE, gobuild.build_coredns(), "/coredns")


BUILDERS = {"pause": build_pause, "coredns": build_coredns, "refstack": build_refstack,
            "postgres": build_postgres, "etcd": build_etcd}


def image_name(archive: Path) -> str:
    return (archive.parent / "name").read_text().strip()


def import_image(archive: Path, containerd_sock: Path) -> str:
    """Load an image archive into the cluster's containerd (namespace k8s.io) under its normalized name."""
    ctr = _need("ctr", "containerd")
    name = image_name(archive)
    repo, _tag = split_ref(name)
    _run([ctr, "-a", str(containerd_sock), "-n", "k8s.io", "images", "import", "--base-name", repo, str(archive)],
         f"ctr images import {name}")
    return name
