"""Reliable calls through a Goverse gate's gRPC service (``gate.GateService/ReliableCallObject``).

Why: Goverse v0.1.1's gate offers reliable calls (deduplicated by ``call_id``) only over gRPC; its HTTP
API has plain calls only (``/api/v1/objects/reliable-call/…`` is a reference-stack extension). The
wallet workload and the exactly-once check (D) need the real path. No generated stubs: the two
messages are declared here like harness/wire.py does, with the ``google.protobuf.Any`` fields as
``bytes`` holding a serialized Any — the same bytes on the wire (both are length-delimited field 5/1).
"""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from harness import wire
from harness.workload.gate_client import CallOutcome

METHOD = "/gate.GateService/ReliableCallObject"

_T = descriptor_pb2.FieldDescriptorProto
_pool = descriptor_pool.DescriptorPool()
_fdp = descriptor_pb2.FileDescriptorProto(name="gvh_gate_reliable.proto", package="gate", syntax="proto3")
for _name, _fields in {
    "ReliableCallObjectRequest": [("call_id", _T.TYPE_STRING, 1), ("type", _T.TYPE_STRING, 2),
                                  ("id", _T.TYPE_STRING, 3), ("method", _T.TYPE_STRING, 4),
                                  ("request", _T.TYPE_BYTES, 5)],
    "ReliableCallObjectResponse": [("response", _T.TYPE_BYTES, 1), ("error", _T.TYPE_STRING, 2),
                                   ("status", _T.TYPE_STRING, 3)],
}.items():
    _m = _fdp.message_type.add(name=_name)
    for _f, _ty, _n in _fields:
        _m.field.add(name=_f, number=_n, type=_ty, label=_T.LABEL_OPTIONAL)
_pool.Add(_fdp)
Request: type[Message] = message_factory.GetMessageClass(_pool.FindMessageTypeByName("gate.ReliableCallObjectRequest"))
Response: type[Message] = message_factory.GetMessageClass(
    _pool.FindMessageTypeByName("gate.ReliableCallObjectResponse"))

# gRPC codes that prove the gate did not forward the call (it refused it up front).
_DEFINITE = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                       grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
                       grpc.StatusCode.UNIMPLEMENTED})


def encode_request(call_id: str, obj_type: str, obj_id: str, method: str, request: Message) -> bytes:
    anyv = any_pb2.Any()
    anyv.Pack(request)
    return Request(call_id=call_id, type=obj_type, id=obj_id, method=method,
                   request=anyv.SerializeToString()).SerializeToString()


def outcome_of_response(raw: bytes, gate: str) -> CallOutcome:
    """The gate's answer as an outcome: SUCCESS is ok; SKIPPED/FAILED did not apply (fail); anything
    else (PENDING, UNKNOWN — e.g. the owning node died mid-call) is indeterminate (info)."""
    resp = Response.FromString(raw)
    status = str(resp.status).upper() or "UNKNOWN"
    msg: Message | None = None
    if resp.response:
        anyv = any_pb2.Any.FromString(resp.response)
        try:
            msg = wire.unpack_any(anyv)
        except wire.WireError as exc:
            return CallOutcome("info", error=f"undecodable response: {exc}", extra={"gate": gate},
                               reliable_status=status)
    if status == "SUCCESS":
        return CallOutcome("ok", message=msg, extra={"gate": gate}, reliable_status=status)
    kind = "fail" if status in ("SKIPPED", "FAILED") else "info"
    return CallOutcome(kind, message=msg, error=resp.error or status, code=status, extra={"gate": gate},
                       reliable_status=status)


def outcome_of_rpc_error(err: grpc.aio.AioRpcError, gate: str) -> CallOutcome:
    code = err.code()
    details = err.details() or ""
    if code in _DEFINITE:
        kind = "fail"
    elif code == grpc.StatusCode.UNAVAILABLE and ("connect" in details.lower() or "stopped" in details.lower()):
        kind = "fail"  # nothing reached a serving gate
    else:
        kind = "info"  # DEADLINE_EXCEEDED, CANCELLED, reset mid-call: it may have been applied
    return CallOutcome(kind, error=f"{code.name}: {details}"[:300], code="CONNECT" if kind == "fail" and
                       code == grpc.StatusCode.UNAVAILABLE else code.name, extra={"gate": gate})


class GrpcReliableCaller:
    """One insecure channel per gate (``host:port`` of its gRPC listener), opened lazily."""

    def __init__(self, targets: dict[str, str], timeout: float) -> None:
        self.targets = dict(targets)
        self.timeout = timeout
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _callable(self, gate: str) -> Any:
        ch = self._channels.get(gate)
        if ch is None:
            ch = self._channels[gate] = grpc.aio.insecure_channel(self.targets[gate])
        return ch.unary_unary(METHOD, request_serializer=None, response_deserializer=None)

    async def call(self, gate: str, call_id: str, obj_type: str, obj_id: str, method: str,
                   request: Message) -> CallOutcome:
        payload = encode_request(call_id, obj_type, obj_id, method, request)
        try:
            raw = await self._callable(gate)(payload, timeout=self.timeout)
        except grpc.aio.AioRpcError as err:
            return outcome_of_rpc_error(err, gate)
        return outcome_of_response(raw, gate)

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()
