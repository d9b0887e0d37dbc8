"""Pure judges for seed §2.3 (environment overrides) and §2.4 (pod identity).

Why "start an instance and observe the effect" rather than reading the parsed config: an override
that is parsed but not used (or used by one code path and not another) is exactly the bug; the only
proof is behaviour. Each ad-hoc instance is given a config that is *wrong* without the override (an
unreachable etcd, no node id, no password, no advertise address), so it can only register in etcd
under the expected identity if the variable took effect. The seeded bug ``env-ignored`` makes every
one of these judges fail.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.conformance.model import Judgement, Verdict, failed, passed, unknown


@dataclass(frozen=True)
class InstanceObservation:
    """What an ad-hoc instance did within the observation window.

    ``registered``: its membership key appeared in etcd; ``advertise``: the address it registered
    under; ``node_id``: the id it reports (status endpoint or etcd info record; None if it exposes
    none); ``exit_code``: set if it exited during the window; ``log_tail``: last lines of its log
    (redacted), for the evidence."""

    name: str
    registered: bool
    advertise: str | None = None
    node_id: str | None = None
    exit_code: int | None = None
    log_tail: str = ""
    waited_s: float = 0.0


def _why_not(obs: InstanceObservation) -> str:
    if obs.exit_code is not None:
        tail = obs.log_tail.strip().splitlines()[-1:] if obs.log_tail.strip() else []
        return f"{obs.name} exited with code {obs.exit_code}" + (f": {tail[0][:200]}" if tail else "")
    return f"{obs.name} did not register in etcd within {obs.waited_s:.1f}s"


def _data(obs: InstanceObservation) -> dict[str, object]:
    return {"instance": obs.name, "registered": obs.registered, "advertise": obs.advertise,
            "node_id": obs.node_id, "exit_code": obs.exit_code}


def judge_registered(obs: InstanceObservation | None, effect: str) -> Judgement:
    """The instance could only have registered if the override took effect (``effect`` says why)."""
    if obs is None:
        return unknown("the instance was not started")
    if not obs.registered:
        return failed(f"{_why_not(obs)} — {effect}", **_data(obs))
    return passed(f"{obs.name} registered as {obs.advertise}: {effect}", **_data(obs))


def judge_etcd_override(obs: InstanceObservation | None, real: str, dead: str, effect: str) -> Judgement:
    """``judge_registered`` for ``GOVERSE_ETCD_ENDPOINTS``: a node that did not register but whose last
    words name the variable's endpoint (``real``) and not the config's dead one took the variable and
    found etcd too slow to answer (a loaded machine): that is unknown, not a fail. Naming the dead
    endpoint, or neither, stays a fail."""
    j = judge_registered(obs, effect)
    if obs is None or j.verdict != Verdict.FAIL:
        return j
    tail = obs.log_tail or ""
    hosts = [e.split("://", 1)[-1] for e in real.split(",") if e]
    if hosts and any(h in tail for h in hosts) and dead.split("://", 1)[-1] not in tail:
        return unknown(f"{obs.name} took GOVERSE_ETCD_ENDPOINTS (it tried {real}) but did not register: etcd "
                       f"did not answer in time — {_why_not(obs)}", **_data(obs))
    return j


def judge_identity(obs: InstanceObservation | None, expected_id: str, source: str) -> Judgement:
    if obs is None:
        return unknown("the instance was not started")
    if not obs.registered:
        return failed(f"{_why_not(obs)}; expected it to run as node id {expected_id!r} from {source}", **_data(obs))
    if obs.node_id is None:
        return unknown(f"{obs.name} registered as {obs.advertise} but exposes no node id to compare "
                       f"with {expected_id!r}", **_data(obs))
    if obs.node_id != expected_id:
        return failed(f"{obs.name} runs as node id {obs.node_id!r}, expected {expected_id!r} from {source}",
                      **_data(obs))
    return passed(f"node id {obs.node_id!r} taken from {source} (registered as {obs.advertise})", **_data(obs))


def judge_advertise(obs: InstanceObservation | None, expected: str, source: str) -> Judgement:
    if obs is None:
        return unknown("the instance was not started")
    if not obs.registered:
        return failed(f"{_why_not(obs)}; expected it to advertise {expected} from {source}", **_data(obs))
    if obs.advertise != expected:
        return failed(f"{obs.name} advertises {obs.advertise}, expected {expected} from {source}", **_data(obs))
    return passed(f"advertises {obs.advertise}, built from {source}", **_data(obs))


def judge_rejected(obs: InstanceObservation | None, variable: str) -> Judgement:
    """An invalid override must stop the process at start-up (non-zero exit, before registering) with
    a message naming the variable."""
    if obs is None:
        return unknown("the instance was not started")
    if obs.registered:
        return failed(f"{obs.name} started and registered as {obs.advertise} despite an invalid {variable}",
                      **_data(obs))
    if obs.exit_code is None:
        return failed(f"{obs.name} neither registered nor exited within {obs.waited_s:.1f}s with an invalid "
                      f"{variable} (hanging instead of failing fast)", **_data(obs))
    if obs.exit_code == 0:
        return failed(f"{obs.name} exited 0 with an invalid {variable}", **_data(obs))
    if variable not in obs.log_tail:
        return failed(f"{obs.name} exited {obs.exit_code}, but its output does not name {variable}: "
                      f"{obs.log_tail.strip()[-200:]!r}", **_data(obs))
    line = next((ln for ln in obs.log_tail.splitlines() if variable in ln), "")
    return passed(f"exit {obs.exit_code} before registering: {line.strip()[:200]}", **_data(obs))
