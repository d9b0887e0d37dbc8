"""Fault wiring made at deploy time: the fault proxy's per-node links, the partitioner, PostgreSQL's
small filesystem and FUSE layer, what they make available, and undoing all of it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable

from harness.platforms.base import PlatformError, Unsupported
from harness.platforms.local.deployment.state import (
    PG_DISK_MB,
    PROXY_LINK_KINDS,
    DeploymentState,
    etcd_link_name,
    pg_link_name,
    proxy_link_name,
)

log = logging.getLogger(__name__)


class FaultWiring(DeploymentState):
    """The deploy-time fault wiring of a local stack (what the local injector acts on)."""

    # ---- fault wiring ----------------------------------------------------------------------------
    # Why at deploy time: a fault proxy only bites if the client was told its address before it
    # connected, and a small filesystem only holds PostgreSQL's data if initdb wrote there. Each piece
    # is optional: when it cannot be built here, the reason goes into ``fault_unwired`` and the fault
    # kinds needing it raise Unsupported with that reason (an explained skip, never a silent pass).

    def capabilities(self) -> dict[str, str | None]:
        """Fault kind -> None if available here, else the reason it is not."""
        from harness.platforms.local.capabilities import detect

        caps = detect()
        out: dict[str, str | None] = {"kill": None, "pause": None, "restart": None, "scale": None}
        net_ok = self.network is not None
        out["partition"] = None if net_ok else "stack runs on 127.0.0.1 (no network namespaces)"
        for kind, cap in (("cpu", "cgroup-cpu"), ("memory", "cgroup-memory")):
            ok, why = caps.get(cap, (False, "unknown"))
            out[kind] = None if ok else why
        out.update(self._wired_capabilities(out))
        return out

    def _wired_capabilities(self, base: dict[str, str | None]) -> dict[str, str | None]:
        """The fault kinds that depend on deploy-time wiring, named as ``Fault.kind`` (disk per kind)."""
        out: dict[str, str | None] = {"cpu-stress": base.get("cpu"), "memory-pressure": base.get("memory")}
        link = None if self.proxy is not None else (
            "no fault proxy wired (spec.fault_proxies is off)" if not self.spec.fault_proxies
            else "no fault proxy wired (no node was started)")
        out.update({"latency": link, "timeout": link, "reset": link})
        for kind in ("disk-full", "disk-latency", "disk-eio"):
            wired = self.pg_disk if kind == "disk-full" else self.pg_faultfs
            out[kind] = None if wired is not None else self.fault_unwired.get(kind, "not wired")
        return out

    def _wire_network_faults(self) -> None:
        """The run prefix for fault objects, and a Partitioner when hosts have their own namespaces."""
        from harness import random as hrand

        self.fault_prefix = self.network.prefix if self.network is not None else hrand.run_prefix()
        if self.network is None:
            self.fault_unwired["partition"] = "stack runs on 127.0.0.1 (no network namespaces)"
            return
        from harness.platforms.local.firewall import Partitioner

        self.partitioner = Partitioner(self.network)

    def _wire_pg_disk(self) -> None:
        """Put PostgreSQL's data directory on a small filesystem of its own (disk full), seen through
        a FUSE fault layer when FUSE works (I/O latency/EIO): ``<root>/disk`` is the small filesystem,
        ``<root>/disk/data`` the real files, ``<root>/data`` (what PostgreSQL is given) the FUSE view.
        The ballast of a "disk full" fault lives in ``<root>/disk``, outside the data directory.
        Optional wiring must never cost a deployment: whatever cannot be built is recorded in
        ``fault_unwired`` and PostgreSQL runs without it."""
        if self.postgres is None or os.geteuid() != 0:
            why = "mounting a filesystem under PostgreSQL's data directory needs root"
            self.fault_unwired.update({"disk-full": why, "disk-latency": why, "disk-eio": why})
            return
        from harness.platforms.local.diskfault import FaultFS, SmallFilesystem, fuse_support
        from harness.platforms.local.netns import sh

        pg = self.postgres
        pg._prepare_root()  # the directory layout is PostgresServer's; we only mount inside it
        root = pg.data_dir.parent
        owner = (pg.data_dir.stat().st_uid, pg.data_dir.stat().st_gid)
        fuse_ok, why_not = fuse_support()
        if fuse_ok:
            try:
                disk = SmallFilesystem(self.fault_prefix, root / "disk", size_mb=PG_DISK_MB, kind="tmpfs",
                                       owner=owner, mode=0o700, workdir=self._tmp).mount()
                self.pg_disk = disk
                source = disk.mountpoint / "data"
                source.mkdir(mode=0o700)
                os.chown(source, *owner)
                # initdb through the FUSE layer takes ~10 s (thousands of small operations through a
                # Python daemon), through a bind mount well under one: initdb and the first start go
                # through a bind mount, and _wire_pg_faultfs swaps the FUSE layer in afterwards.
                sh(["mount", "--bind", str(source), str(pg.data_dir)])
                self.pg_faultfs = FaultFS(self.fault_prefix, source, pg.data_dir)
                return
            except Exception as exc:  # noqa: BLE001 - optional wiring: record why and go on without it
                log.warning("no FUSE layer under PostgreSQL's data directory: %s", exc)
                why_not = f"could not layer FUSE under PostgreSQL's data directory: {exc}"
                if self.pg_disk is not None:
                    self.pg_disk.unmount()
                    self.pg_disk = None
        self.fault_unwired.update({"disk-latency": why_not, "disk-eio": why_not})
        try:
            self.pg_disk = SmallFilesystem(self.fault_prefix, pg.data_dir, size_mb=PG_DISK_MB, kind="tmpfs",
                                           owner=owner, mode=0o700, workdir=self._tmp).mount()
        except Exception as exc:  # noqa: BLE001 - optional wiring
            log.warning("no small filesystem under PostgreSQL's data directory: %s", exc)
            self.fault_unwired["disk-full"] = f"could not mount a small filesystem for PostgreSQL: {exc}"

    def _wire_pg_faultfs(self) -> None:
        """Swap the bind mount under PostgreSQL's data directory for the FUSE fault layer: stop
        PostgreSQL (fast shutdown, data kept), unmount the bind, mount the layer, start again. If the
        layer does not come up, the bind goes back and PostgreSQL runs without it."""
        if self.pg_faultfs is None or self.postgres is None:
            return
        from harness.platforms.local.diskfault import _umount
        from harness.platforms.local.netns import sh

        self.postgres.stop(remove_data=False)
        _umount(self.postgres.data_dir)
        try:
            self.pg_faultfs.mount()
        except Exception as exc:  # noqa: BLE001 - optional wiring: record why and go on without it
            log.warning("FUSE layer under PostgreSQL's data directory failed: %s", exc)
            with contextlib.suppress(Exception):
                self.pg_faultfs.unmount()
            why = f"the FUSE layer under PostgreSQL's data directory did not mount: {exc}"
            self.fault_unwired.update({"disk-latency": why, "disk-eio": why})
            sh(["mount", "--bind", str(self.pg_faultfs.source), str(self.postgres.data_dir)])
            self.pg_faultfs = None
        self.postgres.start(timeout=30)

    def _link_env(self, name: str) -> dict[str, str]:
        """Reference stack: a node's PostgreSQL address as its fault-proxy link, in the environment
        (real Goverse reads no environment: it gets its own config file, see :meth:`_node_config`;
        only its PostgreSQL driver reads PGAPPNAME). Empty for other components or without proxies."""
        if self.spec.stack != "reference":
            # Goverse's PostgreSQL driver (lib/pq) names its sessions from PGAPPNAME: which node holds
            # which session stays visible in pg_stat_activity behind the fault proxy (secret rotation)
            p = self._procs.get(name)
            return {"PGAPPNAME": f"goverse-{name}"} if p is not None and p.instance.component == "node" else {}
        addr = self._pg_link(name)
        env = {} if addr is None else {"GOVERSE_POSTGRES_HOST": addr[0], "GOVERSE_POSTGRES_PORT": str(addr[1])}
        etcd = self._etcd_member_links(name)
        if etcd:
            env["GOVERSE_ETCD_ENDPOINTS"] = ",".join(f"http://{h}:{port}" for h, port in etcd)
        return env

    def _check_proxy_links(self) -> None:
        """``spec.proxy_links`` names only known link kinds, with fault proxies on, on a stack that
        can be wired that way: one error naming the setting and what is allowed."""
        bad = [k for k in self.spec.proxy_links if k not in PROXY_LINK_KINDS]
        if bad:
            raise PlatformError(f"StackSpec.proxy_links: unknown {bad}; allowed: {', '.join(PROXY_LINK_KINDS)}")
        if self.spec.proxy_links and not self.spec.fault_proxies:
            raise PlatformError("StackSpec.proxy_links needs fault_proxies=True (the proxies run in the harness)")
        if "gate-etcd" in self.spec.proxy_links and self.spec.stack != "reference":
            raise PlatformError("StackSpec.proxy_links: gate-etcd is wired on the reference stack only (Goverse's "
                                "gate takes its etcd endpoints from the shared config)")
        if "node-etcd" in self.spec.proxy_links and self.spec.stack == "goverse":
            log.info("proxy_links node-etcd: Goverse nodes already reach their first etcd endpoint via the proxy")

    def _etcd_member_links(self, name: str) -> list[tuple[str, int]]:
        """Reference stack with ``node-etcd`` / ``gate-etcd`` in ``spec.proxy_links``: ``name``'s own
        proxy link to every etcd member (``<name>->etcd-<i>``, an alias of that member, so partitions
        still cut it), in the member order of the direct endpoints; empty when not asked for."""
        p = self._procs.get(name)
        comp = p.instance.component if p is not None else None
        if self.etcd is None or comp not in ("node", "gate") or f"{comp}-etcd" not in self.spec.proxy_links:
            return []
        out = []
        for i, url in enumerate(self.etcd.client_urls):
            host, port = url.split("://", 1)[-1].rsplit(":", 1)
            addr = self._proxy_link(name, proxy_link_name(name, f"etcd-{i}"), (host, int(port)), f"etcd-{i}")
            if addr is None:
                return []
            out.append(addr)
        return out

    def _wire_gate_node_links(self) -> None:
        """``gate-node`` in ``spec.proxy_links``: every gate's connections to every node's API go
        through the fault proxy (link ``gate-i->node-j``, an alias of the node so partitions still cut
        it). Gates learn node addresses from etcd, so they cannot be handed the proxy's address: an
        nft ``dnat`` in each gate's namespace (output hook, before the filters) sends
        ``node_ip:api_port`` to the link's listener instead. Nodes added later (scaling) are not
        covered: a link fault naming them says so. Needs network namespaces."""
        if "gate-node" not in self.spec.proxy_links:
            return
        assert self.topology is not None
        if self.network is None:
            self.fault_unwired["gate-node"] = "gate -> node proxies need network namespaces (dnat in the gate's)"
            return
        from harness.platforms.local.firewall import render_dnat_nft, run_in_netns

        for gate in self.topology.gates:
            rules = {}
            for node in self.topology.nodes:
                addr = self._proxy_link(gate.id, proxy_link_name(gate.id, node.id), (node.host, node.api_port),
                                        node.id)
                if addr is not None:
                    rules[(node.host, node.api_port)] = addr
            run_in_netns(self.network.hosts[gate.id].ns, ["nft", "-f", "-"],
                         render_dnat_nft(f"{self.network.prefix}dnat", rules))

    def _proxy_link(self, name: str, link: str, upstream: tuple[str, int], alias_of: str) -> tuple[str, int] | None:
        """For a node: its own link of the fault proxy to ``upstream`` (created on first use), so
        latency/black hole/reset can be put on exactly that node's link, with the proxy's address
        registered as an alias of host ``alias_of`` so partitions cut the proxied path too (see
        firewall.py). None for other components or without fault proxies."""
        p = self._procs.get(name)
        if p is None or p.instance.component not in ("node", "gate") or not self.spec.fault_proxies:
            return None
        if self.proxy is None:
            from harness.platforms.local.faultproxy import FaultProxy

            listen_host = self.network.bridge_ip if self.network is not None else "127.0.0.1"
            self.proxy = FaultProxy(default_listen_host=listen_host)
        links = self.proxy.links()
        if link in links:
            return links[link][0]
        addr = self.proxy.add_link(link, upstream)
        host = self._hosts.get(alias_of)
        if host is not None:
            host.aliases.append(addr)
        return addr

    def _pg_link(self, name: str) -> tuple[str, int] | None:
        p = self._procs.get(name)
        if self.postgres is None or p is None or p.instance.component != "node":
            return None
        return self._proxy_link(name, pg_link_name(name), (self.postgres.host, self.postgres.port), "postgres")

    def _etcd_link(self, name: str) -> tuple[str, int] | None:
        """Real Goverse only uses its config's first etcd endpoint: that one goes through the proxy."""
        p = self._procs.get(name)
        if self.etcd is None or self.spec.stack != "goverse" or p is None or p.instance.component != "node":
            return None
        hostport = self.etcd.client_urls[0].split("://", 1)[-1]
        host, port = hostport.rsplit(":", 1)
        return self._proxy_link(name, etcd_link_name(name), (host, int(port)), "etcd-0")

    def _unwire_faults(self) -> None:
        """Undo every fault and piece of wiring (never raises): cgroup limits, firewall rules, the
        proxy; PostgreSQL is stopped (data kept) so its mounts can go before its directory does."""
        for limit in list(self.fault_limits.values()):
            with contextlib.suppress(Exception):
                limit.heal()
        self.fault_limits.clear()
        if self.partitioner is not None:
            with contextlib.suppress(Exception):
                self.partitioner.heal()
        if self.proxy is not None:
            with contextlib.suppress(Exception):
                self.proxy.stop()
        if self.pg_disk is not None or self.pg_faultfs is not None:
            if self.postgres is not None:
                with contextlib.suppress(Exception):
                    if self.postgres.process is not None:
                        self.postgres.process.signal(signal.SIGCONT)
                    self.postgres.stop(remove_data=False)
            for layer in (self.pg_faultfs, self.pg_disk):
                if layer is not None:
                    with contextlib.suppress(Exception):
                        layer.unmount()
            if self.postgres is not None and self.postgres._root is not None:
                from harness.platforms.local.diskfault import _umount

                with contextlib.suppress(Exception):
                    _umount(self.postgres.data_dir)  # a bind mount left by a FUSE layer that never came up
        if self.fault_prefix:
            from harness.platforms.local import cgroups

            with contextlib.suppress(Exception):
                cgroups.cleanup_leftovers(self.fault_prefix)

    def delay_postgres_links(self, ms: float) -> tuple[list[str], Callable[[], None]]:
        """``ms`` of latency, both directions, on every node -> PostgreSQL fault-proxy link for the rest of
        the run (``PostgresLinkDelay``: the load scenarios' injected regression). Returns the links and
        the undo, which clears them and never raises; Unsupported without fault proxies."""
        from harness.platforms.local.faultproxy import Latency

        proxy = self.proxy
        if proxy is None:
            raise Unsupported("no node -> PostgreSQL fault proxy wired: " + (self.capabilities().get("latency") or ""))
        links = sorted(n for n in proxy.links() if n.endswith("->postgres"))
        done: list[str] = []

        def undo() -> None:
            for link in done:
                with contextlib.suppress(Exception):
                    proxy.clear(link)

        try:
            for link in links:
                proxy.set_toxic(link, Latency(ms=float(ms), direction="both"))
                done.append(link)
        except BaseException:
            undo()
            raise
        return links, undo
