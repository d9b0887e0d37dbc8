"""Reliable calls over a gate's gRPC service: the bytes we send, and how each answer is classified.

A real gRPC server (grpc.aio, generic handler) stands in for the gate's ``gate.GateService``: it decodes
what the client sent with the gate's message layout and answers like Goverse v0.1.1's
``GateServer.ReliableCallObject`` (status strings from ``ReliableCallStatus.String()``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import any_pb2

from harness import wire
from harness.workload.gate_client import GateClient
from harness.workload.gate_grpc import Request, Response


class FakeGate:
    """Applies Wallet deposits once per call_id, like Goverse's reliable-call table; ``mode`` makes it
    answer SKIPPED/PENDING or abort with a gRPC status instead."""

    def __init__(self) -> None:
        self.balance = 0
        self.seen: dict[str, bytes] = {}
        self.mode = "ok"
        self.requests: list[Any] = []

    async def handle(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        req = Request.FromString(raw)
        self.requests.append(req)
        if self.mode == "invalid":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad type")
        if self.mode == "deadline":
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "context deadline exceeded")
        if self.mode in ("SKIPPED", "PENDING"):
            return Response(error=f"call {self.mode.lower()}", status=self.mode).SerializeToString()
        if req.call_id not in self.seen:
            inner = wire.unpack_any(any_pb2.Any.FromString(req.request))
            self.balance += inner.amount
            out = any_pb2.Any()
            out.Pack(wire.new("wallet.WalletResponse", wallet_id=req.id, balance=self.balance, ok=True))
            self.seen[req.call_id] = out.SerializeToString()
        return Response(response=self.seen[req.call_id], status="SUCCESS").SerializeToString()


async def _with_gate(body: Any) -> Any:
    gate = FakeGate()
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler("gate.GateService", {
        "ReliableCallObject": grpc.unary_unary_rpc_method_handler(gate.handle)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with GateClient({"g": "http://127.0.0.1:1"}, timeout=5,
                              grpc_gates={"g": f"127.0.0.1:{port}"}) as client:
            return await body(gate, client)
    finally:
        await server.stop(None)


def _deposit(client: GateClient, call_id: str, amount: int = 5) -> Any:
    return client.reliable_call("g", call_id, "Wallet", "w1", "Deposit",
                                wire.new("wallet.DepositRequest", amount=amount))


def test_deposits_go_over_grpc_and_retries_get_the_first_answer() -> None:
    async def body(gate: FakeGate, client: GateClient) -> Any:
        first = await _deposit(client, "c1")
        second = await _deposit(client, "c2", 7)
        retry = await _deposit(client, "c1")
        return gate, first, second, retry

    gate, first, second, retry = asyncio.run(_with_gate(body))
    assert [r.call_id for r in gate.requests] == ["c1", "c2", "c1"]
    assert (gate.requests[0].type, gate.requests[0].id, gate.requests[0].method) == ("Wallet", "w1", "Deposit")
    assert (first.type, first.reliable_status, wire.to_dict(first.message)["balance"]) == ("ok", "SUCCESS", 5)
    assert wire.to_dict(second.message)["balance"] == 12
    assert wire.to_dict(retry.message) == wire.to_dict(first.message) and gate.balance == 12


@pytest.mark.parametrize(("mode", "kind", "code"), [
    ("SKIPPED", "fail", "SKIPPED"),  # refused before running: not applied
    ("PENDING", "info", "PENDING"),  # may still apply
    ("invalid", "fail", "INVALID_ARGUMENT"),
    ("deadline", "info", "DEADLINE_EXCEEDED"),
])
def test_answers_are_classified(mode: str, kind: str, code: str) -> None:
    async def body(gate: FakeGate, client: GateClient) -> Any:
        gate.mode = mode
        return await _deposit(client, "c1")

    out = asyncio.run(_with_gate(body))
    assert (out.type, out.code) == (kind, code), out


def test_a_gate_nobody_listens_on_is_a_definite_failure() -> None:
    async def body() -> Any:
        async with GateClient({"g": "http://127.0.0.1:1"}, timeout=3, grpc_gates={"g": "127.0.0.1:1"}) as client:
            return await _deposit(client, "c1")

    out = asyncio.run(body())
    assert (out.type, out.code) == ("fail", "CONNECT"), out


def test_a_gate_added_later_is_reached_once_its_address_is_known() -> None:
    """Gates scaled up: Workload.set_gates hands the client the new gates' gRPC addresses."""
    async def body(gate: FakeGate, client: GateClient) -> Any:
        before = await client.reliable_call("h", "c0", "Wallet", "w1", "Deposit",
                                            wire.new("wallet.DepositRequest", amount=1))
        client.set_grpc_gates({"h": client.grpc_gates["g"]})
        after = await client.reliable_call("h", "c1", "Wallet", "w1", "Deposit",
                                           wire.new("wallet.DepositRequest", amount=1))
        return before, after

    before, after = asyncio.run(_with_gate(body))
    assert (before.type, before.code) == ("fail", "CONNECT") and "no gRPC address" in str(before.error)
    assert after.type == "ok"
