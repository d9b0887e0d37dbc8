"""What the stack under test exposes to the harness's observers, declared per stack kind.

Why declared rather than guessed from the data: a check that finds no ownership epochs in a history
cannot tell "this stack never sends them" (nothing to judge: not-applicable, with the reason) from
"the stack should have sent them and did not" (a harness or stack defect: unknown, never hidden). The
declaration makes that difference explicit. It travels in the history's meta (like ``slo_ms``), so an
offline re-check of a recorded history judges exactly as the live run did, and checkers stay pure
(they read it from ``history.meta``, never from a deployment).

Only what a check needs is declared:

- ``epochs``: call answers say which node served them and its ownership epoch for the key's shard
  (``X-Goverse-Node``/``X-Goverse-Epoch``) — the O oracle (harness.checkers.ownership) needs both.
  Goverse v0.1.1 has no epoch or fencing token at all (see /work/shared/reference/goverse-contract.md
  and docs/platforms.md); its gate sends neither header.
- ``persistence_interval_s``: how an acknowledged write reaches PostgreSQL: ``0`` means before the
  acknowledgement (the reference stack), ``N`` means a periodic save every N seconds (Goverse:
  ``Node.persistenceInterval``, 5 minutes unless the node program sets it; goverse-app's
  ``--persistence-interval``). :func:`stored_state_wait` turns it into how long a scenario waits for
  the stored state, and :func:`stored_state_reason` into the rule that makes the stored-state check
  not applicable.
- ``build_version``: every instance reports the version it runs (``goverse_build_info`` on ``/metrics``)
  — what ``version_everywhere`` reads after a rolling upgrade. Goverse v0.1.1 exports no version at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

META_KEY = "capabilities"  # where the declaration lives in a history's meta

GOVERSE_DEFAULT_PERSISTENCE_INTERVAL_S = 300.0  # Goverse v0.1.1 Node.persistenceInterval (5 min)
STORED_WAIT_MIN_S = 5.0  # a stack that persists before acknowledging still gets this to settle
STORED_WAIT_MAX_S = 30.0  # the longest a scenario waits for the stored state to settle after the load
STORED_READ_GAP_S = 0.5  # two reads this far apart must agree (plus the interval on periodic stacks)
STORED_INTERVALS = 3  # a periodic stack gets this many save intervals to catch up


@dataclass(frozen=True)
class Capabilities:
    """What one stack kind exposes; ``stack`` names it in the reasons checks give."""

    stack: str
    epochs: bool
    persistence_interval_s: float
    build_version: bool = True

    def to_meta(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_meta(meta: dict[str, Any] | None) -> Capabilities | None:
        """The declaration recorded in a history's meta, or None for a history recorded before
        capabilities were declared (its checks judge as they always did). A malformed declaration is
        an error naming the key: a history that lies about its stack must not be judged quietly."""
        raw = (meta or {}).get(META_KEY) if isinstance(meta, dict) else None
        if raw is None:
            return None
        try:
            return Capabilities(stack=str(raw["stack"]), epochs=bool(raw["epochs"]),
                                persistence_interval_s=float(raw["persistence_interval_s"]),
                                build_version=bool(raw.get("build_version", True)))  # older histories: not declared
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"history meta {META_KEY!r} is malformed ({exc!r}); want "
                             "{stack: str, epochs: bool, persistence_interval_s: float ≥ 0}") from exc


def for_stack(stack: str, persistence_interval_s: float | None = None) -> Capabilities:
    """The declaration for a stack kind: ``reference`` exposes everything (it was built to be
    observed); ``goverse`` what Goverse v0.1.1 really exposes. ``persistence_interval_s``: the
    interval the deployment set on Goverse nodes (None: Goverse's default)."""
    if stack == "reference":
        return Capabilities(stack="reference", epochs=True, persistence_interval_s=0.0)
    if stack == "goverse":
        every = persistence_interval_s or GOVERSE_DEFAULT_PERSISTENCE_INTERVAL_S
        return Capabilities(stack="goverse", epochs=False, persistence_interval_s=float(every), build_version=False)
    raise ValueError(f"stack must be 'reference' or 'goverse', got {stack!r}")


def for_spec(spec: Any) -> Capabilities:
    """The declaration for a deployment's ``StackSpec``."""
    return for_stack(getattr(spec, "stack", "reference"), getattr(spec, "goverse_persistence_interval", None))


def stored_state_wait(caps: Capabilities) -> tuple[float, float]:
    """(gap between two reads of the stored state that must agree, deadline to wait for that).

    A stack that persists before acknowledging: reads 0.5 s apart, 5 s at most. A periodic one: reads
    one interval (+0.5 s) apart, so agreement proves it had nothing left to save, and a few intervals
    to catch up — capped at ``STORED_WAIT_MAX_S``."""
    every = caps.persistence_interval_s
    if every <= 0:
        return STORED_READ_GAP_S, STORED_WAIT_MIN_S
    gap = every + STORED_READ_GAP_S
    return gap, min(STORED_WAIT_MAX_S, max(STORED_WAIT_MIN_S, STORED_INTERVALS * gap))


def stored_state_reason(caps: Capabilities) -> str | None:
    """Why the stored state cannot be judged against the acknowledgements, or None if it can.

    The rule: a stack that saves only periodically is judged only if ``STORED_INTERVALS`` save
    intervals (each plus the 0.5 s read gap) fit in the ``STORED_WAIT_MAX_S`` a scenario waits after
    its load; otherwise the stored state legitimately lags every acknowledgement of the last interval
    and "behind" would be Goverse's documented behaviour, not evidence."""
    every = caps.persistence_interval_s
    if every <= 0 or STORED_INTERVALS * (every + STORED_READ_GAP_S) <= STORED_WAIT_MAX_S:
        return None
    return (f"stack {caps.stack} persists objects only every {every:g} s (a periodic save), and a scenario "
            f"waits at most {STORED_WAIT_MAX_S:g} s for the stored state ({STORED_INTERVALS} intervals of "
            f"{every:g} + {STORED_READ_GAP_S:g} s would need {STORED_INTERVALS * (every + STORED_READ_GAP_S):g} s); "
            "set a shorter persistence interval (goverse_persistence_interval) to judge it")
