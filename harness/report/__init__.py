"""Report: the run directory, run.json, junit.xml, the HTML report with plots, and run comparison.

Flow: the controller creates a run (:class:`RunStore`.create), every scenario writes its own
directory (:func:`write_scenario_result`), then :func:`finalize` assembles run.json, junit.xml and
report.html. ``goverse-harness report`` (:func:`harness.report.cli.report_main`) re-reads and compares.
Plots import matplotlib lazily (``harness.report.plots``), so importing this package stays cheap.
"""

from harness.report.compare import Regression, compare, render_compare_html, render_compare_text
from harness.report.finalize import build_run_json, finalize, finalize_run
from harness.report.junit import junit_xml
from harness.report.results import (
    RUN_SCHEMA,
    ScenarioResult,
    fault_records,
    overall_verdict,
    scenario_p99,
    write_scenario_result,
)
from harness.report.store import RunDir, RunStore, create_run_dir, scenario_dirname
from harness.report.summary import summary_table

__all__ = [
    "RUN_SCHEMA",
    "Regression",
    "RunDir",
    "RunStore",
    "ScenarioResult",
    "build_run_json",
    "compare",
    "create_run_dir",
    "fault_records",
    "finalize",
    "finalize_run",
    "junit_xml",
    "overall_verdict",
    "render_compare_html",
    "render_compare_text",
    "scenario_dirname",
    "scenario_p99",
    "summary_table",
    "write_scenario_result",
]
