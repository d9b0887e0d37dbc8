"""The object types a reference node hosts: ``Counter`` and ``Wallet`` — pure state transitions.

Why pure: a method is ``(state, request) -> (new state, response)``; the node decides when the new
state becomes durable (write-through, fenced) and only then adopts it. Messages, names and error texts
match Goverse's samples (contract §1.11, §2.6) so one client works against both stacks. Unlike
Goverse's in-memory samples, both types here are persistent: their state is the protojson of a
message, stored in ``goverse_objects.data``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from harness import wire

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def wrap_int32(v: int) -> int:
    """Go int32 arithmetic wraps around; so does ours."""
    return (v - INT32_MIN) % 2**32 + INT32_MIN


class CallError(Exception):
    """The method could not run. ``str()`` is Goverse's message; nothing was applied."""


class MethodNotFound(CallError):
    pass


@dataclass(frozen=True)
class Method:
    request: str  # full message name the request Any must hold
    fn: Callable[[str, Any, Message], tuple[Any, Message]]
    mutates: bool


@dataclass(frozen=True)
class ObjectType:
    name: str
    methods: dict[str, Method]
    initial: Callable[[], Any]
    to_data: Callable[[str, Any], dict[str, Any]]
    from_data: Callable[[dict[str, Any]], Any]

    def method(self, name: str) -> Method:
        try:
            return self.methods[name]
        except KeyError:
            raise MethodNotFound(f"method not found in class {self.name}: {name}") from None

    def invoke(self, object_id: str, state: Any, method: str, request: Message) -> tuple[Any, Message]:
        """Run ``method`` on ``state``; raises ``CallError`` on a wrong method or request type."""
        m = self.method(method)
        got = request.DESCRIPTOR.full_name
        if got != m.request:
            raise CallError(f"request type mismatch: expected {m.request}, got {got}")
        return m.fn(object_id, state, request)


# ----------------------------------------------------------------------------------------- Counter
def _counter_resp(object_id: str, value: int) -> Message:
    return wire.new("counter.CounterResponse", name=object_id, value=value)


def _inc(oid: str, v: int, req: Any) -> tuple[int, Message]:
    nv = wrap_int32(v + req.amount)
    return nv, _counter_resp(oid, nv)


def _dec(oid: str, v: int, req: Any) -> tuple[int, Message]:
    nv = wrap_int32(v - req.amount)
    return nv, _counter_resp(oid, nv)


COUNTER = ObjectType(
    name="Counter",
    methods={
        "Increment": Method("counter.IncrementRequest", _inc, True),
        "Decrement": Method("counter.DecrementRequest", _dec, True),
        "Get": Method("counter.GetRequest", lambda oid, v, req: (v, _counter_resp(oid, v)), False),
        "Reset": Method("counter.ResetRequest", lambda oid, v, req: (0, _counter_resp(oid, 0)), True),
    },
    initial=lambda: 0,
    to_data=lambda oid, v: {"name": oid, "value": v},
    from_data=lambda d: int(d.get("value", 0)),
)


# ------------------------------------------------------------------------------------------ Wallet
def _wallet_resp(oid: str, balance: int, ok: bool, reason: str = "") -> Message:
    return wire.new("wallet.WalletResponse", wallet_id=oid, balance=balance, ok=ok, reason=reason)


def _deposit(oid: str, bal: int, req: Any) -> tuple[int, Message]:
    if req.amount <= 0:
        return bal, _wallet_resp(oid, bal, False, "amount must be positive")
    return bal + req.amount, _wallet_resp(oid, bal + req.amount, True)


def _withdraw(oid: str, bal: int, req: Any) -> tuple[int, Message]:
    if req.amount <= 0:
        return bal, _wallet_resp(oid, bal, False, "amount must be positive")
    if req.amount > bal:
        return bal, _wallet_resp(oid, bal, False, "insufficient funds")
    return bal - req.amount, _wallet_resp(oid, bal - req.amount, True)


WALLET = ObjectType(
    name="Wallet",
    methods={
        "Deposit": Method("wallet.DepositRequest", _deposit, True),
        "Withdraw": Method("wallet.WithdrawRequest", _withdraw, True),
        "GetBalance": Method("wallet.GetBalanceRequest", lambda oid, b, req: (b, _wallet_resp(oid, b, True)), False),
    },
    initial=lambda: 0,
    # protojson of WalletResponse: int64 is a string
    to_data=lambda oid, b: {"walletId": oid, "balance": str(b)},
    from_data=lambda d: int(d.get("balance", 0)),
)

TYPES: dict[str, ObjectType] = {t.name: t for t in (COUNTER, WALLET)}


def object_type(type_name: str, object_id: str) -> ObjectType:
    try:
        return TYPES[type_name]
    except KeyError:
        raise CallError(f"failed to auto-create object {object_id}: unknown object type: {type_name}") from None
