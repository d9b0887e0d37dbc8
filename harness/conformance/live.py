"""Observing a live stack for the runtime checks: HTTP probes, /ready timelines, metrics, client calls.

Why here and not in the scenario file: the scenario states the experiment (start, cut etcd, SIGTERM,
...); these helpers only *observe* and return plain data that the pure judges decide on. Every wait
is a condition with a deadline (harness.waiting); polling threads are owned by context managers so a
failing test cannot leave one running.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import requests

from harness import wire
from harness.conformance.judges_lifecycle import CallObservation
from harness.conformance.judges_observability import Samples, parse_metrics

PROBE_INTERVAL_S = 0.05
T = TypeVar("T")


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The status code of GET ``url``, ``None`` if nothing answered."""
    try:
        return requests.get(url, timeout=timeout).status_code
    except requests.RequestException:
        return None


def health_status(ops_url: str) -> tuple[str, int | None]:
    """Goverse serves /healthz, the seed writes /health: the first that is not 404 (path, status)."""
    status = http_status(f"{ops_url}/healthz")
    if status == 404:
        alt = http_status(f"{ops_url}/health")
        return "/health", alt
    return "/healthz", status


def read_metrics(ops_url: str, timeout: float = 5.0) -> Samples | None:
    """The instance's parsed /metrics, ``None`` if it did not answer within ``timeout`` (a loaded node
    can take seconds to render them) or answered something else."""
    try:
        resp = requests.get(f"{ops_url}/metrics", timeout=timeout)
    except requests.RequestException:
        return None
    if resp.status_code != 200:
        return None
    try:
        return parse_metrics(resp.text)
    except ValueError:
        return None


@dataclass
class ReadyPoller:
    """Polls ``<url>/ready`` of each named target every 50 ms on its own thread; ``timelines`` holds
    ``[(monotonic t, status | None)]`` per name. Use as a context manager (threads stop on exit)."""

    urls: dict[str, str]
    interval: float = PROBE_INTERVAL_S
    timelines: dict[str, list[tuple[float, int | None]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, url: str) -> None:
        self.urls[name] = url
        self.timelines.setdefault(name, [])
        th = threading.Thread(target=self._run, args=(name, url), name=f"ready-{name}", daemon=True)
        self._threads.append(th)
        th.start()

    def retarget(self, name: str, url: str) -> None:
        """Poll ``name`` at a new address from now on (a pod that came back under a new IP)."""
        with self._lock:
            self.urls[name] = url

    def _run(self, name: str, url: str) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            with self._lock:
                url = self.urls.get(name, url)
            try:
                status: int | None = session.get(f"{url}/ready", timeout=0.5).status_code
            except requests.RequestException:
                status = None
                session.close()
                session = requests.Session()
            with self._lock:
                self.timelines[name].append((time.monotonic(), status))
            self._stop.wait(self.interval)
        session.close()

    def last(self, name: str) -> int | None:
        with self._lock:
            tl = self.timelines.get(name) or []
            return tl[-1][1] if tl else None

    def seen_after(self, name: str, t: float, status: int | None) -> bool:
        """Whether ``status`` (``None`` = no answer) was observed for ``name`` at or after ``t``."""
        with self._lock:
            return any(ts >= t and s == status for ts, s in self.timelines.get(name, []))

    def not_ready_after(self, name: str, t: float) -> bool:
        with self._lock:
            return any(ts >= t and s != 200 for ts, s in self.timelines.get(name, []))

    def snapshot(self) -> dict[str, list[tuple[float, int | None]]]:
        with self._lock:
            return {k: list(v) for k, v in self.timelines.items()}

    def __enter__(self) -> ReadyPoller:
        for name, url in list(self.urls.items()):
            self.add(name, url)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(2.0)


def call_counter(gate_url: str, key: str, method: str = "Increment", amount: int = 1,
                 timeout: float = 10.0) -> CallObservation:
    """One Counter call through a gate's HTTP API (the way any Goverse client calls)."""
    msg = wire.new("counter.GetRequest") if method == "Get" else wire.new(f"counter.{method}Request", amount=amount)
    url = f"{gate_url}/api/v1/objects/call/Counter/{key}/{method}"
    t0 = time.monotonic()
    try:
        resp = requests.post(url, json={"request": wire.pack(msg)}, timeout=timeout)
    except requests.Timeout:
        return CallObservation(False, None, None, "no answer", time.monotonic() - t0, answered=False)
    except requests.RequestException as exc:
        return CallObservation(False, None, "CONNECT", f"{type(exc).__name__}: {exc}", time.monotonic() - t0)
    elapsed = time.monotonic() - t0
    try:
        doc = resp.json()
    except ValueError:
        doc = {"error": resp.text[:200]}
    if resp.status_code == 200 and "response" in doc:
        return CallObservation(True, 200, None, None, elapsed)
    return CallObservation(False, resp.status_code, doc.get("code"), str(doc.get("error"))[:300], elapsed)


class BackgroundCall:
    """A call running on its own thread (the in-flight call of a drain check)."""

    def __init__(self, gate_url: str, key: str, timeout: float) -> None:
        self.result: CallObservation | None = None
        self.started = time.monotonic()
        self._th = threading.Thread(target=self._run, args=(gate_url, key, timeout), name=f"call-{key}",
                                    daemon=True)
        self._th.start()

    def _run(self, gate_url: str, key: str, timeout: float) -> None:
        self.result = call_counter(gate_url, key, timeout=timeout)

    def done(self) -> bool:
        return not self._th.is_alive()

    def join(self, timeout: float) -> CallObservation | None:
        self._th.join(timeout)
        return self.result


@contextlib.contextmanager
def sampling(fn: Callable[[], T], interval: float = PROBE_INTERVAL_S) -> Iterator[list[T]]:
    """Call ``fn()`` every ``interval`` seconds on a thread while the block runs; yields the list the
    results are appended to (exceptions are skipped: the thing observed may be under fault)."""
    out: list[T] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                out.append(fn())
            stop.wait(interval)

    th = threading.Thread(target=loop, name="conformance-sampler", daemon=True)
    th.start()
    try:
        yield out
    finally:
        stop.set()
        th.join(5.0)


def statuses(urls: Mapping[str, str], path: str) -> dict[str, int | None]:
    return {name: http_status(f"{url}{path}") for name, url in urls.items()}
