"""Counter and Wallet state transitions, messages and error texts (Goverse samples' shapes)."""

from __future__ import annotations

import pytest

from harness import wire
from harness.refstack.objects import COUNTER, WALLET, CallError, MethodNotFound, object_type, wrap_int32


def run(t, state, method, msg_name, **fields):  # noqa: ANN001, ANN201
    new_state, resp = t.invoke("obj-1", state, method, wire.new(msg_name, **fields))
    return new_state, wire.to_dict(resp)


def test_counter_methods() -> None:
    assert run(COUNTER, 0, "Increment", "counter.IncrementRequest", amount=5) == (5, {"name": "obj-1", "value": 5})
    assert run(COUNTER, 5, "Decrement", "counter.DecrementRequest", amount=7) == (-2, {"name": "obj-1", "value": -2})
    assert run(COUNTER, 9, "Get", "counter.GetRequest") == (9, {"name": "obj-1", "value": 9})
    assert run(COUNTER, 9, "Reset", "counter.ResetRequest") == (0, {"name": "obj-1", "value": 0})
    assert COUNTER.method("Get").mutates is False and COUNTER.method("Increment").mutates is True


def test_counter_wraps_like_go_int32() -> None:
    assert wrap_int32(2**31) == -(2**31)
    state, resp = run(COUNTER, 2**31 - 1, "Increment", "counter.IncrementRequest", amount=1)
    assert state == -(2**31) and resp["value"] == -(2**31)


def test_wallet_methods_and_refusals() -> None:
    assert run(WALLET, 0, "Deposit", "wallet.DepositRequest", amount=30) == (
        30, {"wallet_id": "obj-1", "balance": 30, "ok": True, "reason": ""})
    assert run(WALLET, 30, "Withdraw", "wallet.WithdrawRequest", amount=40) == (
        30, {"wallet_id": "obj-1", "balance": 30, "ok": False, "reason": "insufficient funds"})
    assert run(WALLET, 30, "Deposit", "wallet.DepositRequest", amount=0)[1]["reason"] == "amount must be positive"
    assert run(WALLET, 30, "Withdraw", "wallet.WithdrawRequest", amount=-3)[1]["reason"] == "amount must be positive"
    assert run(WALLET, 30, "Withdraw", "wallet.WithdrawRequest", amount=30)[0] == 0
    assert run(WALLET, 12, "GetBalance", "wallet.GetBalanceRequest")[1]["balance"] == 12


def test_state_round_trips_through_protojson_shaped_data() -> None:
    assert COUNTER.to_data("c", 7) == {"name": "c", "value": 7} and COUNTER.from_data({"name": "c", "value": 7}) == 7
    assert WALLET.to_data("w", 2**40) == {"walletId": "w", "balance": str(2**40)}
    assert WALLET.from_data(WALLET.to_data("w", 2**40)) == 2**40
    assert COUNTER.from_data({}) == 0, "protojson drops zero values"


def test_errors_use_goverse_texts() -> None:
    with pytest.raises(MethodNotFound, match=r"^method not found in class Counter: Explode$"):
        COUNTER.invoke("c", 0, "Explode", wire.new("counter.GetRequest"))
    with pytest.raises(CallError, match=r"^request type mismatch: expected counter.IncrementRequest, "
                                        r"got wallet.DepositRequest$"):
        COUNTER.invoke("c", 0, "Increment", wire.new("wallet.DepositRequest", amount=1))
    with pytest.raises(CallError, match=r"^failed to auto-create object x: unknown object type: Gizmo$"):
        object_type("Gizmo", "x")
    assert object_type("Wallet", "w") is WALLET
