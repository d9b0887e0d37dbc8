"""A small asyncio client for etcd's v3 JSON gateway that uses every configured endpoint.

Why not a library: the stack runs on one asyncio loop and needs per-request deadlines (a black-holed
endpoint must cost at most one timeout, not a hung thread), plus failover across *all* endpoints —
Goverse v0.1.1 only ever dials the first one (contract §0.2), which the seed asks us to fix. etcd's
gRPC-gateway (``/v3/kv/range``, ``/v3/kv/txn``, ``/v3/lease/*``; base64 keys, int64 as strings) is a
stable, documented surface, and aiohttp gives us timeouts and connection reuse.

Reads are linearizable (etcd's default), so a member cut off from the quorum fails the request and
the client moves on to the next endpoint instead of serving a stale view.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

# gRPC status codes that mean "this member cannot serve now; another one may"
_RETRY_ON_OTHER_MEMBER = {1, 4, 14}  # CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE


class EtcdError(Exception):
    """etcd answered with an error (e.g. lease not found)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class EtcdUnavailable(EtcdError):
    """No endpoint could answer within the deadline."""


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def unb64(text: str | None) -> str:
    return base64.b64decode(text).decode("utf-8") if text else ""


def prefix_end(prefix: str) -> str:
    """The ``range_end`` that selects every key starting with ``prefix``."""
    raw = bytearray(prefix.encode("utf-8"))
    for i in range(len(raw) - 1, -1, -1):
        if raw[i] < 0xFF:
            raw[i] += 1
            return bytes(raw[: i + 1]).decode("utf-8", errors="surrogateescape")
    return "\0"


@dataclass(frozen=True, slots=True)
class KV:
    key: str
    value: str
    mod_revision: int
    create_revision: int
    lease: int

    @staticmethod
    def from_json(d: dict[str, Any]) -> KV:
        return KV(unb64(d.get("key")), unb64(d.get("value")), int(d.get("mod_revision", 0)),
                  int(d.get("create_revision", 0)), int(d.get("lease", 0)))


def op_range(key: str, *, prefix: bool = False, min_mod_revision: int = 0) -> dict[str, Any]:
    req: dict[str, Any] = {"key": b64(key)}
    if prefix:
        req["range_end"] = b64(prefix_end(key))
    if min_mod_revision:
        req["min_mod_revision"] = str(min_mod_revision)
    return {"request_range": req}


def op_put(key: str, value: str, lease: int = 0) -> dict[str, Any]:
    req: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if lease:
        req["lease"] = str(lease)
    return {"request_put": req}


def op_delete(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": b64(key)}}


def cmp_mod(key: str, mod_revision: int) -> dict[str, Any]:
    """Compare: the key's mod_revision equals ``mod_revision`` (0 = the key does not exist)."""
    return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(mod_revision)}


def cmp_value(key: str, value: str) -> dict[str, Any]:
    return {"key": b64(key), "target": "VALUE", "result": "EQUAL", "value": b64(value)}


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[dict[str, Any]]

    def ranges(self) -> list[list[KV]]:
        """KVs of each ``response_range`` in order."""
        return [[KV.from_json(kv) for kv in r["response_range"].get("kvs", [])]
                for r in self.responses if "response_range" in r]


