"""loadtests/locustfile.py speaks exactly the harness's wire format and outcome rules.

The locustfile imports locust, which monkey-patches the interpreter with gevent, so it is only ever
imported in a child process here; the child prints what it computed and this process compares it
with ``harness.wire`` and ``harness.workload.gate_client`` (the single sources of truth).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from harness import wire
from harness.workload import gate_client
from tests.support.paths import ROOT

LOADTESTS = ROOT / "loadtests"

CHILD = r"""
import json, socket, sys, random
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "standalone":
    sys.modules["harness.workload.gate_client"] = None  # as in the stock locust image: no harness
import locustfile as lf
inp = json.loads(sys.stdin.read())
out = {
    "uses_harness": lf.classify_error.__module__ != "locustfile",
    "markers": list(lf.DEFINITE_FAILURE_MARKERS), "codes": sorted(lf.DEFINITE_FAILURE_CODES),
    "classify": [lf.classify_error(*c) for c in inp["classify"]],
    "inc": {a: lf.pack_any("counter.IncrementRequest", {1: a}) for a in range(1, 6)},
    "get": lf.pack_any("counter.GetRequest"),
    "dep": lf.pack_any("wallet.DepositRequest", {1: 123456789012}),
    "values": [lf.response_value(b) for b in inp["responses"]],
    "transport": [list(lf.classify_transport(e)) for e in (
        ConnectionRefusedError(111, "refused"), OSError(113, "no route"), socket.timeout("timed out"),
        ConnectionResetError(104, "reset"), OSError(32, "broken pipe"))],
    "mix": lf.parse_mix("increment:6,read:3,deposit:0"),
    "gates": lf.parse_gates("gate-0=http://a:1/,http://b:2", None),
}
ch = lf.KeyChooser(1000, "hot:10:0.8", random.Random(7))
picks = [ch.pick() for _ in range(20000)]
out["hot_share"] = sum(p < 10 for p in picks) / len(picks)
u = lf.KeyChooser(50, "uniform", random.Random(7))
out["uniform_keys"] = len({u.pick() for _ in range(5000)})
errs = []
for bad in ("zipf", "hot:10", "hot:10:1.5"):
    try:
        lf.KeyChooser(10, bad, random.Random(1))
    except ValueError as exc:
        errs.append(str(exc))
for bad in ("increment:1,write:2", "read:0"):
    try:
        lf.parse_mix(bad)
    except ValueError as exc:
        errs.append(str(exc))
out["errors"] = errs
print(json.dumps(out))
"""

CLASSIFY_CASES: list[tuple[int | None, str | None, str | None]] = [
    (500, "CALL_FAILED", "cannot determine node for object x: shard 3 has no current node"),
    (500, "CALL_FAILED", "object X is in migration from node-1"),
    (504, "CALL_TIMEOUT", "remote call on node n timed out after 5s (outcome unknown)"),
    (500, "CALL_FAILED", "something else broke"),
    (404, "OBJECT_NOT_FOUND", "method not found in class Counter: Nope"),
    (400, "INVALID_JSON", "bad"),
    (429, None, "slow down"),
    (503, "NOT_READY", "Cluster is not ready"),
    (None, None, None),
]


def _run_child(mode: str) -> dict[str, Any]:
    responses = [
        wire.pack(wire.new("counter.CounterResponse", name="k", value=42)),
        wire.pack(wire.new("counter.CounterResponse", name="k", value=-7)),
        wire.pack(wire.new("counter.CounterResponse", name="k", value=0)),
        wire.pack(wire.new("wallet.WalletResponse", wallet_id="w", balance=2**40, ok=True)),
        "",
    ]
    proc = subprocess.run([sys.executable, "-c", CHILD, str(LOADTESTS), mode], capture_output=True, text=True,
                          input=json.dumps({"classify": CLASSIFY_CASES, "responses": responses}), timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=["with-harness", "standalone"])
def child(request: pytest.FixtureRequest) -> dict[str, Any]:
    out = _run_child(request.param)
    assert out["uses_harness"] is (request.param == "with-harness")
    return out


def test_requests_are_byte_identical_to_harness_wire(child: dict[str, Any]) -> None:
    for a in range(1, 6):
        assert child["inc"][str(a)] == wire.pack(wire.new("counter.IncrementRequest", amount=a))
    assert child["get"] == wire.pack(wire.new("counter.GetRequest"))
    assert child["dep"] == wire.pack(wire.new("wallet.DepositRequest", amount=123456789012))


def test_responses_decode_like_harness_wire(child: dict[str, Any]) -> None:
    assert child["values"] == [42, -7, 0, 2**40, None]


def test_outcome_rules_are_the_gate_clients(child: dict[str, Any]) -> None:
    """The embedded fallback copy (standalone) and the harness's rules agree, case by case."""
    assert child["markers"] == list(gate_client.DEFINITE_FAILURE_MARKERS)
    assert child["codes"] == sorted(gate_client.DEFINITE_FAILURE_CODES)
    assert child["classify"] == [gate_client.classify_error(*c) for c in CLASSIFY_CASES]


def test_transport_errors(child: dict[str, Any]) -> None:
    """Refused / unreachable: nothing reached the gate (fail). Timeouts and broken connections after
    sending: unknown (info) — a resent or half-applied increment must never count as not applied."""
    assert child["transport"] == [["fail", "CONNECT"], ["fail", "CONNECT"], ["info", "TIMEOUT"],
                                  ["info", "TRANSPORT"], ["info", "TRANSPORT"]]


def test_mix_gates_and_key_distributions(child: dict[str, Any]) -> None:
    assert child["mix"] == [["increment", "read"], [6.0, 3.0]]
    assert child["gates"] == [["gate-0", "http://a:1"], ["gate-1", "http://b:2"]]
    assert 0.78 < child["hot_share"] < 0.83  # 80 % on the hot set, plus the uniform share that lands there
    assert child["uniform_keys"] == 50
    assert len(child["errors"]) == 5, child["errors"]
