"""The platform interface: where a stack runs. Scenarios only ever see these types.

Why a Protocol and plain dataclasses: the same scenario must run on the local platform (processes and
network namespaces on this machine) and on Kubernetes; Testground's lesson is that the runner interface
must be small and that a missing capability is an explicit ``Unsupported`` (turned into a skip with the
reason in the report), never a silent pass.
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from harness.cluster_state import ClusterState

if TYPE_CHECKING:  # the contract names these types; importing them at run time would make a cycle
    from harness.faults.nemesis import Injector
    from harness.history import Recorder
    from harness.platforms.operations import Operations

Component = Literal["node", "gate", "inspector", "etcd", "postgres"]
COMPONENTS: tuple[str, ...] = ("node", "gate", "inspector", "etcd", "postgres")


class Unsupported(Exception):
    """The platform cannot do this here (missing privilege, kernel feature, tool). The message says why;
    scenarios turn it into a skip with that reason in the report."""


class PlatformError(Exception):
    """Deploying or operating the stack failed; the message names what and where (log file)."""


@dataclass(frozen=True)
class Timers:
    """Cluster timers in seconds. Defaults are the reference stack's fast test timers; Goverse v0.1.1's
    defaults are lease 15, stability 10, tick 5, call timeout 30 (see docs/definitions.md)."""

    lease_ttl: float = 3.0
    stability: float = 1.0
    tick: float = 0.25
    call_timeout: float = 5.0
    shutdown_grace: float = 10.0

    @staticmethod
    def goverse_defaults() -> Timers:
        return Timers(lease_ttl=15.0, stability=10.0, tick=5.0, call_timeout=30.0, shutdown_grace=30.0)

    def failover_budget(self, margin: float = 3.0) -> float:
        """A node's shards should move within TTL + stability + a few ticks; budgets scale from this."""
        return self.lease_ttl + self.stability + 4 * self.tick + margin

    def bootstrap_budget(self, allowance: float = 8.0) -> float:
        """Cold start to converged: stability window + a few ticks + process start allowance
        (harness.budgets.bootstrap is this; platforms size their deploy waits from it)."""
        return round(self.stability + 8 * self.tick + allowance, 2)

    def deploy_timeout(self) -> float:
        """How long a deployment may take to converge and turn ready: twice the bootstrap budget, never
        under 60 s (Goverse v0.1.1's budget alone is 58 s)."""
        return max(60.0, 2 * self.bootstrap_budget())


@dataclass(frozen=True)
class StackSpec:
    """What to deploy. ``stack`` is ``reference`` (harness.refstack) or ``goverse`` (user binaries)."""

    stack: Literal["reference", "goverse"] = "reference"
    nodes: int = 3
    gates: int = 2
    inspector: bool = True
    etcd_members: int = 1
    shards: int = 64
    prefix: str = "/goverse"
    timers: Timers = field(default_factory=Timers)
    bugs: tuple[str, ...] = ()
    version: str = "A"  # reference stack's reported version (rolling upgrade scenarios)
    goverse_node_bin: str | None = None
    goverse_gate_bin: str | None = None
    goverse_inspector_bin: str | None = None
    goverse_pgadmin_bin: str | None = None  # `pgadmin --config F init` before nodes start
    goverse_persistence_interval: float | None = None  # seconds; node flag --persistence-interval
    isolate_network: bool | None = None  # None: use namespaces when privileges allow
    fault_proxies: bool = True  # wire TCP fault proxies on node->postgres links (and ``proxy_links``)
    # more links through the fault proxy, for latency on them (no netem here; docs/faults.md):
    # "gate-node" (every gate -> every node), "node-etcd", "gate-etcd" (-> every etcd member)
    proxy_links: tuple[str, ...] = ()
    # Kubernetes with node access: PostgreSQL's volume made by the harness on a small filesystem with a
    # FUSE fault layer (kubernetes/pgvolume.py), so disk faults can bite; set by the stack fixture when a
    # selected scenario injects a DiskFault. The local platform wires its disk faults whenever it is root.
    disk_faults: bool = False


@dataclass
class Instance:
    """One running (or stopped) process of the stack."""

    name: str  # e.g. "node-0", "gate-1", "etcd-0", "postgres", "inspector"
    component: str
    host: str  # IP the instance listens on
    api_url: str | None = None  # gate: client HTTP API; node: internal API; inspector: HTTP
    ops_url: str | None = None  # /healthz /ready /metrics
    pid: int | None = None
    running: bool = False
    log_path: str | None = None


