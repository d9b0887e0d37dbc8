"""`goverse-harness run` adds scenarios/ unless the user named test paths; option values never count."""

import pytest

from harness.cli import _names_test_paths, build_parser, main


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["-m", "e2e"], False),
        (["-m", "e2e", "--ignore", "scenarios/test_chaos.py"], False),
        (["-k", "sigkill", "--bug", "slow-failover"], False),
        (["scenarios/test_load.py", "-x"], True),
        (["scenarios/test_restarts.py::test_restart_gate"], True),
    ],
)
def test_names_test_paths(argv, named):
    assert _names_test_paths(argv) is named


def test_every_subcommand_is_listed():
    help_text = build_parser().format_help()
    for cmd in ("run", "up", "doctor", "report", "conformance", "load-report", "refstack", "cleanup"):
        assert cmd in help_text


def test_cleanup_dry_run_lists_and_removes_nothing(capsys):
    assert main(["cleanup", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("nothing to clean") or "would remove" in out
