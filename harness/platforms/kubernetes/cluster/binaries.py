"""The ``binaries`` cluster provider: a one-node Kubernetes on this machine with no Docker engine.

``up`` (each phase timed and printed): Debian packages if missing → Go builds into the versioned cache
→ PKI and configs → host network (node IP on lo, blackhole routes, egress guard) → etcd, API server,
controller-manager, scheduler → containerd, pause/CoreDNS images, kubelet, kube-proxy → CoreDNS, the
default StorageClass and its hostPath provisioner. A failure, Ctrl-C or SIGTERM during ``up`` tears
down whatever had been started.

``down``: stop every pod through the API (so the kubelet runs CNI DEL and unmounts volumes), then the
processes by pid file in reverse order, then containerd's leftovers, shims, mounts (kubelet bind-mounts
its root dir onto itself), iptables chains, the bridge, routes, addresses, the state directory and the
directories the kubelet and containerd create outside it despite their flags, and restores the sysctls
they changed. ``hostnet.leftovers()`` is what the tests check is empty afterwards.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from harness.platforms.base import PlatformError
from harness.platforms.kubernetes.cluster import configs, gobuild, hostnet, images, pki
from harness.platforms.kubernetes.cluster import versions as v
from harness.waiting import wait_until

log = logging.getLogger(__name__)

DEBIAN_PACKAGES = {"containerd": "containerd", "runc": "runc", "etcd": "etcd-server", "iptables": "iptables",
                   "conntrack": "conntrack", "umoci": "umoci", "debootstrap": "debootstrap", "ctr": "containerd"}
START_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet",
               "kube-proxy", "provisioner")
OUTSIDE_DIRS = ("/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/var/lib/cni", "/run/containerd")


class Interrupted(BaseException):
    """SIGTERM arrived during ``up``. A BaseException like KeyboardInterrupt: the waits retry on
    Exception (a starting server refuses connections), and must not swallow the signal."""


class BinariesCluster:
    name = "binaries"

    def __init__(self, state: Path | None = None, echo: Callable[[str], None] | None = None) -> None:
        self.layout = configs.Layout(state or v.state_root())
        self.echo = echo or (lambda s: print(s, flush=True))
        self.timings: dict[str, float] = {}

    # --- helpers -------------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.layout.admin_kubeconfig

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        self.echo(f"[cluster] {name} ...")
        yield
        self.timings[name] = round(time.monotonic() - t0, 1)
        self.echo(f"[cluster] {name}: {self.timings[name]:.1f} s")

    def _pidfile(self, proc: str) -> Path:
        return self.layout.run / f"{proc}.pid"

    def _pid(self, proc: str) -> int | None:
        try:
            pid = int(self._pidfile(proc).read_text())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def _start(self, proc: str, cmd: list[str]) -> None:
        logf = open(self.layout.logs / f"{proc}.log", "ab")  # noqa: SIM115 - handed to the child
        p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, cwd=self.layout.root)
        logf.close()
        self._pidfile(proc).write_text(str(p.pid))

    def _api(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def _log_tail(self, proc: str) -> str:
        p = self.layout.logs / f"{proc}.log"
        return p.read_text(errors="replace")[-1500:] if p.exists() else "(no log)"

    def _wait(self, probe: Callable[[], Any], timeout: float, what: str, proc: str) -> None:
        def check() -> Any:
            if self._pid(proc) is None:
                raise PlatformError(f"{proc} exited; its log ({self.layout.logs / (proc + '.log')}) ends:\n"
                                    f"{self._log_tail(proc)}")
            return probe()

        try:
            wait_until(check, timeout, what, interval=0.25)
        except TimeoutError as exc:
            raise PlatformError(f"{exc}\n{proc} log ends:\n{self._log_tail(proc)}") from None

    # --- up ------------------------------------------------------------------------------------------

    def up(self) -> dict[str, float]:
        """Bring the cluster up (tearing down what was started if anything fails or a signal arrives)."""
        if os.geteuid() != 0:
            raise PlatformError("the binaries provider runs containerd, kubelet and host networking: run as root")
        if self.running():
            self.echo(f"[cluster] already up (kubeconfig {self.kubeconfig})")
            return {}
        old = signal.signal(signal.SIGTERM, _raise_interrupted)
        t0 = time.monotonic()
        try:
            self._up()
        except BaseException as exc:
            self.echo(f"[cluster] up failed ({type(exc).__name__}): tearing down what was started")
            with contextlib.suppress(Exception):
                self.down()
            raise
        finally:
            signal.signal(signal.SIGTERM, old)
        self.timings["total"] = round(time.monotonic() - t0, 1)
        (self.layout.root / "timings.json").write_text(json.dumps(self.timings, indent=1))
        self.echo(f"[cluster] up in {self.timings['total']:.1f} s; export KUBECONFIG={self.kubeconfig}")
        return self.timings

    def _up(self) -> None:
        L = self.layout
        with self._phase("packages"):
            ensure_packages()
        with self._phase("build (Go modules, cached)"):
            kube_bin = gobuild.build_kubernetes()
            cni_bin = gobuild.build_cni_plugins()
            pause_img, coredns_img = images.build_pause(), images.build_coredns()
        L.root.mkdir(parents=True, exist_ok=True)
        (L.root / "kube-bin").write_text(str(kube_bin))
        with self._phase("pki and configs"):
            pki.make_pki(L.pki)
            configs.write_all(L, cni_bin)
        with self._phase("host network"):
            hostnet.setup(L.root)
        cmds = configs.commands(L, kube_bin)
        with self._phase("control plane"):
            self._start("etcd", cmds["etcd"])
            self._start("kube-apiserver", cmds["kube-apiserver"])
            self._wait(self._readyz, 120, "kube-apiserver /readyz", "kube-apiserver")
            for proc in ("kube-controller-manager", "kube-scheduler"):
                self._start(proc, cmds[proc])
        with self._phase("node"):
            self._start("containerd", cmds["containerd"])
            self._wait(L.containerd_sock.exists, 60, "containerd socket", "containerd")
            for archive in (pause_img, coredns_img):
                images.import_image(archive, L.containerd_sock)
            self._start("kubelet", cmds["kubelet"])
            self._start("kube-proxy", cmds["kube-proxy"])
            self._wait(self._node_ready, 180, f"node {v.NODE_NAME} Ready", "kubelet")
        with self._phase("addons (CoreDNS, StorageClass)"):
            from harness.platforms.kubernetes import apply as k8s

            dyn = k8s.dynamic(self._api())
            k8s.apply_all(dyn, [*configs.coredns_objects(), configs.storage_class()])
            self._start("provisioner", [sys.executable, "-m", "harness.platforms.kubernetes.cluster.provisioner",
                                        str(self.kubeconfig), str(L.volumes)])
            self._wait(self._dns_ready, 120, "CoreDNS ready", "kubelet")
        hostnet.record_after_up(L.root)

    def _readyz(self) -> bool:
        try:
            api = self._api()
            resp = api.call_api("GET", f"{api.configuration.host}/readyz", _request_timeout=5)
            return int(resp.status) == 200
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def _node_ready(self) -> bool:
        from kubernetes import client

        node: Any = client.CoreV1Api(self._api()).read_node(v.NODE_NAME)
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

    def _dns_ready(self) -> bool:
        from kubernetes import client

        dep: Any = client.AppsV1Api(self._api()).read_namespaced_deployment("coredns", "kube-system")
        return bool(dep.status.ready_replicas)

    # --- status --------------------------------------------------------------------------------------

    def processes(self) -> dict[str, int | None]:
        return {proc: self._pid(proc) for proc in START_ORDER}

    def running(self) -> bool:
        return any(pid is not None for pid in self.processes().values())

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"provider": self.name, "state": str(self.layout.root),
                               "kubeconfig": str(self.kubeconfig) if self.kubeconfig.exists() else None,
                               "processes": self.processes()}
        if self.kubeconfig.exists() and self._readyz():
            from kubernetes import client

            core: Any = client.CoreV1Api(self._api())
            out["api"] = "ready"
            out["nodes"] = {n.metadata.name: next((c.status for c in n.status.conditions or [] if c.type == "Ready"),
                                                  "Unknown") for n in core.list_node().items}
            out["pods"] = len(core.list_pod_for_all_namespaces().items)
        else:
            out["api"] = "down"
        out["leftovers"] = hostnet.leftovers() if not self.running() else []
        return out

    # --- images --------------------------------------------------------------------------------------

    def load_image(self, archive: Path) -> str:
        if self._pid("containerd") is None:
            raise PlatformError("the binaries cluster is not up (goverse-harness cluster up)")
        return images.import_image(archive, self.layout.containerd_sock)

    # --- down ----------------------------------------------------------------------------------------

    def down(self, export_logs: Path | None = None) -> list[str]:
        """Take everything away; returns what is left (empty when clean)."""
        L = self.layout
        t0 = time.monotonic()
        if self._pid("kube-apiserver") and self._pid("kubelet"):
            with contextlib.suppress(Exception):
                self._drain_pods(60)
        if export_logs is not None:
            self.export_logs(export_logs)
        for proc in reversed(START_ORDER):
            if proc == "containerd":
                self._remove_containers()
            _stop(self._pid(proc), 20 if proc != "kubelet" else 10)
        for pid in self._shims():
            _stop(pid, 5)
        _unmount_under([str(L.root), *OUTSIDE_DIRS], netns_prefix="/run/netns/cni-")
        kube_bin = Path((L.root / "kube-bin").read_text()) if (L.root / "kube-bin").exists() else None
        hostnet.teardown(L.root, kube_bin / "kube-proxy" if kube_bin else None)
        hostnet.remove_kubelet_cgroups()  # the kubelet's kubepods hierarchy, in every controller
        for d in (*OUTSIDE_DIRS, str(L.root)):
            shutil.rmtree(d, ignore_errors=True)
        left = hostnet.leftovers()
        tail = f"; LEFT: {left}" if left else ", nothing left"
        self.echo(f"[cluster] down in {time.monotonic() - t0:.1f} s{tail}")
        return left

    def _drain_pods(self, timeout: float) -> None:
        """Delete every workload and pod so the kubelet tears sandboxes down properly (CNI DEL, unmounts)."""
        from kubernetes import client

        api = self._api()
        core: Any = client.CoreV1Api(api)
        apps: Any = client.AppsV1Api(api)
        for ns in core.list_namespace().items:
            name = ns.metadata.name
            if name not in ("default", "kube-system", "kube-public", "kube-node-lease"):
                with contextlib.suppress(Exception):
                    core.delete_namespace(name, grace_period_seconds=0)
        for d in apps.list_deployment_for_all_namespaces().items:
            with contextlib.suppress(Exception):
                apps.delete_namespaced_deployment(d.metadata.name, d.metadata.namespace)
        for s in apps.list_stateful_set_for_all_namespaces().items:
            with contextlib.suppress(Exception):
                apps.delete_namespaced_stateful_set(s.metadata.name, s.metadata.namespace)
        for p in core.list_pod_for_all_namespaces().items:
            with contextlib.suppress(Exception):
                core.delete_namespaced_pod(p.metadata.name, p.metadata.namespace, grace_period_seconds=0)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not self._sandboxes(running_only=True), timeout, "every pod sandbox stopped",
                       interval=0.5)

    def _ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "-a", str(self.layout.containerd_sock), "-n", "k8s.io", *args],
                              capture_output=True, text=True, check=False, timeout=60)

    def _sandboxes(self, running_only: bool = False) -> list[str]:
        """containerd's task ids (``running_only``: those not yet STOPPED — the kubelet stops a deleted
        pod's sandbox at once, with CNI DEL, but removes the stopped task only at its next GC)."""
        res = self._ctr("tasks", "ls")
        if res.returncode != 0:
            return []
        rows = [ln.split() for ln in res.stdout.splitlines()[1:] if ln.strip()]
        return [r[0] for r in rows if not running_only or (len(r) > 2 and r[2] != "STOPPED")]

    def _remove_containers(self) -> None:
        if self._pid("containerd") is None:
            return
        for task in self._sandboxes():
            self._ctr("tasks", "kill", "-s", "SIGKILL", task)
            self._ctr("tasks", "delete", "-f", task)
        for c in self._ctr("containers", "ls", "-q").stdout.split():
            self._ctr("containers", "delete", c)

    def _shims(self) -> list[int]:
        sock = str(self.layout.containerd_sock)
        out = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                with contextlib.suppress(OSError):
                    cmd = (p / "cmdline").read_bytes().split(b"\0")
                    if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and sock.encode() in cmd:
                        out.append(int(p.name))
        return out

    def export_logs(self, directory: Path) -> Path:
        """Every component's log, the pod logs and the cluster's events/pods listing into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        if self.layout.logs.exists():
            shutil.copytree(self.layout.logs, directory / "components", dirs_exist_ok=True)
        if self.layout.pod_logs.exists():
            shutil.copytree(self.layout.pod_logs, directory / "pods", dirs_exist_ok=True, symlinks=False,
                            ignore_dangling_symlinks=True)
        if self._pid("kube-apiserver"):
            with contextlib.suppress(Exception):
                from kubernetes import client

                core: Any = client.CoreV1Api(self._api())
                san = core.api_client.sanitize_for_serialization
                (directory / "events.yaml").write_text(yaml.safe_dump(san(core.list_event_for_all_namespaces())))
                (directory / "pods.yaml").write_text(yaml.safe_dump(san(core.list_pod_for_all_namespaces())))
                (directory / "nodes.yaml").write_text(yaml.safe_dump(san(core.list_node())))
        return directory


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(f"signal {signum} during cluster up")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def _stop(pid: int | None, grace: float) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; waits until the process is gone."""
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not _alive(pid), grace, f"pid {pid} exits", interval=0.1)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not _alive(pid), 10, f"pid {pid} killed", interval=0.1)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _unmount_under(prefixes: list[str], netns_prefix: str) -> None:
    """Unmount (deepest first) every mount below ``prefixes`` and the CNI network namespaces."""
    for _ in range(3):
        targets = [ln.split()[1] for ln in Path("/proc/self/mounts").read_text().splitlines()]
        ours = [t for t in targets if t.startswith(tuple(prefixes)) or t.startswith(netns_prefix)]
        if not ours:
            return
        for t in sorted(set(ours), key=len, reverse=True):
            subprocess.run(["umount", "-l", t], capture_output=True, check=False)
    for f in Path(netns_prefix).parent.glob(Path(netns_prefix).name + "*"):
        with contextlib.suppress(OSError):
            f.unlink()


def ensure_packages() -> None:
    """Install the Debian packages the provider runs (only those missing; apt-get as root)."""
    missing = sorted({pkg for tool, pkg in DEBIAN_PACKAGES.items() if shutil.which(tool) is None})
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise PlatformError(f"missing tools and no apt-get: install {', '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]):
        res = subprocess.run(args, capture_output=True, text=True, env=env, check=False, timeout=900)
        if res.returncode != 0:
            raise PlatformError(f"{' '.join(args)} failed: {res.stderr.strip()[-2000:]}")
