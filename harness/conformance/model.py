"""The data of the conformance suite: a check's identity, its verdict and its result.

The verdict is the harness's one model (:class:`harness.checkers.verdict.Verdict`, with
``not-applicable``): like kube-bench and Sonobuoy, a conformance table must say *which* requirements
do not apply to what was examined (a ServiceMonitor check on an overlay without Prometheus Operator, an
ad-hoc instance on a platform that cannot start one) instead of passing them silently or failing them
unfairly. Merging is the checkers' rule — fail beats unknown beats pass — and ``not-applicable`` only
wins when nothing else was decided (Sonobuoy's lesson: a plugin that produced nothing is ``unknown``,
never ``passed``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.checkers.verdict import Verdict
from harness.checkers.verdict import merge_verdicts as merge

Kind = Literal["static", "runtime"]
ID_RE = re.compile(r"^(?P<section>\d+\.\d+)-[a-z0-9]+(?:-[a-z0-9]+)*$")


__all__ = ["ID_RE", "CheckSpec", "Judgement", "Kind", "Result", "Verdict", "failed", "merge", "not_applicable",
           "passed", "section_of", "unknown"]


def section_of(check_id: str) -> str:
    """``"2.2-sigterm-drain"`` -> ``"2.2"``; raises ``ValueError`` for an id that does not start with
    a seed section (ids are part of the interface: CI selects them with ``-k``)."""
    m = ID_RE.match(check_id)
    if not m:
        raise ValueError(f"bad conformance check id {check_id!r}: expected '<section>-<words>', "
                         "e.g. '2.2-sigterm-drain' (lowercase words joined by '-')")
    return m.group("section")


@dataclass(frozen=True)
class CheckSpec:
    """One requirement of the seed as a check. ``why`` is the sentence docs/conformance.md explains."""

    id: str
    title: str
    kind: Kind
    why: str

    @property
    def section(self) -> str:
        return section_of(self.id)


@dataclass(frozen=True)
class Result:
    """The outcome of one check; ``evidence`` is the human sentence (names, numbers), ``data`` the same
    facts machine-readable. Never put a secret in either (callers redact)."""

    id: str
    section: str
    title: str
    kind: Kind
    verdict: Verdict
    evidence: str
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Verdict(self.verdict))

    @staticmethod
    def of(spec: CheckSpec, verdict: Verdict | str, evidence: str, data: dict[str, Any] | None = None) -> Result:
        return Result(spec.id, spec.section, spec.title, spec.kind, Verdict(verdict), evidence, dict(data or {}))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "section": self.section, "title": self.title, "kind": self.kind,
                "verdict": str(self.verdict), "evidence": self.evidence, "data": self.data}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Result:
        return Result(id=str(d["id"]), section=str(d.get("section") or section_of(str(d["id"]))),
                      title=str(d.get("title", "")), kind=d.get("kind", "runtime"),
                      verdict=Verdict(d.get("verdict", "unknown")), evidence=str(d.get("evidence", "")),
                      data=dict(d.get("data") or {}))


@dataclass(frozen=True)
class Judgement:
    """What a pure judge returns before it is tied to a check id: verdict, sentence, facts."""

    verdict: Verdict
    evidence: str
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", Verdict(self.verdict))


def passed(evidence: str, **data: Any) -> Judgement:
    return Judgement(Verdict.PASS, evidence, data)


def failed(evidence: str, **data: Any) -> Judgement:
    return Judgement(Verdict.FAIL, evidence, data)


def unknown(evidence: str, **data: Any) -> Judgement:
    return Judgement(Verdict.UNKNOWN, evidence, data)


def not_applicable(evidence: str, **data: Any) -> Judgement:
    return Judgement(Verdict.NOT_APPLICABLE, evidence, data)
