"""Locust load on the Goverse HTTP gate API: counter increments and reads, wallet reliable deposits.

Run it on its own against any Goverse gate (the reference stack or real Goverse)::

    locust -f loadtests/locustfile.py --host http://GATE:8080                  # web UI, -u/-r by hand
    locust -f loadtests/locustfile.py --host http://GATE:8080 --headless -u 50 -r 50 -t 1m
    locust -f loadtests/locustfile.py --host http://GATE:8080 --headless \
        --gvh-shape step:start=100,step=100,steps=5,step_s=30

Every option has an environment twin (``--gvh-mix`` = ``GVH_MIX``…); ``locust -f loadtests/locustfile.py
--help`` lists them under "Custom arguments". The goverse-harness drives this same file headless as a
subprocess (harness/load/) and reads the raw samples it writes (``--gvh-samples DIR``).

Why these choices:

* **FastHttpUser** (geventhttpclient): about 4× the requests per core of HttpUser, and the generator must
  not be the bottleneck. Its retries are limited to idempotent methods, so a POST is never sent twice
  behind our back (a silent resend would double an increment and corrupt the no-lost-writes check).
* **One task, weighted mix, fixed per-user rate**: each user runs at ``--gvh-user-rate`` requests/s
  (constant throughput, with a random first phase so users do not fire in lockstep); the offered rate
  is users × user rate, which is what the load shapes in ``shapes.py`` schedule.
* **Raw samples from locust's request event**: locust's own statistics round response times into
  buckets (its p99 can exceed its max); the harness computes percentiles from the raw samples we write
  here, one JSON line per request: ``[start_wall, duration_s, f, key, type, value, result, error, gate,
  node, epoch, process]``. ``type`` is ``ok`` (it happened), ``fail`` (it definitely did not happen) or
  ``info`` (unknown, e.g. a timeout) by exactly the rules of ``harness/workload/gate_client.py``.
* **No protobuf dependency**: the five tiny messages are hand-encoded (``Any`` of ``counter.*`` /
  ``wallet.*`` with Goverse's field numbers), so the file runs in the stock ``locustio/locust`` image
  and spends no generator CPU on protobuf. ``tests/load/test_load_locustfile.py`` checks the bytes against
  ``harness.wire``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import gevent
import locust.runners
import shapes  # loadtests/shapes.py: locust puts the locustfile's directory on sys.path
from locust import FastHttpUser, LoadTestShape, events, task
from locust.runners import MasterRunner, WorkerRunner

# locust samples its own CPU every 10 s by default: too coarse for phases of a few seconds. The monitor
# greenlet reads this module global at every iteration, so setting it here (before the runner exists)
# makes both the cpu_warning event and our usage samples arrive once a second.
locust.runners.CPU_MONITOR_INTERVAL = float(os.environ.get("GVH_CPU_MONITOR_INTERVAL", "1.0"))

# --------------------------------------------------------------------------------------------------
# Outcome classification: the same rules as harness/workload/gate_client.py (used from there when the
# harness is importable; this copy keeps the file standalone and a test keeps the two identical).
try:
    from harness.workload.gate_client import DEFINITE_FAILURE_CODES, DEFINITE_FAILURE_MARKERS, classify_error
except ImportError:  # pragma: no cover - exercised in the stock locust image
    DEFINITE_FAILURE_MARKERS = (
        "cannot determine node for object",
        "shard mapping not available",
        "no node assigned to shard",
        "has no current node",
        "is not in active node list",
        "is in migration from",
        "node is stopped",
        "not this node",
        "failed to get connection to node",
        "gate server is stopped",
        "cluster is not ready",
        "not serving",
    )
    DEFINITE_FAILURE_CODES = frozenset({
        "METHOD_NOT_ALLOWED", "INVALID_PATH", "INVALID_PARAMETERS", "INVALID_BODY", "INVALID_JSON",
        "INVALID_BASE64", "INVALID_PROTOBUF", "ACCESS_DENIED", "UNAUTHENTICATED", "OBJECT_NOT_FOUND",
        "NOT_READY",
    })

    def classify_error(status: int | None, code: str | None, message: str | None) -> str:
        """fail if the error proves the call was not applied, else info (unknown outcome)."""
        if code in DEFINITE_FAILURE_CODES:
            return "fail"
        text = (message or "").lower()
        if any(m in text for m in DEFINITE_FAILURE_MARKERS):
            return "fail"
        if status is not None and 400 <= status < 500:
            return "fail"
        return "info"


def classify_transport(exc: BaseException) -> tuple[str, str]:
    """(type, code) for a request that got no HTTP answer. Refused / unreachable: nothing reached the
    gate, the call definitely did not happen (``fail``, as aiohttp's ClientConnectorError in the
    harness's client). A timeout or a connection broken after sending: unknown (``info``)."""
    if isinstance(exc, ConnectionRefusedError):
        return "fail", "CONNECT"
    if isinstance(exc, OSError) and exc.errno in (111, 113, 101):  # ECONNREFUSED, EHOSTUNREACH, ENETUNREACH
        return "fail", "CONNECT"
    if isinstance(exc, socket.timeout | TimeoutError | gevent.Timeout):
        return "info", "TIMEOUT"
    return "info", "TRANSPORT"


# --------------------------------------------------------------------------------------------------
# Minimal protobuf: varints and length-delimited fields are all these messages use.
TYPE_URL_PREFIX = "type.googleapis.com/"


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int32/int64 negatives are 10-byte two's complement varints
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_bytes(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def encode_message(fields: dict[int, int]) -> bytes:
    """A flat message of varint fields (proto3: zero values are omitted)."""
    return b"".join(_varint(num << 3) + _varint(v) for num, v in sorted(fields.items()) if v)


def pack_any(full_name: str, fields: dict[int, int] | None = None) -> str:
    """Standard base64 of a serialized ``google.protobuf.Any`` holding ``full_name`` (gate wire format)."""
    inner = encode_message(fields or {})
    anyv = _field_bytes(1, (TYPE_URL_PREFIX + full_name).encode()) + (_field_bytes(2, inner) if inner else b"")
    return base64.b64encode(anyv).decode("ascii")


def _parse(buf: bytes) -> dict[int, Any]:
    """Field number → last value (int for varints, bytes for length-delimited)."""
    out: dict[int, Any] = {}
    i, n = 0, len(buf)
    while i < n:
        key, i = _read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            out[num], i = _read_varint(buf, i)
        elif wire == 2:
            ln, i = _read_varint(buf, i)
            out[num], i = buf[i:i + ln], i + ln
        elif wire == 1:
            out[num], i = int.from_bytes(buf[i:i + 8], "little"), i + 8
        elif wire == 5:
            out[num], i = int.from_bytes(buf[i:i + 4], "little"), i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _signed(v: int, bits: int) -> int:
    v &= (1 << 64) - 1
    if v >= 1 << 63:
        v -= 1 << 64
    if bits == 32:
        v = (v + (1 << 31)) % (1 << 32) - (1 << 31)
    return v


def unpack_any(b64: str) -> tuple[str, dict[int, Any]]:
    """(full message name, its fields) of a base64(Any)."""
    anyv = _parse(base64.b64decode(b64, validate=True))
    name = anyv.get(1, b"").decode().rsplit("/", 1)[-1]
    return name, _parse(anyv.get(2, b""))


def response_value(b64: str) -> int | None:
    """The counter value (``CounterResponse.value``, int32 field 2) or wallet balance
    (``WalletResponse.balance``, int64 field 2) of a gate response."""
    if not b64:
        return None
    name, fields = unpack_any(b64)
    if name == "counter.CounterResponse":
        return _signed(fields.get(2, 0), 32)
    if name == "wallet.WalletResponse":
        return _signed(fields.get(2, 0), 64)
    return None


# --------------------------------------------------------------------------------------------------
# Options (command line or environment), shown in the web UI too.
MIX_DEFAULT = "increment:6,read:3,deposit:1"
STOP_FILE = "stop"
STDOUT = "stdout"  # --gvh-samples stdout: rows go to the process's stdout (pod logs)
OPS = ("increment", "read", "deposit")


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    add = parser.add_argument
    add("--gvh-gates", env_var="GVH_GATES", default="",
        help="gates to spread users over: 'url,url' or 'name=url,...' (default: --host only)")
    add("--gvh-mix", env_var="GVH_MIX", default=MIX_DEFAULT,
        help=f"operation weights, e.g. '{MIX_DEFAULT}' (ops: {', '.join(OPS)})")
    add("--gvh-keys", env_var="GVH_KEYS", type=int, default=1000, help="counter key-space size")
    add("--gvh-wallets", env_var="GVH_WALLETS", type=int, default=100, help="wallet key-space size")
    add("--gvh-dist", env_var="GVH_DIST", default="uniform",
        help="key distribution: 'uniform' or 'hot:N:SHARE' (SHARE of requests on the first N keys)")
    add("--gvh-prefix", env_var="GVH_PREFIX", default="locust", help="object id prefix (fresh keys per run)")
    add("--gvh-user-rate", env_var="GVH_USER_RATE", type=float, default=5.0,
        help="requests per second per user (offered rate = users x this)")
    add("--gvh-shape", env_var="GVH_SHAPE", default="",
        help="load shape, e.g. 'steady:rate=200', 'step:start=100,step=100,steps=5,step_s=10', "
             "'spike:base=100,peak=400,before_s=10,spike_s=5,after_s=10' (default: -u/-r/-t)")
    add("--gvh-samples", env_var="GVH_SAMPLES", default="",
        help="directory for raw per-request samples (JSON lines); empty = off", include_in_web_ui=False)
    add("--gvh-timeout", env_var="GVH_TIMEOUT", type=float, default=10.0,
        help="client timeout (s); keep it above the gate's call timeout")
    add("--gvh-retry-ratio", env_var="GVH_RETRY_RATIO", type=float, default=0.1,
        help="share of deposits that re-send an acknowledged call_id (tests deduplication)")
    add("--gvh-max-amount", env_var="GVH_MAX_AMOUNT", type=int, default=5, help="largest increment/deposit")
    add("--gvh-counter-type", env_var="GVH_COUNTER_TYPE", default="Counter", help="counter object type")
    add("--gvh-wallet-type", env_var="GVH_WALLET_TYPE", default="Wallet", help="wallet object type")
    add("--gvh-seed", env_var="GVH_SEED", type=int, default=0, help="key-choice seed (0 = random)")


def parse_mix(text: str) -> tuple[list[str], list[float]]:
    """``"increment:6,read:3"`` → (ops, weights); unknown ops and non-positive totals are errors."""
    ops, weights = [], []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, w = part.partition(":")
        if name not in OPS:
            raise ValueError(f"--gvh-mix: unknown op {name!r}; known: {', '.join(OPS)}")
        weight = float(w) if w else 1.0
        if weight < 0:
            raise ValueError(f"--gvh-mix: negative weight for {name}")
        if weight:
            ops.append(name)
            weights.append(weight)
    if not ops:
        raise ValueError(f"--gvh-mix {text!r}: no operation has a positive weight")
    return ops, weights


def parse_gates(text: str, host: str | None) -> list[tuple[str, str]]:
    """``[(name, base url)]`` from ``--gvh-gates`` (``url`` or ``name=url`` items), else the host."""
    out = []
    for i, item in enumerate(filter(None, (p.strip() for p in text.split(",")))):
        name, eq, url = item.partition("=")
        out.append((name, url) if eq else (f"gate-{i}", item))
    if not out:
        if not host:
            raise ValueError("no gate: pass --host or --gvh-gates")
        out = [("gate-0", host)]
    return [(n, u.rstrip("/")) for n, u in out]


class KeyChooser:
    """Index of the next key: uniform over ``n`` keys, or ``hot:N:SHARE`` — SHARE of the picks on the
    first N keys (a hot set, e.g. celebrity objects) and the rest uniform over all keys."""

    def __init__(self, n: int, dist: str, rng: random.Random) -> None:
        if n < 1:
            raise ValueError("key space must hold at least one key")
        self.n, self.rng = n, rng
        self.hot_n, self.hot_share = 0, 0.0
        if dist.startswith("hot"):
            parts = dist.split(":")
            if len(parts) != 3:
                raise ValueError(f"--gvh-dist {dist!r}: expected hot:N:SHARE")
            self.hot_n, self.hot_share = max(1, min(n, int(parts[1]))), float(parts[2])
            if not 0 <= self.hot_share <= 1:
                raise ValueError(f"--gvh-dist {dist!r}: SHARE must be within [0, 1]")
        elif dist != "uniform":
            raise ValueError(f"--gvh-dist {dist!r}: expected 'uniform' or 'hot:N:SHARE'")

    def pick(self) -> int:
        if self.hot_n and self.rng.random() < self.hot_share:
            return self.rng.randrange(self.hot_n)
        return self.rng.randrange(self.n)


# --------------------------------------------------------------------------------------------------
# Raw sample sink: one file per locust process, flushed once a second and at exit.
class SampleSink:
    """Buffers sample rows in memory and appends them to ``samples-<role>-<pid>.jsonl``; locust's
    usage monitor rows (CPU %, RSS, cpu_warning) go to ``usage-<role>-<pid>.jsonl``.

    With ``--gvh-samples stdout`` (in-cluster workers, whose files would vanish with the pod) every
    row is printed instead, prefixed ``GVHS <role>-<pid> `` / ``GVHU <role>-<pid> ``, and the harness
    reads them back from the pod log (harness/load/k8s.py)."""

    def __init__(self, directory: Path | None, role: str) -> None:
        pid = os.getpid()
        self.name = f"{role}-{pid}"
        self.directory = directory
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self.samples_path = directory / f"samples-{self.name}.jsonl"
            self.usage_path = directory / f"usage-{self.name}.jsonl"
        self._rows: list[str] = []
        self._usage: list[str] = []
        self._lock = threading.Lock()
        self.count = 0

    def add(self, row: list[Any]) -> None:
        self._rows.append(json.dumps(row, separators=(",", ":")))
        self.count += 1

    def usage(self, row: dict[str, Any]) -> None:
        self._usage.append(json.dumps(row, separators=(",", ":")))

    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
            usage, self._usage = self._usage, []
            if self.directory is None:
                out = [f"GVHS {self.name} {r}" for r in rows] + [f"GVHU {self.name} {u}" for u in usage]
                if out:
                    sys.stdout.write("\n".join(out) + "\n")
                    sys.stdout.flush()
                return
            if rows:
                with open(self.samples_path, "a", encoding="utf-8") as fh:
                    fh.write("\n".join(rows) + "\n")
            if usage:
                with open(self.usage_path, "a", encoding="utf-8") as fh:
                    fh.write("\n".join(usage) + "\n")


_SINK: SampleSink | None = None
_ROLE = "local"
_RUNNER: Any = None


def _role(runner: Any) -> str:
    if isinstance(runner, MasterRunner):
        return "master"
    if isinstance(runner, WorkerRunner):
        return "worker"
    return "local"


@events.init.add_listener
def _on_init(environment: Any, **_kw: Any) -> None:
    global _SINK, _ROLE, _RUNNER
    _RUNNER = environment.runner
    _ROLE = _role(environment.runner)
    opts = environment.parsed_options
    directory = getattr(opts, "gvh_samples", "") if opts is not None else ""
    if directory:
        _SINK = SampleSink(None if directory == STDOUT else Path(directory), _ROLE)
        _SINK.usage({"t": time.time(), "event": "init", "role": _ROLE, "pid": os.getpid(),
                     "locust": locust.__version__})
        _SINK.flush()

        def flusher() -> None:
            while True:
                gevent.sleep(1.0)  # sleep-ok: flush period of the sample buffer
                _SINK.flush()

        gevent.spawn(flusher)


@events.request.add_listener
def _on_request(request_type: str, name: str, response_time: float, response_length: int,
                context: dict[str, Any] | None = None, start_time: float | None = None,
                **_kw: Any) -> None:
    """Every request, with the outcome our task classified, as one raw sample (no rounding)."""
    holder = (context or {}).get("gvh")
    if _SINK is None or holder is None or start_time is None:
        return
    _SINK.add([round(start_time, 6), round(response_time / 1000.0, 6), holder["f"], holder["key"],
               holder.get("type", "info"), holder.get("value"), holder.get("result"), holder.get("error"),
               holder.get("gate"), holder.get("node"), holder.get("epoch"), holder["process"]])


@events.usage_monitor.add_listener
def _on_usage(environment: Any, cpu_usage: float, memory_usage: int, **_kw: Any) -> None:
    if _SINK is not None:
        _SINK.usage({"t": time.time(), "cpu": cpu_usage, "rss": memory_usage, "role": _ROLE})


@events.cpu_warning.add_listener
def _on_cpu_warning(environment: Any, cpu_usage: float, **_kw: Any) -> None:
    if _SINK is not None:
        _SINK.usage({"t": time.time(), "event": "cpu_warning", "cpu": cpu_usage, "role": _ROLE})


@events.report_to_master.add_listener
def _on_report_to_master(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
    """On a worker: add its CPU to the stats report it sends the master every few seconds."""
    data["gvh_cpu"] = getattr(_RUNNER, "current_cpu_usage", None)


@events.worker_report.add_listener
def _on_worker_report(client_id: str, data: dict[str, Any], **_kw: Any) -> None:
    """On the master: record each worker's CPU, so a saturated worker is seen even when the worker's
    own usage rows are out of reach."""
    if _SINK is not None and isinstance(data.get("gvh_cpu"), int | float):
        _SINK.usage({"t": time.time(), "cpu": data["gvh_cpu"], "role": f"worker:{client_id}"})


@events.quitting.add_listener
def _on_quitting(environment: Any, **_kw: Any) -> None:
    if _SINK is not None:
        _SINK.usage({"t": time.time(), "event": "quitting", "role": _ROLE, "samples": _SINK.count})
        _SINK.flush()


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_kw: Any) -> None:
    """End of a run (long-lived in-cluster workers see many): announce the count so far."""
    if _SINK is not None:
        _SINK.usage({"t": time.time(), "event": "test_stop", "role": _ROLE, "samples": _SINK.count})
        _SINK.flush()


@events.quit.add_listener
def _on_quit(exit_code: int, **_kw: Any) -> None:
    """After the runner stopped every user: the last samples (and a marker that the file is complete)."""
    if _SINK is not None:
        _SINK.usage({"t": time.time(), "event": "quit", "role": _ROLE, "samples": _SINK.count,
                     "exit_code": exit_code})
        _SINK.flush()


# --------------------------------------------------------------------------------------------------
class GoverseGateUser(FastHttpUser):
    """One Goverse client: a gate of its own (failing over to the next gate when its gate refuses
    connections), a weighted mix of counter and wallet calls at a fixed rate."""

    concurrency = 1  # one request in flight per user: a user is one sequential client
    _seq = 0

    def __init__(self, environment: Any) -> None:
        # The HTTP session is built in FastHttpUser.__init__, so the timeout option must be read first.
        opts = environment.parsed_options
        self.network_timeout = float(getattr(opts, "gvh_timeout", 10.0) or 10.0)
        self.connection_timeout = min(5.0, self.network_timeout)
        super().__init__(environment)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        GoverseGateUser._seq += 1
        self.n = GoverseGateUser._seq
        self.process = f"load-{os.getpid()}-{self.n}"
        seed = int(getattr(opts, "gvh_seed", 0) or 0)
        self.rng = random.Random(seed * 1_000_003 + os.getpid() * 7919 + self.n) if seed else random.Random()
        self.gates = parse_gates(getattr(opts, "gvh_gates", ""), self.host)
        self.gate_i = self.n % len(self.gates)
        self.ops, self.weights = parse_mix(getattr(opts, "gvh_mix", MIX_DEFAULT))
        self.prefix = getattr(opts, "gvh_prefix", "locust")
        self.counter_type = getattr(opts, "gvh_counter_type", "Counter")
        self.wallet_type = getattr(opts, "gvh_wallet_type", "Wallet")
        dist = getattr(opts, "gvh_dist", "uniform")
        self.counter_keys = KeyChooser(int(getattr(opts, "gvh_keys", 1000)), dist, self.rng)
        self.wallet_keys = KeyChooser(int(getattr(opts, "gvh_wallets", 100)), dist, self.rng)
        self.max_amount = max(1, int(getattr(opts, "gvh_max_amount", 5)))
        self.retry_ratio = float(getattr(opts, "gvh_retry_ratio", 0.1))
        self.user_rate = float(getattr(opts, "gvh_user_rate", 5.0))
        self.acked: list[tuple[str, str, int]] = []
        self._inc_bodies = {a: json.dumps({"request": pack_any("counter.IncrementRequest", {1: a})})
                            for a in range(1, self.max_amount + 1)}
        self._get_body = json.dumps({"request": pack_any("counter.GetRequest")})
        self._last_run: float | None = None

    def wait_time(self) -> float:
        """Constant throughput of ``user_rate`` per user; the first wait is a random phase."""
        period = 1.0 / self.user_rate
        now = time.perf_counter()
        if self._last_run is None:
            self._last_run = now + self.rng.uniform(0, period)
            return self._last_run - now
        self._last_run += period
        if self._last_run < now:  # fell behind (slow responses): do not burst to catch up
            self._last_run = now
        return self._last_run - now

    @task
    def call(self) -> None:
        op = self.rng.choices(self.ops, self.weights)[0]
        if op == "deposit":
            self._deposit()
            return
        key = f"{self.prefix}-ctr-{self.counter_keys.pick()}"
        if op == "increment":
            amount = self.rng.randint(1, self.max_amount)
            self._post("increment", key, amount, f"call/{self.counter_type}/{key}/Increment",
                       self._inc_bodies[amount])
        else:
            self._post("read", key, None, f"call/{self.counter_type}/{key}/Get", self._get_body)

    def _deposit(self) -> None:
        if self.acked and self.rng.random() < self.retry_ratio:
            key, call_id, amount = self.rng.choice(self.acked)
        else:
            key = f"{self.prefix}-wallet-{self.wallet_keys.pick()}"
            call_id, amount = uuid.uuid4().hex, self.rng.randint(1, self.max_amount)
        body = json.dumps({"call_id": call_id, "request": pack_any("wallet.DepositRequest", {1: amount})})
        holder = self._post("deposit", key, {"amount": amount, "call_id": call_id},
                            f"reliable-call/{self.wallet_type}/{key}/Deposit", body, reliable=True)
        if holder.get("type") == "ok" and len(self.acked) < 200:
            self.acked.append((key, call_id, amount))

    def _post(self, f: str, key: str, value: Any, path: str, body: str, reliable: bool = False) -> dict[str, Any]:
        gate_name, base = self.gates[self.gate_i]
        holder: dict[str, Any] = {"f": f, "key": key, "value": value, "gate": gate_name,
                                  "process": self.process}
        start = time.time()
        try:
            with self.client.post(f"{base}/api/v1/objects/{path}", data=body, name=f, catch_response=True,
                                  context={"gvh": holder},
                                  headers={"Content-Type": "application/json"}) as resp:
                kind, error = self._classify(resp, holder, reliable)
                holder["type"] = kind
                if kind == "ok":
                    resp.success()
                else:
                    holder["error"] = error
                    resp.failure(f"{kind}: {error}")
        finally:
            if "type" not in holder and _SINK is not None:
                # Killed (locust stopping the user) or crashed before the answer was classified: the
                # request may have been applied, so it is recorded as unknown — never dropped.
                _SINK.add([round(start, 6), round(time.time() - start, 6), f, key, "info", value, None,
                           "GENERATOR: stopped before the response", gate_name, None, None, self.process])
        if holder.get("code") in ("CONNECT", "NOT_READY") and len(self.gates) > 1:
            self.gate_i = (self.gate_i + 1) % len(self.gates)  # fail over, like GatePicker does
        return holder

    @staticmethod
    def _classify(resp: Any, holder: dict[str, Any], reliable: bool) -> tuple[str, str | None]:
        err = getattr(resp, "error", None)
        if err is not None and not resp.status_code:
            kind, code = classify_transport(err)
            holder["code"] = code
            return kind, f"{code}: {type(err).__name__}: {err}"[:300]
        status = resp.status_code
        headers = resp.headers or {}
        node, epoch = headers.get("X-Goverse-Node"), headers.get("X-Goverse-Epoch")
        if node:
            holder["node"] = node
        if epoch:
            with contextlib.suppress(ValueError):
                holder["epoch"] = int(epoch)
        try:
            doc = json.loads(resp.text) if resp.text else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            doc = {"error": (resp.text or "")[:200]}
        if not isinstance(doc, dict):
            doc = {"error": str(doc)[:200]}
        if status == 200 and "response" in doc:
            try:
                value = response_value(doc["response"])
            except (ValueError, UnicodeDecodeError) as exc:
                return "info", f"undecodable response: {exc}"
            rstatus = doc.get("status") if reliable else None
            holder["result"] = {"balance": value, "status": rstatus} if reliable else value
            if rstatus is not None and rstatus != "SUCCESS":
                holder["code"] = rstatus
                kind = "fail" if rstatus in ("SKIPPED", "FAILED") else "info"
                return kind, f"{rstatus}: {doc.get('error') or ''}"[:300]
            return "ok", None
        code = doc.get("code")
        message = str(doc.get("error") or f"HTTP {status}")
        holder["code"] = code
        return classify_error(status, code, message), f"{code}: {message}"[:300]


# --------------------------------------------------------------------------------------------------
class GoverseShape(LoadTestShape):
    """``--gvh-shape`` drives users from a schedule of offered rates (``shapes.py``); without it the
    usual ``-u/-r/-t`` apply (``use_common_options``), so plain locust usage is unchanged."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self._schedule: shapes.Schedule | None = None
        self._parsed = False
        self._marked = False

    def _load(self) -> None:
        opts = self.runner.environment.parsed_options if self.runner else None
        spec = getattr(opts, "gvh_shape", "") if opts is not None else ""
        self.user_rate = float(getattr(opts, "gvh_user_rate", 5.0) or 5.0)
        self._schedule = shapes.parse(spec) if spec else None
        self._parsed = True

    def reset_time(self) -> None:
        super().reset_time()
        self._marked = False

    def _mark_start(self) -> None:
        """Write the shape's start (wall clock) once, so the harness knows when each stage began."""
        self._marked = True
        opts = self.runner.environment.parsed_options if self.runner else None
        directory = getattr(opts, "gvh_samples", "") if opts is not None else ""
        if not directory:
            return
        doc = {"t0_wall": time.time() - self.get_run_time(), "shape": self._schedule.spec() if self._schedule else "",
               "user_rate": self.user_rate, "pid": os.getpid(), "locust": locust.__version__}
        if directory == STDOUT:
            sys.stdout.write(f"GVHT {_ROLE}-{os.getpid()} {json.dumps(doc)}\n")
            sys.stdout.flush()
            return
        path = Path(directory) / f"shape-{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, path)

    def _stop_requested(self) -> bool:
        """The harness ends an open-ended shape by creating ``<samples>/stop``: locust then stops the
        users the normal way (each finishes its request within --stop-timeout) and quits. Signals are
        no substitute: during a headless shape test locust has not yet installed its SIGTERM handler."""
        opts = self.runner.environment.parsed_options if self.runner else None
        directory = getattr(opts, "gvh_samples", "") if opts is not None else ""
        return bool(directory) and directory != STDOUT and (Path(directory) / STOP_FILE).exists()

    def tick(self) -> tuple[int, float] | None:
        if not self._parsed:
            self._load()
        if not self._marked:
            self._mark_start()
        if self._stop_requested():
            return None
        t = self.get_run_time()
        if self._schedule is None:
            opts = self.runner.environment.parsed_options if self.runner else None
            run_time = getattr(opts, "run_time", None) if opts is not None else None
            if run_time and t > run_time:
                return None
            users = int(getattr(opts, "num_users", 1) or 1) if opts is not None else 1
            return users, float(getattr(opts, "spawn_rate", 1) or 1)
        rate = self._schedule.rate_at(t)
        if rate is None:
            return None
        users = shapes.users_for(rate, self.user_rate)
        return users, float(max(users, 1) * 4)  # reach each stage's users within ~0.25 s
