"""Outcome classification: only errors proving a call was not applied may be 'fail' (Jepsen's rule)."""

import pytest

from harness.workload.gate_client import classify_error


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (500, "CALL_FAILED", "cannot determine node for object c1: shard 3 is in migration from a to b", "fail"),
        (500, "CALL_FAILED", "cannot determine node for object c1: shard 3 has no current node", "fail"),
        (500, "CALL_FAILED", "object c1 is sharded to node A, not this node B", "fail"),
        (503, "NOT_READY", "Gate server is stopped", "fail"),
        (400, "INVALID_BASE64", "bad", "fail"),
        (500, "CALL_FAILED", "remote CallObject failed on node A: rpc error: DeadlineExceeded", "info"),
        (504, "CALL_TIMEOUT", "call forwarded to node-1 timed out", "info"),
        (502, None, "Bad Gateway", "info"),
    ],
)
def test_classification(status, code, message, expected):
    assert classify_error(status, code, message) == expected
