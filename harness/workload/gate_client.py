"""A client of the Goverse HTTP gate, exactly as a Goverse user calls it, with honest outcomes.

Why outcome classification lives here: a checker can only be right if every operation is recorded as
``ok`` (happened), ``fail`` (definitely did not happen) or ``info`` (unknown). A timeout after the request
was sent, or a node-side error we cannot prove was rejected before applying, is ``info`` — Jepsen's rule.
Only errors that Goverse raises *before* forwarding a call (routing errors, contract §2.6) or that show no
byte reached the gate (connection refused) count as definite failures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from harness import wire

# Substrings of gate/node errors that prove the call was not applied (contract §2.6 routing errors and
# node-side rejections before the method runs). Everything else that is not a success is "info".
DEFINITE_FAILURE_MARKERS: tuple[str, ...] = (
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
DEFINITE_FAILURE_CODES: frozenset[str] = frozenset(
    {
        "METHOD_NOT_ALLOWED",
        "INVALID_PATH",
        "INVALID_PARAMETERS",
        "INVALID_BODY",
        "INVALID_JSON",
        "INVALID_BASE64",
        "INVALID_PROTOBUF",
        "ACCESS_DENIED",
        "UNAUTHENTICATED",
        "OBJECT_NOT_FOUND",
        "NOT_READY",
    }
)


@dataclass(frozen=True)
class CallOutcome:
    """The result of one gate call: ``type`` is ok | fail | info."""

    type: str
    message: Any = None  # decoded response message (ok)
    error: str | None = None
    code: str | None = None
    status: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # gate / node / epoch that served it
    reliable_status: str | None = None


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


def _serving_extra(headers: Any, gate: str) -> dict[str, Any]:
    extra: dict[str, Any] = {"gate": gate}
    node = headers.get("X-Goverse-Node")
    epoch = headers.get("X-Goverse-Epoch")
    if node:
        extra["node"] = node
    if epoch:
        try:
            extra["epoch"] = int(epoch)
        except ValueError:
            extra["epoch_raw"] = epoch
    return extra


class GateClient:
    """Async client of one or more gates; one aiohttp session with keep-alive **per gate**.

    ``timeout`` should exceed the gate's own call timeout so the gate's answer (e.g. CALL_TIMEOUT) is
    seen rather than our own; a client-side timeout is recorded as ``info``.

    Why a session per gate and no connection cap by default (``limit=0``): a call to a key whose node
    hangs holds its connection until the timeout. With a shared, capped pool (aiohttp's default of
    100, or the 64 this client once had) enough hung calls fill the pool and every call to a healthy
    node queues behind them — the client would report healthy nodes as slow and unavailable. The
    workload is open loop, so the open connections are bounded by rate × timeout anyway
    (``tests/workload/test_gate_client_isolation.py`` black-holes a node's keys and checks healthy p99).
    """

    def __init__(self, gate_urls: dict[str, str], timeout: float = 10.0, limit: int = 0,
                 grpc_gates: dict[str, str] | None = None) -> None:
        if not gate_urls:
            raise ValueError("gate_urls: at least one gate is required")
        if limit < 0:
            raise ValueError(f"limit: connections per gate must be >= 0 (0 = no cap), got {limit}")
        self.gate_urls = dict(gate_urls)
        self.timeout = timeout
        self._limit = limit
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._open = False
        # gate name -> host:port of its gRPC listener: reliable calls go there (real Goverse's only
        # reliable-call path) instead of the reference stack's HTTP extension route
        self.grpc_gates = dict(grpc_gates or {})
        self._grpc: Any = None

    async def __aenter__(self) -> GateClient:
        self._open = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._open = False
        sessions, self._sessions = self._sessions, {}
        for s in sessions.values():
            await s.close()
        if self._grpc is not None:
            await self._grpc.close()
            self._grpc = None

    def set_grpc_gates(self, grpc_gates: dict[str, str]) -> None:
        """Learn more gates' gRPC addresses (gates were scaled); existing channels are kept."""
        self.grpc_gates.update(grpc_gates)
        if self._grpc is not None:
            self._grpc.targets.update(grpc_gates)

    def session_for(self, gate: str) -> aiohttp.ClientSession:
        """The gate's own session (made on first use, so gates added later get one too)."""
        if not self._open:
            raise RuntimeError("GateClient used outside 'async with'")
        s = self._sessions.get(gate)
        if s is None:
            s = self._sessions[gate] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, force_close=False),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return s

    async def call(self, gate: str, obj_type: str, obj_id: str, method: str, request: Any) -> CallOutcome:
        url = f"{self.gate_urls[gate]}/api/v1/objects/call/{obj_type}/{obj_id}/{method}"
        return await self._post(gate, url, {"request": wire.pack(request)})

    async def reliable_call(self, gate: str, call_id: str, obj_type: str, obj_id: str, method: str,
                            request: Any) -> CallOutcome:
        """Over the gate's gRPC service when its address is known (``grpc_gates``: real Goverse offers
        reliable calls only there), else the reference stack's HTTP extension route."""
        if self.grpc_gates:
            if gate not in self.grpc_gates:
                return CallOutcome("fail", error=f"no gRPC address known for {gate}", code="CONNECT",
                                   extra={"gate": gate})
            if self._grpc is None:
                from harness.workload.gate_grpc import GrpcReliableCaller

                self._grpc = GrpcReliableCaller(self.grpc_gates, self.timeout)
            return await self._grpc.call(gate, call_id, obj_type, obj_id, method, request)
        url = f"{self.gate_urls[gate]}/api/v1/objects/reliable-call/{obj_type}/{obj_id}/{method}"
        return await self._post(gate, url, {"call_id": call_id, "request": wire.pack(request)})

    async def _post(self, gate: str, url: str, body: dict[str, Any]) -> CallOutcome:
        extra = {"gate": gate}
        try:
            async with self.session_for(gate).post(url, json=body) as resp:
                text = await resp.text()
                extra = _serving_extra(resp.headers, gate)
                status = resp.status
        except aiohttp.ClientConnectorError as exc:
            # Nothing reached the gate: the call definitely did not happen.
            return CallOutcome("fail", error=f"connect: {exc}", code="CONNECT", extra=extra)
        except TimeoutError:
            return CallOutcome("info", error="client timeout", code="TIMEOUT", extra=extra)
        except aiohttp.ClientError as exc:
            return CallOutcome("info", error=f"{type(exc).__name__}: {exc}", code="TRANSPORT", extra=extra)
        try:
            doc = json.loads(text) if text else {}
        except json.JSONDecodeError:
            doc = {"error": text[:200]}
        if status == 200 and "response" in doc:
            try:
                msg = wire.unpack(doc["response"]) if doc["response"] else None
            except wire.WireError as exc:
                return CallOutcome("info", error=f"undecodable response: {exc}", status=status, extra=extra)
            rstatus = doc.get("status")
            if rstatus is not None and rstatus != "SUCCESS":
                kind = "fail" if rstatus in ("SKIPPED", "FAILED") else "info"
                return CallOutcome(kind, message=msg, error=doc.get("error") or rstatus, status=status,
                                   extra=extra, reliable_status=rstatus)
            return CallOutcome("ok", message=msg, status=status, extra=extra, reliable_status=rstatus)
        code = doc.get("code")
        err = doc.get("error") or f"HTTP {status}"
        return CallOutcome(classify_error(status, code, err), error=str(err)[:300], code=code,
                           status=status, extra=extra)