@dataclass(frozen=True)
class Endpoints:
    gates: list[str]  # base URLs of gate client APIs, e.g. http://10.77.0.21:8080
    inspector: str | None
    etcd: list[str]  # client URLs
    postgres_dsn_redacted: str  # never contains the password
    prefix: str
    shards: int


# Where one stack instance listens: what a rendered config and a deployment agree on, and what a
# caller of ``AdhocInstances.adhoc_config`` names its extra instances with.
@dataclass(frozen=True)
class NodeAddr:
    id: str
    host: str
    api_port: int
    ops_port: int


@dataclass(frozen=True)
class GateAddr:
    id: str
    host: str
    http_port: int
    ops_port: int
    grpc_port: int


@dataclass(frozen=True)
class InspectorAddr:
    host: str
    http_port: int
    grpc_port: int


@runtime_checkable
class Deployment(Protocol):
    """A deployed stack and the controls scenarios use. All waits take a deadline in seconds and raise
    ``TimeoutError`` naming what was not reached.

    Everything here is offered by every platform (a control a platform cannot apply raises
    ``Unsupported`` with the reason). What only some platforms offer is a capability Protocol below
    (``StoredState``, ``AdhocInstances``, ``Signals``); callers test ``isinstance(dep, Capability)``
    and turn a miss into an explained skip."""

    spec: StackSpec
    run_dir: Path  # this stack's directory in the run (logs, configs, backups)
    timings: dict[str, float]  # bring-up phases in seconds (the bootstrap scenario reports them)

    def endpoints(self) -> Endpoints: ...
    def gate_urls(self, only_running: bool = False) -> dict[str, str]: ...
    def instances(self, component: str | None = None) -> list[Instance]: ...
    def instance(self, name: str) -> Instance: ...

    def kill(self, name: str, sig: int = _signal.SIGKILL) -> None: ...
    def stop(self, name: str, graceful: bool = True) -> int | None: ...
    def start(self, name: str) -> None: ...
    def restart(self, name: str, graceful: bool = True) -> None: ...
    def pause(self, name: str) -> None: ...
    def resume(self, name: str) -> None: ...
    def scale(self, component: str, n: int) -> list[str]: ...

    def cluster_state(self) -> ClusterState: ...
    def advertise_names(self) -> dict[str, str]: ...
    def shard_map(self) -> dict[int, tuple[str, str]]: ...
    def live_nodes(self) -> set[str]: ...
    def wait_ready(self, timeout: float) -> float: ...
    def wait_converged(self, timeout: float) -> float: ...

    def capabilities(self) -> dict[str, str | None]: ...
    def teardown(self) -> None: ...


@runtime_checkable
class StoredState(Protocol):
    """The platform can read what the stack's database holds, past every fault (the stored-state oracle)."""

    def persisted_objects(self, object_ids: list[str]) -> dict[str, Any]: ...


@runtime_checkable
class Process(Protocol):
    """One OS process of the stack or an ad-hoc instance, as far as callers may touch it."""

    @property
    def pid(self) -> int | None: ...
    @property
    def returncode(self) -> int | None: ...
    def is_running(self) -> bool: ...
    def signal(self, sig: int) -> None: ...
    def wait(self, timeout: float | None = None) -> int | None: ...
    def stop(self, grace: float = 10.0) -> int | None: ...


@runtime_checkable
class Signals(Protocol):
    """The platform can reach a stack instance's process (signals such as SIGHUP, its pid for cgroups)."""

    def process(self, name: str) -> Process: ...


class LinkProxy(Protocol):
    """A TCP proxy in the harness's process whose links can be held or slowed: the conformance
    experiments put an ad-hoc cluster's etcd and PostgreSQL behind one (``AdhocInstances.link_proxy``)."""

    def add_link(self, name: str, upstream: tuple[str, int]) -> tuple[str, int]: ...
    def hold(self, link: str) -> None: ...  # a black hole: accepted, nothing forwarded, data kept for the clear
    def delay(self, link: str, ms: float, direction: Literal["upstream", "downstream", "both"]) -> None: ...
    def clear(self, link: str) -> None: ...
    def bytes_up(self, link: str) -> int: ...  # bytes forwarded client -> upstream so far
    def stop(self) -> None: ...


@dataclass(frozen=True)
class Termination:
    """How a graceful stop went: monotonic times of the SIGTERM and of the observed exit, and the code."""

    t_sigterm: float
    t_exit: float
    code: int | None


