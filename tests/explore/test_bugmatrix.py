"""The detection matrix built from real run.json files (tests/data/runs: a slow-failover run caught by
its RTO check, a no-fencing pause run caught by L/M, correct restart and chaos runs), and the catcher
table checked against the seeded bugs and the scenarios that exist."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from harness import bugmatrix
from harness.bugmatrix import CATCHERS, CORRECT, QUICK, STATED_RATE, Run, Selection, build_matrix, render_markdown
from harness.refstack.bugs import BUGS
from harness.settings import KNOWN_BUGS
from tests.support.paths import DATA, ROOT

RUNS = DATA / "runs"
RESTART = Selection("scenarios/test_restarts.py", "restart_node_sigkill")
PAUSE = Selection("scenarios/test_chaos.py", "pause-one-node]")


@cache
def run_json(name: str) -> dict[str, Any]:
    return json.loads((RUNS / f"{name}.json").read_text(encoding="utf-8"))


def test_a_caught_bug_and_a_clean_correct_build() -> None:
    m = build_matrix([Run("slow-failover", RESTART, 0, run_json("restart_sigkill_slow_failover")),
                      Run(None, RESTART, 0, run_json("restarts_correct"))])
    b = m["bugs"]["slow-failover"]
    assert (b["caught"], b["repeats"], b["required"], b["ok"]) == (1, 1, 1, True)
    cell = b["scenarios"]["restarts.test_restart_node_sigkill"]
    assert cell["caught"] == 1 and cell["failed_checks"] == {"rto": 1}
    cb = m["correct_build"]
    assert cb["runs"] == 3 and cb["false_alarms"] == 0 and cb["false_alarm_rate"] == 0.0
    assert m["ok"] is True
    md = render_markdown(m)
    assert "| `slow-failover` | restarts.test_restart_node_sigkill | 1/1 | rto 1/1 |" in md
    assert "0 false alarms in 3 scenario runs" in md


def test_the_checks_that_failed_are_named() -> None:
    m = build_matrix([Run("no-fencing", PAUSE, 0, run_json("pause_no_fencing"))])
    cell = m["bugs"]["no-fencing"]["scenarios"]["chaos.test_pause_node-pause-one-node"]
    assert {"no_lost_writes", "monotonic_reads", "reads_see_acknowledged"} <= set(cell["failed_checks"])
    assert "single_ownership" not in cell["failed_checks"]  # O passed in this run: the matrix says so
    assert m["correct_build"] is None


def test_caught_less_often_than_the_stated_rate_is_not_ok() -> None:
    runs = [Run("no-fencing", PAUSE, 0, run_json("pause_no_fencing")),
            Run("no-fencing", PAUSE, 1, run_json("chaos_kill_pause_correct"))]  # a repeat that missed it
    m = build_matrix(runs)
    b = m["bugs"]["no-fencing"]
    assert (b["caught"], b["repeats"], b["required"], b["ok"], m["ok"]) == (1, 2, 2, False, False)
    assert "BELOW RATE (needs 2)" in render_markdown(m)
    assert build_matrix(runs, rates={"no-fencing": 0.5})["ok"] is True


def test_a_run_without_run_json_is_an_error_never_a_catch() -> None:
    m = build_matrix([Run("no-fencing", PAUSE, 0, None, exit_code=4)])
    b = m["bugs"]["no-fencing"]
    assert b["caught"] == 0 and b["ok"] is False
    assert b["scenarios"][PAUSE.label]["errors"] == 1


def test_a_failing_correct_build_is_a_false_alarm() -> None:
    m = build_matrix([Run(None, PAUSE, 0, run_json("pause_no_fencing")),
                      Run(None, PAUSE, 0, run_json("chaos_kill_pause_correct"))])
    cb = m["correct_build"]
    assert cb["false_alarms"] == 1 and cb["runs"] == 3 and m["ok"] is False
    assert "chaos.test_pause_node-pause-one-node: 1/2" in render_markdown(m)
    assert CORRECT not in m["bugs"]


def test_a_starved_correct_run_is_invalid_not_a_false_alarm_unless_strict() -> None:
    """A real correct-build run of scale_nodes_down beside a second `bugs` process (2026-12-04): every
    check passed, the harness lagged 1046 ms, so the scenario is unknown (measurement invalid). The run
    itself does not fail on that; the matrix counts it apart — and as an alarm under --strict-unknown."""
    starved = run_json("scale_down_correct_starved")
    scale = Selection("scenarios/test_scaling.py", "scale_nodes_down")
    assert bugmatrix.invalid_run(Run(None, scale, 0, starved))
    m = build_matrix([Run(None, scale, 0, starved), Run(None, PAUSE, 0, run_json("chaos_kill_pause_correct"))])
    cb = m["correct_build"]
    assert (cb["false_alarms"], cb["invalid"], cb["runs"], m["ok"]) == (0, 1, 2, True)
    assert cb["scenarios"]["scaling.test_scale_nodes_down"]["invalid"] == 1
    assert "1 more invalid (harness starved" in render_markdown(m)
    strict = {**starved, "settings": {**starved["settings"], "strict_unknown": True}}
    assert not bugmatrix.invalid_run(Run(None, scale, 0, strict))
    m = build_matrix([Run(None, scale, 0, strict)])
    assert (m["correct_build"]["false_alarms"], m["ok"]) == (1, False)
    # for a bug an invalid run is no catch (as any unknown); a fail stays a catch, never invalid
    m = build_matrix([Run("lose-state-on-handover", scale, 0, starved)])
    assert (m["bugs"]["lose-state-on-handover"]["caught"], m["ok"]) == (0, False)
    assert not bugmatrix.invalid_run(Run("no-fencing", PAUSE, 0, run_json("pause_no_fencing")))


def test_an_invalid_run_is_measured_again_in_the_same_repeat(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner re-runs a starved run (same repeat, attempt 1, 2 ...) up to --invalid-retries times;
    the matrix keeps both, counts the valid one, and the runs list says which was invalid."""
    calls: list[int] = []
    scale = Selection("scenarios/test_scaling.py", "scale_nodes_down")
    answers = {0: "scale_down_correct_starved", 1: "scale_down_correct_starved", 2: "chaos_kill_pause_correct"}

    def fake(bug: str | None, sel: Selection, repeat: int, out: Path, extra: list[str], attempt: int = 0) -> Run:
        calls.append(attempt)
        return Run(bug, sel, repeat, run_json(answers[attempt]), 0, str(out / str(attempt)), 1.0, attempt)

    monkeypatch.setattr(bugmatrix, "_run_once", fake)
    monkeypatch.setattr(bugmatrix, "QUICK", {**QUICK, "lose-state-on-handover": scale})
    argv = ["--only", "lose-state-on-handover", "--quick", "--correct-only", "--artifacts", str(tmp_path)]
    assert bugmatrix.bugs_main(argv) == 0
    assert calls == [0, 1, 2]  # invalid, invalid, then a valid run
    matrix = json.loads(next(tmp_path.glob("bugs/*/matrix.json")).read_text())
    assert [(r["attempt"], r["invalid"]) for r in matrix["runs"]] == [(0, True), (1, True), (2, False)]
    assert matrix["correct_build"]["invalid"] == 2 and matrix["correct_build"]["false_alarms"] == 0
    calls.clear()
    assert bugmatrix.bugs_main([*argv, "--invalid-retries", "0"]) == 0 and calls == [0]
    with pytest.raises(SystemExit):
        bugmatrix.bugs_main([*argv, "--invalid-retries", "-1"])


