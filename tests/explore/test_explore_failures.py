"""What the explorer saves from a real exploration: tests/data/explore/run is the run of
``goverse-harness explore --seed 1 --budget 4m --bug ack-before-persist`` (2026-12-03, load ~20 on 2
cores: 8 schedules, 6 unknown because the harness was starved, 2 failing with lost acknowledged
increments). The summary counts them, each failure gets its own directory with the schedule, the
checks, and what replays it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.explore.runner import render_summary, summarize
from harness.explore.schedule import Schedule
from tests.support.paths import DATA as TEST_DATA

DATA = TEST_DATA / "explore" / "run"


def test_failures_are_saved_with_their_schedule_checks_and_replay(tmp_path: Path) -> None:
    run = json.loads((DATA / "run.json").read_text(encoding="utf-8"))
    shutil.copytree(DATA, tmp_path / "run" / "runs" / run["run_id"])
    meta = {"seed": 1, "budget_s": 240.0, "kinds": ["kill", "pause"], "bugs": ["ack-before-persist"],
            "run_args": ["--starved-lag-ms", "250"], "elapsed_s": 294.6}
    s = summarize(run, tmp_path, meta)
    assert (s["schedules"], s["verdicts"]["fail"], s["verdicts"]["unknown"]) == (8, 2, 6)
    assert s["first_failure_after_s"] == 189.7
    assert [Path(f).name for f in s["failures"]] == ["seed1-005", "seed1-007"]
    saved = Path(s["failures"][0])
    info = json.loads((saved / "explore.json").read_text(encoding="utf-8"))
    assert info["bugs"] == ["ack-before-persist"] and info["seed"] == 1 and info["run_args"] == meta["run_args"]
    assert {"no_lost_writes", "persisted_not_behind"} <= set(info["failed_checks"])
    assert "single_ownership" not in info["failed_checks"]
    assert info["replay"] == f"goverse-harness explore --replay {saved}"
    original = DATA / "explore_segments__test_explore_segment-segment-005"
    assert (saved / "schedule.json").read_bytes() == (original / "schedule.json").read_bytes()
    assert (saved / "checks.json").is_file() and (saved / "result.json").is_file()
    sched = Schedule.from_dict(json.loads((saved / "schedule.json").read_text(encoding="utf-8")))
    assert sched.id == "seed1-005" and any(st.fault.kind == "kill" for st in sched.steps)
    text = render_summary(s)
    assert "8 schedules" in text and "2 fail, 6 unknown" in text and "first failure after 189.7s" in text
    assert f"--replay {saved}" in text


def test_a_run_without_failures_saves_nothing(tmp_path: Path) -> None:
    run = json.loads((DATA / "run.json").read_text(encoding="utf-8"))
    run["scenarios"] = [sc for sc in run["scenarios"] if sc["verdict"] != "fail"]
    s = summarize(run, tmp_path, {"seed": 1, "elapsed_s": 1.0})
    assert s["failures"] == [] and s["first_failure_after_s"] is None and not (tmp_path / "failures").exists()
    assert "no failure found" in render_summary(s)
