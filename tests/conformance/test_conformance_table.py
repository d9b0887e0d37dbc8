"""The conformance table: grouped by seed section in natural order, worst verdict per group, evidence
shortened for passes and kept for failures."""

from __future__ import annotations

from harness.conformance.model import Result, Verdict
from harness.conformance.table import group, render_table, summary_line


def r(cid: str, verdict: str, evidence: str = "because", kind: str = "runtime") -> Result:
    return Result(cid, cid.split("-", 1)[0], f"title of {cid}", kind, Verdict(verdict), evidence)  # type: ignore[arg-type]


def test_groups_in_natural_section_order() -> None:
    rows = [r("2.10-x", "pass"), r("2.2-b", "pass"), r("2.2-a", "fail"), r("10.1-z", "pass"), r("2.9-y", "pass")]
    assert [s for s, _ in group(rows)] == ["2.2", "2.9", "2.10", "10.1"]
    assert [x.id for x in group(rows)[0][1]] == ["2.2-a", "2.2-b"]


def test_section_header_has_worst_verdict_and_counts() -> None:
    out = render_table([r("2.2-a", "pass"), r("2.2-b", "unknown"), r("5.1-c", "not-applicable")])
    lines = out.splitlines()
    assert lines[0].startswith("§2.2 Graceful shutdown — UNKNOWN (1 pass, 1 unknown)")
    assert any(ln.startswith("§5.1 Pod security — NOT-APPLICABLE") for ln in lines)
    assert "[UNKN] 2.2-b" in out and "[N/A ] 5.1-c" in out and "[PASS] 2.2-a" in out


def test_failures_keep_more_evidence_than_passes() -> None:
    long = " ".join(f"word{i}" for i in range(200))
    out = render_table([r("2.2-a", "pass", long), r("2.2-b", "fail", long)], width=80, evidence_lines=3)
    block_a = out.split("[PASS] 2.2-a")[1].split("[FAIL]")[0]
    block_b = out.split("[FAIL] 2.2-b")[1].split("\n\n")[0]
    assert block_a.count("\n") == 2  # title line end + one evidence line
    assert block_b.count("\n") == 3 and block_b.rstrip().endswith("…")


def test_summary_line_counts_every_verdict() -> None:
    line = summary_line([r("1.1-a", "pass"), r("1.1-b", "fail"), r("1.2-c", "not-applicable")])
    assert line == "conformance: FAIL — 3 checks: 1 pass, 1 fail, 0 unknown, 1 not-applicable"


def test_empty_table_says_so() -> None:
    assert render_table([]) == "conformance: no checks ran"