def test_every_seeded_bug_has_catchers_and_a_rate() -> None:
    assert set(CATCHERS) == set(BUGS) == set(STATED_RATE) == set(KNOWN_BUGS)
    for sels in CATCHERS.values():
        assert sels and all((ROOT / s.file).is_file() for s in sels)


@pytest.mark.parametrize("sel", sorted({s for sels in CATCHERS.values() for s in sels}, key=lambda s: s.label),
                         ids=lambda s: s.label)
def test_every_catcher_selects_a_scenario(sel: Selection) -> None:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          sel.file, "-k", sel.k], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "::" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]


def _collected(*args: str) -> set[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "-p", "no:locust", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return {line.strip() for line in out.stdout.splitlines() if "::" in line}


def test_each_quick_catcher_is_one_of_its_bugs_catchers_and_runs_on_the_correct_build_in_scripts_test() -> None:
    """`bugs --quick --no-correct` in scripts/test is honest only if (1) each quick selection selects
    scenarios its bug's CATCHERS select (a narrower -k inside one is fine) and (2) scripts/test's local
    scenario step collects every one of them, so the correct build is run on them there. The step's
    marker expression is read from scripts/test itself, so a change of the step is seen here."""
    assert set(QUICK) == set(CATCHERS)
    script = (ROOT / "scripts" / "test").read_text(encoding="utf-8")
    step = next(line for line in script.splitlines() if "harness.cli run -m" in line)
    marker = step.split("-m", 1)[1].split('"')[1]
    in_step = _collected("-m", marker, "scenarios")
    assert len(in_step) > 20, "the local scenario step collects every family"
    for bug, quick in QUICK.items():
        ids = _collected(quick.file, "-k", quick.k)
        assert ids, f"{bug}: {quick.label} selects nothing"
        full: set[str] = set()
        for sel in CATCHERS[bug]:
            full |= _collected(sel.file, "-k", sel.k)
        assert ids <= full, f"{bug}: {quick.label} selects {sorted(ids - full)}, not among its CATCHERS"
        assert ids <= in_step, f"{bug}: {sorted(ids - in_step)} is not run on the correct build by scripts/test"


def test_quick_runs_each_bug_once_on_its_quick_selection_and_no_correct_leaves_the_correct_build_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's choice of runs (the `goverse-harness run` processes replaced by real run.json data:
    no-fencing caught by its pause run, slow-failover missed by a correct restart run): --quick runs
    QUICK only, --no-correct no correct-build run, and a bug not caught makes the exit code 1."""
    calls: list[tuple[str | None, Selection]] = []
    data = {"no-fencing": "pause_no_fencing", "slow-failover": "restarts_correct"}

    def fake(bug: str | None, sel: Selection, repeat: int, out: Path, extra: list[str], attempt: int = 0) -> Run:
        calls.append((bug, sel))
        return Run(bug, sel, repeat, run_json(data[bug] if bug else "restarts_correct"), 0, str(out), 1.0)

    monkeypatch.setattr(bugmatrix, "_run_once", fake)
    argv = ["--only", "no-fencing", "--quick", "--artifacts", str(tmp_path)]
    assert bugmatrix.bugs_main([*argv, "--no-correct"]) == 0
    assert calls == [("no-fencing", QUICK["no-fencing"])] and len(CATCHERS["no-fencing"]) == 2
    calls.clear()
    assert bugmatrix.bugs_main(argv) == 0
    assert calls == [("no-fencing", QUICK["no-fencing"]), (None, QUICK["no-fencing"])]
    calls.clear()
    assert bugmatrix.bugs_main(["--only", "slow-failover", *argv[2:], "--no-correct"]) == 1  # not caught
    calls.clear()
    assert bugmatrix.bugs_main([*argv, "--correct-only"]) == 0  # the false-alarm half: no bug run
    assert calls == [(None, QUICK["no-fencing"])]
    calls.clear()
    assert bugmatrix.bugs_main(["--only", "slow-failover", "--correct-only", *argv[2:]]) == 0  # correct passes
    assert calls == [(None, QUICK["slow-failover"])]


def test_correct_only_with_no_correct_is_one_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        bugmatrix.bugs_main(["--correct-only", "--no-correct", "--artifacts", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--correct-only and --no-correct" in err and not list(tmp_path.iterdir())  # nothing started


def test_the_html_page_shows_rates_checks_false_alarms_and_links_each_run(tmp_path: Path) -> None:
    from harness.bugmatrix import render_html

    runs = [Run("no-fencing", PAUSE, 0, run_json("pause_no_fencing")),
            Run("no-fencing", PAUSE, 1, run_json("chaos_kill_pause_correct")),
            Run(None, PAUSE, 0, run_json("pause_no_fencing"))]
    m = build_matrix(runs)
    m["runs"] = [{"bug": "no-fencing", "selection": PAUSE.label, "repeat": 0, "exit_code": 1,
                  "artifacts": str(tmp_path / "runs" / "no-fencing" / "0"), "run_id": "20261203T1200Z-abc"}]
    page = render_html(m, tmp_path)
    assert "BELOW RATE (needs 2)" in page and "<code>no-fencing</code>" in page
    assert "no_lost_writes 1/2" in page
    assert "1 false alarms in 1 scenario runs" in page
    assert 'href="runs/no-fencing/0/runs/20261203T1200Z-abc/report.html"' in page
