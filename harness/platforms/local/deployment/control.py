"""The Deployment protocol's process side for a local stack: endpoints, instances, signals, scale."""

from __future__ import annotations

import signal

from harness.platforms.base import Endpoints, Instance, Unsupported
from harness.platforms.local.deployment.bringup import BringUp
from harness.platforms.local.process import ManagedProcess


class ProcessControl(BringUp):
    """Find, signal, stop, start and scale the instances of a local stack."""

    def endpoints(self) -> Endpoints:
        assert self.topology is not None and self.postgres is not None
        gates = [p.instance.api_url or "" for p in self._procs.values() if p.instance.component == "gate"]
        ins = self._procs.get("inspector")
        return Endpoints(gates=gates, inspector=ins.instance.api_url if ins else None,
                         etcd=list(self.topology.etcd_endpoints),
                         postgres_dsn_redacted=self.postgres.dsn_redacted(), prefix=self.spec.prefix,
                         shards=self.spec.shards)

    def gate_urls(self, only_running: bool = False) -> dict[str, str]:
        return {n: p.instance.api_url or "" for n, p in sorted(self._procs.items())
                if p.instance.component == "gate" and (p.instance.running or not only_running)}

    def gate_grpc_addrs(self) -> dict[str, str]:
        """Gate name -> ``host:port`` of its gRPC listener (real Goverse's only reliable-call path)."""
        assert self.topology is not None
        return {g.id: f"{g.host}:{g.grpc_port}" for g in self.topology.gates}

    def instances(self, component: str | None = None) -> list[Instance]:
        out = [p.instance for p in self._procs.values()]
        if self.etcd is not None:
            for m in self.etcd.members:
                out.append(Instance(m.name, "etcd", self._host_ip(m.name), api_url=m.client_url,
                                    pid=m.process.pid if m.process else None,
                                    running=bool(m.process and m.process.is_running())))
        if self.postgres is not None:
            pr = self.postgres.process
            out.append(Instance("postgres", "postgres", self.postgres.host, pid=pr.pid if pr else None,
                                running=bool(pr and pr.is_running())))
        if component is not None:
            out = [i for i in out if i.component == component]
        return sorted(out, key=lambda i: i.name)

    def instance(self, name: str) -> Instance:
        for i in self.instances():
            if i.name == name:
                return i
        raise KeyError(f"no instance named {name!r}; have {[i.name for i in self.instances()]}")

    def process(self, name: str) -> ManagedProcess:
        """The live process of a stack instance, etcd member or Postgres (for fault injectors)."""
        if name in self._procs and self._procs[name].process is not None:
            return self._procs[name].process  # type: ignore[return-value]
        if self.etcd is not None:
            for m in self.etcd.members:
                if m.name == name and m.process is not None:
                    return m.process
        if name == "postgres" and self.postgres is not None and self.postgres.process is not None:
            return self.postgres.process
        raise KeyError(f"no process for {name!r}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        with self._lock:
            proc = self.process(name)
            proc.signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM) and name in self._procs:
                proc.wait(self.spec.timers.shutdown_grace + 5)
                self._procs[name].instance.running = proc.is_running()

    def stop(self, name: str, graceful: bool = True) -> int | None:
        with self._lock:
            if name in self._procs:
                p = self._procs[name]
                if p.process is None:
                    return None
                grace = self.spec.timers.shutdown_grace + 2 if graceful else 0.0
                rc = p.process.stop(grace) if graceful else (p.process.kill() or p.process.wait(10))
                p.instance.running = False
                p.instance.pid = None
                return rc
            if self.etcd is not None:
                for m in self.etcd.members:
                    if m.name == name:
                        m.stop()
                        return None
            if name == "postgres" and self.postgres is not None:
                self.postgres.stop()
                return None
            raise KeyError(name)

    def start(self, name: str) -> None:
        with self._lock:
            if name in self._procs:
                p = self._procs[name]
                if p.process is not None and p.process.is_running():
                    return
                self._spawn(name)
                return
            if self.etcd is not None:
                for m in self.etcd.members:
                    if m.name == name:
                        m.start()
                        return
            if name == "postgres" and self.postgres is not None:
                self.postgres.start()
                return
            raise KeyError(name)

    def restart(self, name: str, graceful: bool = True) -> None:
        self.stop(name, graceful=graceful)
        self.start(name)

    def pause(self, name: str) -> None:
        self.process(name).signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.process(name).signal(signal.SIGCONT)

    def scale(self, component: str, n: int) -> list[str]:
        """Start or gracefully stop instances (highest index first) until ``n`` run; returns changed names."""
        if component not in ("node", "gate"):
            raise Unsupported(f"scale: component must be node or gate, got {component!r}")
        with self._lock:
            assert self.topology is not None
            names = sorted((k for k, p in self._procs.items() if p.instance.component == component),
                           key=lambda s: int(s.rsplit("-", 1)[1]))
            running = [k for k in names if self._procs[k].instance.running]
            changed: list[str] = []
            while len(running) < n:
                stopped = [k for k in names if k not in running]
                if stopped:
                    name = stopped[0]
                else:
                    idx = len(names)
                    name = self._add_node(idx) if component == "node" else self._add_gate(idx)
                    names.append(name)
                    self._write_config()
                self._spawn(name)
                running.append(name)
                changed.append(name)
            while len(running) > n:
                name = running.pop()
                self.stop(name, graceful=True)
                changed.append(name)
            return changed

    def topology_roles(self, running_only: bool = True) -> dict[str, str]:
        """Instance name -> role (``node``, ``gate``, ``etcd``, ``postgres``, ``inspector``), the
        topology :func:`harness.faults.spec.resolve_target` and the partition shapes work on."""
        return {i.name: i.component for i in self.instances() if i.running or not running_only}
