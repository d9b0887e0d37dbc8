"""locust as a supervised subprocess group: one master and N workers (default one per core), headless.

Why subprocesses: locust monkey-patches the interpreter with gevent, which must never happen inside the
harness (its asyncio workload, threads and subprocess supervision would break). Why master + workers
even on one machine: one locust process is one Python interpreter on one core; the generator must not
be the bottleneck, and locust's docs advise one process per core (anchors §9).

Lifecycle guarantees (nothing left behind): every locust process is a
:class:`~harness.process.ManagedProcess` — its own process group, SIGKILLed by an
``atexit`` hook if the harness dies — and :meth:`LocustGenerator.stop` (also the context manager's exit,
so it runs on success, on failure and on Ctrl-C) asks the master to quit with SIGTERM, gives the
workers ``stop_timeout`` to finish the requests they have in flight (so every request gets an
outcome), then kills whatever is still running.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.load.samples import read_shape_start
from harness.process import ManagedProcess
from harness.waiting import Abort, wait_until

log = logging.getLogger(__name__)

LOADTESTS_ENV = "GVH_LOADTESTS_DIR"
STOP_FILE = "stop"  # loadtests/locustfile.py STOP_FILE: ends an open-ended shape


def loadtests_dir() -> Path:
    """Where ``locustfile.py`` and ``shapes.py`` live: ``$GVH_LOADTESTS_DIR`` or the repository's
    ``loadtests/`` next to the ``harness`` package."""
    env = os.environ.get(LOADTESTS_ENV)
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "loadtests"
    if not (path / "locustfile.py").is_file():
        raise FileNotFoundError(f"no locustfile.py in {path} (set {LOADTESTS_ENV})")
    return path


@functools.cache
def shapes_module() -> ModuleType:
    """``loadtests/shapes.py`` loaded by path: the very module the locust master schedules with (the
    harness never imports locust, and ``loadtests`` is not a package)."""
    path = loadtests_dir() / "shapes.py"
    spec = importlib.util.spec_from_file_location("gvh_loadtests_shapes", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses need their module registered
    spec.loader.exec_module(mod)
    return mod


def default_workers() -> int:
    """One worker per core, as locust advises (at least one)."""
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class GeneratorSpec:
    """What locust is told. ``gates`` maps gate names to base URLs; ``shape`` is a shapes.py spec.

    ``workers``: ``None`` = one per core with a master; ``0`` = a single local runner (no master)."""

    gates: dict[str, str]
    shape: str
    mix: str = "increment:6,read:3,deposit:1"
    keys: int = 200
    wallets: int = 20
    dist: str = "uniform"
    prefix: str = "lt"
    user_rate: float = 5.0
    timeout: float = 8.0
    retry_ratio: float = 0.1
    max_amount: int = 5
    workers: int | None = None
    seed: int = 0
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    counter_type: str = "Counter"  # setting object_type: the type the increments and reads call

    def __post_init__(self) -> None:
        if not self.gates:
            raise ValueError("GeneratorSpec: at least one gate is required")
        if self.workers is not None and self.workers < 0:
            raise ValueError("GeneratorSpec: workers must be >= 0")

    @property
    def n_workers(self) -> int:
        return default_workers() if self.workers is None else self.workers

    def env(self, samples_dir: Path) -> dict[str, str]:
        """The locustfile's options as ``GVH_*`` variables, identical for master and workers (a worker
        needs them at start-up, before the master's options reach it)."""
        return {
            "GVH_GATES": ",".join(f"{n}={u}" for n, u in sorted(self.gates.items())),
            "GVH_SHAPE": self.shape,
            "GVH_MIX": self.mix,
            "GVH_KEYS": str(self.keys),
            "GVH_WALLETS": str(self.wallets),
            "GVH_DIST": self.dist,
            "GVH_PREFIX": self.prefix,
            "GVH_USER_RATE": repr(float(self.user_rate)),
            "GVH_TIMEOUT": repr(float(self.timeout)),
            "GVH_RETRY_RATIO": repr(float(self.retry_ratio)),
            "GVH_MAX_AMOUNT": str(self.max_amount),
            "GVH_SEED": str(self.seed),
            "GVH_SAMPLES": str(samples_dir),
            "GVH_COUNTER_TYPE": self.counter_type,
        }


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocustGenerator:
    """One headless locust run (master + workers, or one local runner) writing raw samples to
    ``directory/samples``; locust's own CSV/HTML and logs land in ``directory`` too."""

    def __init__(self, spec: GeneratorSpec, directory: Path, locustfile: Path | None = None) -> None:
        self.spec = spec
        # absolute: locust runs with the loadtests directory as its working directory
        self.dir = Path(directory).resolve()
        self.samples_dir = self.dir / "samples"
        self.locustfile = (locustfile or loadtests_dir() / "locustfile.py").resolve()
        self.master: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []
        self.t0_wall: float | None = None
        self.exit_codes: dict[str, int | None] = {}

    @property
    def stop_timeout(self) -> float:
        """How long a stopping user may take to finish its request: the client timeout plus slack."""
        return self.spec.timeout + 2.0

    def _common(self) -> list[str]:
        return [sys.executable, "-m", "locust", "-f", str(self.locustfile)]

    def _proc(self, name: str, argv: list[str]) -> ManagedProcess:
        env: dict[str, str | None] = dict(self.spec.env(self.samples_dir))
        env["PYTHONUNBUFFERED"] = "1"
        return ManagedProcess(name, argv, self.dir / f"{name}.log", env=env, cwd=self.locustfile.parent)

    def start(self, timeout: float = 60.0) -> float:
        """Start everything and wait until the shape runs (its start marker exists); returns the wall
        time the shape started. Raises (after stopping what started) if locust never gets going."""
        if self.master is not None:
            raise RuntimeError("locust already started")
        shapes_module().parse(self.spec.shape)  # a bad spec fails here, with its reason, not in locust's log
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        first_gate = self.spec.gates[sorted(self.spec.gates)[0]]
        head = [*self._common(), "--headless", "--host", first_gate, "--stop-timeout", f"{self.stop_timeout:g}",
                "--csv", str(self.dir / "locust"), "--html", str(self.dir / "locust.html"), "--only-summary",
                "--loglevel", "INFO", *self.spec.extra_args]
        n = self.spec.n_workers
        try:
            if n == 0:
                self.master = self._proc("locust-local", head)
                self.master.start()
            else:
                port = free_port()
                self.master = self._proc("locust-master", [
                    *head, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                    "--expect-workers", str(n), "--expect-workers-max-wait", f"{timeout:g}"])
                self.master.start()
                for i in range(n):
                    w = self._proc(f"locust-worker-{i}", [*self._common(), "--worker", "--master-host", "127.0.0.1",
                                                          "--master-port", str(port)])
                    w.start()
                    self.workers.append(w)
            marker = wait_until(self._started, timeout, "locust shape started (shape marker written)",
                                interval=0.05, describe=self._describe)
            assert marker is not None  # wait_until returns the first truthy probe result
            self.t0_wall = float(marker["t0_wall"])
            return self.t0_wall
        except BaseException:
            self.stop()
            raise

    def _started(self) -> dict[str, Any] | None:
        for p in self.processes:
            if not p.is_running() and p.returncode not in (None, 0):
                raise LocustDied(f"{p.name} exited with code {p.returncode}:\n{_tail(p.log_path)}")
        if self.master is not None and not self.master.is_running():
            raise LocustDied(f"{self.master.name} exited early:\n{_tail(self.master.log_path)}")
        return read_shape_start(self.samples_dir)

    def _describe(self) -> str:
        return "; ".join(f"{p.name}: {'running' if p.is_running() else p.returncode}" for p in self.processes)

    @property
    def processes(self) -> list[ManagedProcess]:
        return ([self.master] if self.master is not None else []) + list(self.workers)

    def running(self) -> bool:
        return self.master is not None and self.master.is_running()

    def wait(self, timeout: float) -> bool:
        """Wait for a finite shape to end on its own; True if the master exited within ``timeout``."""
        if self.master is None:
            return True
        return self.master.wait(timeout) is not None

    def stop(self) -> dict[str, int | None]:
        """End the run and leave nothing behind. Idempotent; returns exit codes by process name.

        1. the stop file: the master's shape returns None at its next tick (≤ 1 s), locust stops the
           users normally (each finishes its request within ``stop_timeout``) and quits, workers too;
        2. if the master is still there: SIGINT (locust's Ctrl-C path, also graceful);
        3. then SIGTERM and SIGKILL of whatever is left (ManagedProcess.stop), workers included."""
        grace = self.stop_timeout + 5.0
        if self.master is not None and self.master.is_running():
            with contextlib.suppress(OSError):
                (self.samples_dir / STOP_FILE).touch()
            if self.master.wait(grace + 1.0) is None:
                log.warning("%s did not end its shape within %.0f s of the stop file; SIGINT", self.master.name,
                            grace + 1.0)
                with contextlib.suppress(ProcessLookupError):
                    self.master.signal(signal.SIGINT)
                self.master.wait(grace)
        if self.master is not None:
            self.exit_codes[self.master.name] = self.master.stop(5.0)
        for w in self.workers:
            # a worker leaves by itself once the master said quit; only then is it asked again
            code = w.wait(grace)
            if code is None:
                log.warning("%s did not quit after the master; stopping it", w.name)
                code = w.stop(5.0)
            else:
                w.kill()  # reaps it and drops it from the atexit set (its group is gone already)
            self.exit_codes[w.name] = code
        return dict(self.exit_codes)

    def __enter__(self) -> LocustGenerator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocustDied(Abort):
    """A locust process exited while we waited for the load to start."""


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def running(spec: GeneratorSpec, directory: Path) -> Iterator[LocustGenerator]:
    """``with running(spec, dir) as gen: ...`` — locust runs for the block, stopped on any exit."""
    gen = LocustGenerator(spec, directory)
    gen.start()
    try:
        yield gen
    finally:
        gen.stop()