class EtcdClient:
    """Sticky to one healthy endpoint; on a transport error or an 'unavailable' answer it moves on to
    the next endpoint and retries, until every endpoint was tried once."""

    def __init__(self, endpoints: Sequence[str], timeout: float = 2.0) -> None:
        if not endpoints:
            raise ValueError("etcd endpoints: at least one is required")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout = timeout
        self._current = 0
        self._session: aiohttp.ClientSession | None = None
        self.failovers = 0

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=32, force_close=False),
                json_serialize=json.dumps,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def current_endpoint(self) -> str:
        return self.endpoints[self._current]

    async def post(self, path: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """POST ``body`` to ``path`` on the current endpoint, failing over to the others."""
        session = self._get_session()
        per_try = aiohttp.ClientTimeout(total=timeout or self.timeout)
        errors: list[str] = []
        start = self._current
        for i in range(len(self.endpoints)):
            idx = (start + i) % len(self.endpoints)
            url = self.endpoints[idx] + path
            try:
                async with session.post(url, json=body, timeout=per_try) as resp:
                    text = await resp.text()
                    data = _decode(text)
                    if resp.status == 200 and "error" not in data:
                        if idx != self._current:
                            self.failovers += 1
                            log.info("etcd: now using endpoint %s", self.endpoints[idx])
                            self._current = idx
                        return data
                    err = data.get("error") if isinstance(data, dict) else None
                    code = data.get("code") if isinstance(data, dict) else None
                    if isinstance(err, dict):  # streaming endpoints wrap errors
                        code, err = err.get("grpc_code", err.get("code")), err.get("message")
                    if code in _RETRY_ON_OTHER_MEMBER or resp.status in (502, 503, 504):
                        errors.append(f"{self.endpoints[idx]}: {err or resp.status}")
                        continue
                    raise EtcdError(str(err or f"HTTP {resp.status}: {text[:200]}"), code)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                errors.append(f"{self.endpoints[idx]}: {type(exc).__name__} {exc}".strip())
                continue
        raise EtcdUnavailable("no etcd endpoint answered: " + "; ".join(errors))

    # ------------------------------------------------------------------ KV
    async def range(self, key: str, *, prefix: bool = False, timeout: float | None = None) -> tuple[list[KV], int]:
        body = op_range(key, prefix=prefix)["request_range"]
        data = await self.post("/v3/kv/range", body, timeout)
        return [KV.from_json(kv) for kv in data.get("kvs", [])], int(data["header"]["revision"])

    async def get(self, key: str) -> KV | None:
        kvs, _ = await self.range(key)
        return kvs[0] if kvs else None

    async def put(self, key: str, value: str, lease: int = 0) -> int:
        body = op_put(key, value, lease)["request_put"]
        data = await self.post("/v3/kv/put", body)
        return int(data["header"]["revision"])

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        body: dict[str, Any] = {"key": b64(key)}
        if prefix:
            body["range_end"] = b64(prefix_end(key))
        data = await self.post("/v3/kv/deleterange", body)
        return int(data.get("deleted", 0))

    async def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
                  failure: list[dict[str, Any]] | None = None, timeout: float | None = None) -> TxnResult:
        body: dict[str, Any] = {"compare": compare, "success": success}
        if failure:
            body["failure"] = failure
        data = await self.post("/v3/kv/txn", body, timeout)
        return TxnResult(bool(data.get("succeeded", False)), int(data["header"]["revision"]),
                         data.get("responses", []))

    # --------------------------------------------------------------- leases
    async def lease_grant(self, ttl: float) -> tuple[int, int]:
        data = await self.post("/v3/lease/grant", {"TTL": str(max(1, round(ttl)))})
        if data.get("error"):
            raise EtcdError(str(data["error"]))
        return int(data["ID"]), int(data["TTL"])

    async def lease_keepalive(self, lease_id: int, timeout: float | None = None) -> int:
        """Refresh the lease; returns the remaining TTL in seconds, 0 if the lease is gone."""
        data = await self.post("/v3/lease/keepalive", {"ID": str(lease_id)}, timeout)
        result = data.get("result", data)
        return int(result.get("TTL", 0))

    async def lease_revoke(self, lease_id: int, timeout: float | None = None) -> None:
        try:
            await self.post("/v3/kv/lease/revoke", {"ID": str(lease_id)}, timeout)
        except EtcdError as exc:
            if exc.code != 5:  # NOT_FOUND: already expired, which is what we wanted
                raise

    async def status(self, timeout: float | None = None) -> dict[str, Any]:
        return await self.post("/v3/maintenance/status", {}, timeout)


def _decode(text: str) -> dict[str, Any]:
    """Gateway bodies are one JSON object; streaming RPCs return one object per line."""
    text = text.strip()
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        first = text.splitlines()[0]
        try:
            return json.loads(first)
        except json.JSONDecodeError:
            return {"error": f"undecodable response: {text[:200]}"}