@runtime_checkable
class SelfRestarting(Protocol):
    """The platform starts a stopped instance again by itself (a Kubernetes controller recreates a
    deleted pod), so ``stop`` cannot keep one down; ``terminate`` SIGTERMs it the platform's way (pod
    deletion with grace) and returns when it exited; ``start`` then waits until it is back."""

    def terminate(self, name: str) -> Termination: ...


@runtime_checkable
class InstanceLogs(Protocol):
    """The instances' logs live with the platform (the pod logs API), not in files the harness wrote:
    ``instance_log`` reads one now, ``collect_logs`` copies all of them into the run directory."""

    def instance_log(self, name: str) -> str: ...
    def collect_logs(self) -> Path: ...


@runtime_checkable
class PostgresPassword(Protocol):
    """The platform keeps the stack's PostgreSQL password somewhere other than a local file (a Secret);
    callers read it into memory only, never into logs or reports."""

    def postgres_password(self) -> str: ...


@runtime_checkable
class PodIdentity(Protocol):
    """Instances run in pods that get their identity from the downward API (Kubernetes)."""

    def pod_identity(self, name: str) -> dict[str, str]:
        """``POD_NAME``, ``POD_NAMESPACE``, ``POD_IP``, ``NODE_NAME`` as the instance's pod sees them."""
        ...


@runtime_checkable
class AdhocInstances(Protocol):
    """The platform can start extra stack processes beside the deployed ones (conformance experiments),
    and render the config of an ad-hoc cluster of them (its own etcd prefix and database) on the
    deployment's etcd and PostgreSQL; ``redacted_config`` is that config without secrets; ``link_proxy``
    a fresh :class:`LinkProxy` to put between such a cluster and its etcd or PostgreSQL.

    ``adhoc_config_file`` makes a rendered config available to ad-hoc instances (a file here, a
    ConfigMap on Kubernetes; ``copy`` is the run directory's redacted copy, already written) and
    returns the path to give them as ``--config``; ``adhoc_log`` is what an ad-hoc instance logged.
    The process ``spawn_adhoc`` returns may have a ``host`` attribute: the address the instance
    listens on when the config cannot say it in advance (a pod's IP); callers fall back to the
    address they configured."""

    def spawn_adhoc(self, component: str, name: str, env: dict[str, str | None] | None = None,
                    extra_args: list[str] | tuple[str, ...] = ()) -> Process: ...
    def stop_adhoc(self, name: str, grace: float | None = None) -> int | None: ...
    def stop_all_adhoc(self, grace: float = 2.0) -> None: ...
    def adhoc_config(self, prefix: str, database: str, nodes: Sequence[NodeAddr] = (),
                     gates: Sequence[GateAddr] = (), inspector: InspectorAddr | None = None,
                     etcd: list[str] | None = None, pg: tuple[str, int] | None = None,
                     pg_password: str = "") -> dict[str, Any]: ...
    def redacted_config(self, doc: dict[str, Any]) -> dict[str, Any]: ...
    def link_proxy(self) -> LinkProxy: ...
    # where the harness itself reaches the etcd and PostgreSQL the ad-hoc clusters use (for reading
    # their state in etcd, and as the upstreams of a link proxy); differs from what the instances are
    # given where the stack runs in a cluster network
    def adhoc_etcd_endpoints(self) -> list[str]: ...
    def adhoc_postgres(self) -> tuple[str, int]: ...
    def create_adhoc_database(self, name: str) -> None: ...
    def adhoc_config_file(self, name: str, doc: dict[str, Any], copy: Path) -> str: ...
    def adhoc_log(self, name: str) -> str: ...


@runtime_checkable
class PostgresLinkDelay(Protocol):
    """The platform can slow every node -> PostgreSQL link for a whole run (the load scenarios' injected
    regression, a stand-in for "a slower release"); ``Unsupported`` where those links are not wired.
    Returns the links slowed and the callable that takes the delay off again (it never raises)."""

    def delay_postgres_links(self, ms: float) -> tuple[list[str], Callable[[], None]]: ...


class Platform(Protocol):
    """Where stacks run. ``injector`` and ``operations`` hand out the platform's halves of the fault
    pipeline and of the operator actions, so nothing above the seam asks what type a deployment is."""

    name: str

    def deploy(self, spec: StackSpec, run_dir: str) -> Deployment: ...
    def doctor(self) -> list[tuple[str, bool, str]]: ...
    def injector(self, dep: Deployment) -> Injector: ...
    def operations(self, dep: Deployment, recorder: Recorder | None = None,
                   on_endpoints: Callable[[dict[str, str]], None] | None = None) -> Operations: ...

