"""junit.xml for CI: one ``<testcase>`` per scenario.

Mapping (what CI systems display): ``fail`` → ``<failure message=reason>``, ``unknown`` → ``<error
message=reason>`` (the harness could not decide; still red) — except "unknown: harness starved": a
``<skipped type="starved">`` unless ``strict_unknown`` (the machine, not the stack, spoiled it),
``skipped`` → ``<skipped message=reason>``,
``not-applicable`` (every check said the requirement does not apply) → ``<skipped message="not applicable:
reason">`` — never shown as a pass. A passing scenario with some not-applicable checks keeps them, with
their reasons, in ``<system-out>`` and counts them in its ``not_applicable_checks`` property.
The checks go into the element text and the headline numbers into ``<properties>``, so the CI page
alone says which invariant broke and by how much (Sonobuoy's e2e.log + junit_01.xml idea).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from harness.report.html import seeded_bugs
from harness.report.results import is_starved, scenario_p99


def _split_id(scenario_id: str) -> tuple[str, str]:
    """``scenarios/test_restarts.py::test_x[sigkill]`` → (``scenarios.test_restarts``, ``test_x[sigkill]``)."""
    if "::" in scenario_id:
        path, name = scenario_id.split("::", 1)
        classname = path.removesuffix(".py").replace("/", ".")
        return classname, name
    return "goverse-harness", scenario_id


def _checks_text(s: dict[str, Any]) -> str:
    return "\n".join(f"{c.get('name')} [{c.get('verdict')}]: {c.get('detail')}" for c in s.get("checks", []))


def junit_xml(run: dict[str, Any]) -> str:
    scenarios = run.get("scenarios", [])
    strict = bool((run.get("settings") or {}).get("strict_unknown"))
    excused = {id(s) for s in scenarios if is_starved(s) and not strict}  # not failures: shown as skipped
    count = {v: sum(1 for s in scenarios if s.get("verdict") == v and id(s) not in excused)
             for v in ("fail", "unknown", "skipped", "not-applicable")}
    count["skipped"] += len(excused)
    total_time = sum(s.get("duration_s") or 0.0 for s in scenarios)
    suites = ET.Element("testsuites", name="goverse-harness")
    suite = ET.SubElement(
        suites, "testsuite", name=f"goverse-harness {run.get('run_id', '')}".strip(),
        tests=str(len(scenarios)), failures=str(count["fail"]), errors=str(count["unknown"]),
        skipped=str(count["skipped"] + count["not-applicable"]), time=f"{total_time:.3f}",
        timestamp=str(run.get("started_at") or ""),
    )
    props = ET.SubElement(suite, "properties")
    for key in ("run_id", "platform", "stack"):
        ET.SubElement(props, "property", name=key, value=str(run.get(key)))
    bugs = seeded_bugs(run)
    ET.SubElement(props, "property", name="seeded_bugs", value=", ".join(bugs) or "none")
    for s in scenarios:
        classname, name = _split_id(str(s.get("id")))
        case = ET.SubElement(suite, "testcase", classname=classname, name=name,
                             time=f"{s.get('duration_s') or 0.0:.3f}")
        cprops = ET.SubElement(case, "properties")
        for key in ("rto_s", "unavailability_s", "recovery_after_heal_s"):
            ET.SubElement(cprops, "property", name=key, value=str(s.get(key)))
        ET.SubElement(cprops, "property", name="p99_ms", value=str(scenario_p99(s)))
        if bugs:  # on every case too: CI pages often show only the failing testcase
            ET.SubElement(cprops, "property", name="seeded_bugs", value=", ".join(bugs))
        verdict = s.get("verdict")
        reason = str(s.get("reason") or verdict)
        if id(s) in excused:
            ET.SubElement(case, "skipped", message=f"unknown: {reason}", type="starved")
        elif verdict == "fail":
            ET.SubElement(case, "failure", message=reason, type="fail").text = _checks_text(s)
        elif verdict == "unknown":
            ET.SubElement(case, "error", message=reason, type="unknown").text = _checks_text(s)
        elif verdict == "skipped":
            ET.SubElement(case, "skipped", message=reason)
        elif verdict == "not-applicable":
            ET.SubElement(case, "skipped", message=f"not applicable: {reason}", type="not-applicable")
        na = sum(1 for c in s.get("checks", []) if c.get("verdict") == "not-applicable")
        if na:
            ET.SubElement(cprops, "property", name="not_applicable_checks", value=str(na))
        if s.get("checks"):
            ET.SubElement(case, "system-out").text = _checks_text(s)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
