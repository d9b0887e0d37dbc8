"""Goverse wire shapes: the sample protobuf messages and the HTTP gate's base64(Any) encoding.

Why build descriptors in code: the harness must speak exactly the bytes a Goverse gate expects
(same proto package, message names and field numbers as Goverse's `counter` and `wallet` samples),
and it must do so on a machine without `protoc`. Declaring the two tiny files programmatically keeps
one source of truth shared by the workload client and the reference stack.
"""

from __future__ import annotations

import base64
from typing import Any as PyAny

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

TYPE_URL_PREFIX = "type.googleapis.com/"

_T = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "int32": _T.TYPE_INT32,
    "int64": _T.TYPE_INT64,
    "string": _T.TYPE_STRING,
    "bool": _T.TYPE_BOOL,
}

# package -> message -> [(field name, type, number)] ; field numbers follow Goverse's samples.
_SCHEMA: dict[str, dict[str, list[tuple[str, str, int]]]] = {
    "counter": {
        "IncrementRequest": [("amount", "int32", 1)],
        "DecrementRequest": [("amount", "int32", 1)],
        "GetRequest": [],
        "ResetRequest": [],
        "CounterResponse": [("name", "string", 1), ("value", "int32", 2)],
    },
    "wallet": {
        "DepositRequest": [("amount", "int64", 1)],
        "WithdrawRequest": [("amount", "int64", 1)],
        "GetBalanceRequest": [],
        "WalletResponse": [
            ("wallet_id", "string", 1),
            ("balance", "int64", 2),
            ("ok", "bool", 3),
            ("reason", "string", 4),
        ],
    },
}

_pool = descriptor_pool.DescriptorPool()
_classes: dict[str, type[Message]] = {}


def _build() -> None:
    for package, messages in _SCHEMA.items():
        fdp = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto3")
        for msg_name, fields in messages.items():
            mdp = fdp.message_type.add(name=msg_name)
            for fname, ftype, number in fields:
                mdp.field.add(name=fname, number=number, type=_SCALARS[ftype], label=_T.LABEL_OPTIONAL)
        _pool.Add(fdp)
        for msg_name in messages:
            full = f"{package}.{msg_name}"
            _classes[full] = message_factory.GetMessageClass(_pool.FindMessageTypeByName(full))


_build()


class WireError(ValueError):
    """A payload that is not a valid base64(Any) of a known message."""


def message_class(full_name: str) -> type[Message]:
    """The generated class for e.g. ``counter.IncrementRequest``."""
    try:
        return _classes[full_name]
    except KeyError:
        raise WireError(f"unknown message type {full_name!r}; known: {sorted(_classes)}") from None


def new(full_name: str, **fields: PyAny) -> Message:
    """Build a message by full name: ``new("counter.IncrementRequest", amount=5)``."""
    return message_class(full_name)(**fields)


def pack(msg: Message) -> str:
    """Message -> standard base64 (with padding) of the serialized ``google.protobuf.Any``."""
    anyv = any_pb2.Any()
    anyv.Pack(msg)
    return base64.b64encode(anyv.SerializeToString()).decode("ascii")


def unpack(b64: str) -> Message:
    """Standard base64 of a serialized Any -> the inner message (known types only)."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (ValueError, TypeError) as exc:
        raise WireError(f"invalid base64: {exc}") from exc
    anyv = any_pb2.Any()
    try:
        anyv.ParseFromString(raw)
    except Exception as exc:  # protobuf raises DecodeError (a Message.Error subclass)
        raise WireError(f"invalid protobuf Any: {exc}") from exc
    return unpack_any(anyv)


def unpack_any(anyv: any_pb2.Any) -> Message:
    """A parsed ``google.protobuf.Any`` -> the inner message (known types only)."""
    name = anyv.type_url.rsplit("/", 1)[-1]
    cls = message_class(name)
    msg = cls()
    if not anyv.Unpack(msg):
        raise WireError(f"Any does not hold {name}")
    return msg


def type_name(b64: str) -> str:
    """The full message name inside a base64(Any), without decoding the message itself."""
    anyv = any_pb2.Any()
    anyv.ParseFromString(base64.b64decode(b64))
    return anyv.type_url.rsplit("/", 1)[-1]


def to_dict(msg: Message) -> dict[str, PyAny]:
    """Field values of a flat message, defaults included (proto3 drops zeros on the wire)."""
    return {f.name: getattr(msg, f.name) for f in msg.DESCRIPTOR.fields}
