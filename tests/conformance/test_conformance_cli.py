"""``goverse-harness conformance`` (harness.conformance.cli.conformance_main) without a stack: listing,
static checks into a run directory and run.json, exit codes, and the rule that a runtime check without
a result is ``unknown``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.conformance import catalogue, cli


def test_list_names_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.conformance_main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(c.id in out for c in catalogue.CHECKS)
    assert out.index("§1.1") < out.index("§2.1") < out.index("§5.4")


def test_static_checks_write_results_and_merge_into_run_json(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.conformance_main(["--static", "--only", "1.", "--run-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "§1.1 Production Dockerfiles — PASS" in out and "conformance: PASS — 4 checks" in out
    assert sorted(p.name for p in (tmp_path / "conformance").glob("*.json")) == [
        "1.1-multi-stage-build.json", "1.1-non-root-user.json", "1.2-dockerignore.json", "1.2-minimal-base.json"]
    run = json.loads((tmp_path / "run.json").read_text())
    assert {r["id"] for r in run["conformance"]} == {"1.1-multi-stage-build", "1.1-non-root-user",
                                                     "1.2-dockerignore", "1.2-minimal-base"}
    assert 'id="conformance"' in (tmp_path / "report.html").read_text()


def test_a_failing_check_fails_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:bookworm\nRUN apt-get install -y gcc\n")
    code = cli.conformance_main(["--static", "--only", "1.", "--dockerfile", str(bad), "--context", str(tmp_path),
                                 "--run-dir", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 1
    assert "[FAIL] 1.1-non-root-user" in out and "[FAIL] 1.2-dockerignore" in out


def test_runtime_checks_without_results_are_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[tuple[list[str], list[str], bool]] = []

    def fake_pytest(ids: list[str], run_dir: Path, args: list[str], select: bool) -> int:
        calls.append((ids, args, select))
        return 1  # as if the stack never came up: no result files

    monkeypatch.setattr(cli, "run_runtime", fake_pytest)
    code = cli.conformance_main(["--runtime", "--only", "2.2", "--run-dir", str(tmp_path), "--bug", "ignore-sigterm"])
    out = capsys.readouterr().out
    assert code == 1
    ids, args, select = calls[0]
    assert set(ids) == {c.id for c in catalogue.select(["2.2"], "runtime")} and select
    assert args == ["--bug", "ignore-sigterm"]
    assert "[UNKN] 2.2-sigterm-exit-within-grace" in out and "pytest exit code 1" in out
    assert (tmp_path / "conformance" / "2.2-sigterm-exit-within-grace.json").is_file()


@pytest.mark.parametrize("argv,message", [
    (["--only", "no-such-check"], "no check matches"),
    (["--static", "--only", "1.", "--bogus"], "unknown options --bogus"),
    (["--static", "--overlay", "kind/nothing"], "--overlay 'kind/nothing'"),
])
def test_usage_errors_exit_2(argv: list[str], message: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.conformance_main([*argv, "--run-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_plain_finalize_reports_conformance_results_found_in_the_run_dir(tmp_path: Path) -> None:
    """A run finalized by the pytest plugin (no CLI) still gets run.json["conformance"]."""
    from harness.conformance.model import Result
    from harness.conformance.results import write_result
    from harness.report.finalize import finalize, with_conformance

    assert "conformance" not in finalize(tmp_path, {"platform": "local"})
    write_result(tmp_path, Result.of(catalogue.get("2.2-sigterm-exit-within-grace"), "fail", "killed by signal 9"))
    run = finalize(tmp_path, {"platform": "local"})
    assert [(r["id"], r["verdict"]) for r in run["conformance"]] == [("2.2-sigterm-exit-within-grace", "fail")]
    assert with_conformance(tmp_path, {"conformance": []}) == {"conformance": []}  # explicit meta wins


def test_goverse_static_checks_need_the_sut_files_else_not_applicable(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """This repository's Dockerfile and overlays are not Goverse's: without --dockerfile/--manifests the
    static checks are not-applicable with the reason, never a pass over the wrong files."""
    code = cli.conformance_main(["--static", "--stack", "goverse", "--run-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    results = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "conformance").glob("*.json")}
    assert results and all(r["verdict"] == "not-applicable" for r in results.values()), results
    assert "--dockerfile" in results["1.1-non-root-user"]["evidence"]
    assert "--manifests" in results["3.1-probes"]["evidence"]


def test_goverse_static_checks_judge_the_given_dockerfile_and_manifests(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    sut = tmp_path / "sut"
    (sut / "k8s").mkdir(parents=True)
    (sut / "Dockerfile").write_text("FROM golang:1.25\nCOPY . .\nRUN go build ./cmd/gate\n")
    (sut / "k8s" / "node.yaml").write_text(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: goverse-node}\nspec:\n  template:\n"
        "    spec:\n      containers:\n      - name: node\n        image: goverse-node:latest\n")
    code = cli.conformance_main(["--static", "--stack", "goverse", "--dockerfile", str(sut / "Dockerfile"),
                                 "--context", str(sut), "--manifests", str(sut / "k8s"),
                                 "--run-dir", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 1, out
    results = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "run" / "conformance").glob("*.json")}
    assert results["1.1-multi-stage-build"]["verdict"] == "fail"
    assert results["3.1-probes"]["verdict"] == "fail" and "node.yaml" in json.dumps(results["3.1-probes"])


def test_missing_manifests_path_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.conformance_main(["--static", "--manifests", str(tmp_path / "nope"), "--run-dir", str(tmp_path)]) == 2
    assert "--manifests" in capsys.readouterr().err
