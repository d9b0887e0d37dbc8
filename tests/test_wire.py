"""The wire format must be byte-identical to what a Goverse gate expects (contract §2.1)."""

import pytest
from google.protobuf import wrappers_pb2

from harness import wire


def test_int32value_matches_goverse_documented_example():
    # The contract's corrected example: Int32Value{5} -> this exact base64 of the serialized Any.
    assert wire.pack(wrappers_pb2.Int32Value(value=5)) == (
        "Ci50eXBlLmdvb2dsZWFwaXMuY29tL2dvb2dsZS5wcm90b2J1Zi5JbnQzMlZhbHVlEgIIBQ=="
    )


def test_counter_round_trip_keeps_type_and_fields():
    b64 = wire.pack(wire.new("counter.IncrementRequest", amount=7))
    assert wire.type_name(b64) == "counter.IncrementRequest"
    assert wire.to_dict(wire.unpack(b64)) == {"amount": 7}


def test_field_numbers_follow_goverse_samples():
    resp = wire.new("wallet.WalletResponse", wallet_id="w", balance=3, ok=True, reason="r")
    numbers = {f.name: f.number for f in resp.DESCRIPTOR.fields}
    assert numbers == {"wallet_id": 1, "balance": 2, "ok": 3, "reason": 4}
    assert {f.name: f.number for f in wire.new("counter.CounterResponse").DESCRIPTOR.fields} == {
        "name": 1, "value": 2}


@pytest.mark.parametrize("bad", ["***", "aGVsbG8="])
def test_garbage_is_a_wire_error(bad):
    with pytest.raises(wire.WireError):
        wire.unpack(bad)
