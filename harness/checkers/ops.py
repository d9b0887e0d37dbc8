"""Which operations of the history a checker looks at, named once.

Why a module of its own: every checker must agree on what a probe is, which ops count as counter
reads and which ops merely lack a completion because the history was cut short — otherwise two
checkers would judge the same run by different populations.
"""

from __future__ import annotations

import re

from harness.history import COMPLETION_TYPES, History, Op

PROBE_F = "probe"
PROBE_PREFIX = "probe-"
CLIENT_PREFIX = "client-"
INCREMENT_F = "increment"
READ_F = "read"
FINAL_READ_F = "final-read"
DEPOSIT_F = "deposit"
FINAL_BALANCE_F = "final-balance"
COUNTER_READ_FS = frozenset({READ_F, PROBE_F, FINAL_READ_F})
FINAL_FS = frozenset({FINAL_READ_F, FINAL_BALANCE_F})


def is_probe(op: Op) -> bool:
    return op.f == PROBE_F or op.process.startswith(PROBE_PREFIX)


def completed_op_ids(history: History) -> set[int]:
    """Ops whose completion is in the history. ``History.ops`` turns the others into ``info`` at the
    end of the history; they are truncation artefacts, not observations of the system."""
    return {e.op_id for e in history.events if e.type in COMPLETION_TYPES and e.op_id is not None}


def probe_ops(history: History) -> list[Op]:
    """Probe ops that completed (ok, fail or info), in invocation order."""
    done = completed_op_ids(history)
    return [op for op in history.ops() if is_probe(op) and op.op_id in done]


def as_int(value: object) -> int | None:
    """A counter value or epoch as recorded: a JSON int, or an integer string (protobuf's JSON mapping
    renders int64 as a string). Anything else (None, bool, floats, text) is not a value."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


def epoch_of(op: Op) -> int | None:
    extra = op.extra or {}
    return as_int(extra.get("epoch"))


def served_by(op: Op) -> str | None:
    """The node that served the op: ``extra.node`` (the gate is in ``op.node`` / ``extra.gate``)."""
    extra = op.extra or {}
    node = extra.get("node")
    return str(node) if node is not None else None


def fmt_t(t: float | None) -> str:
    return "—" if t is None else f"{t:.2f}s"
