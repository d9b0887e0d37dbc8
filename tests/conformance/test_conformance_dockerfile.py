"""Seed §1.1/§1.2 checks over Dockerfiles: the repository's image passes, and each check fails on a
deliberately broken Dockerfile or .dockerignore."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.conformance import dockerfile as df
from tests.support.paths import ROOT

REPO_DOCKERFILE = (ROOT / "docker" / "refstack.Dockerfile").read_text(encoding="utf-8")
REPO_IGNORE = (ROOT / "docker" / "refstack.Dockerfile.dockerignore").read_text(encoding="utf-8")

GOOD = """\
# seed §1.1 example, with an ARG in FROM and a continuation line
ARG GO=1.25
FROM golang:${GO}-bookworm AS builder
WORKDIR /app
COPY go.mod go.sum ./
RUN CGO_ENABLED=0 go build \\
    -o /goverse-node ./cmd/node/
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /goverse-node /goverse-node
USER nonroot:nonroot
ENTRYPOINT ["/goverse-node"]
"""


def test_repository_dockerfile_passes_every_check() -> None:
    for check in (df.check_multi_stage, df.check_non_root, df.check_minimal_base):
        j = check(REPO_DOCKERFILE)
        assert j.verdict == "pass", j.evidence
    j = df.check_dockerignore(REPO_DOCKERFILE, REPO_IGNORE)
    assert j.verdict == "pass", j.evidence


def test_parse_substitutes_args_and_joins_continuations() -> None:
    stages = df.parse(GOOD)
    assert [(s.base, s.name) for s in stages] == [("golang:1.25-bookworm", "builder"),
                                                  ("gcr.io/distroless/static-debian12:nonroot", None)]
    run = stages[0].of("RUN")[0]
    assert "-o /goverse-node ./cmd/node/" in run.args and run.line == 6


def test_seed_example_passes() -> None:
    assert all(c(GOOD).verdict == "pass" for c in (df.check_multi_stage, df.check_non_root, df.check_minimal_base))


BROKEN = {
    "single-stage": (df.check_multi_stage, "FROM golang:1.25\nRUN go build -o /x .\nUSER 1000\n"),
    "runtime-copies-nothing": (df.check_multi_stage, "FROM golang AS b\nRUN go build\nFROM alpine\nCOPY x /x\n"),
    "runtime-installs-tools": (df.check_multi_stage,
                               GOOD.replace("USER nonroot", "RUN apt-get install -y gcc\nUSER nonroot")),
    "no-user": (df.check_non_root, GOOD.replace("USER nonroot:nonroot\n", "")),
    "root-user": (df.check_non_root, GOOD.replace("USER nonroot:nonroot", "USER root")),
    "uid-0": (df.check_non_root, GOOD.replace("USER nonroot:nonroot", "USER 0:0")),
    "user-only-in-build-stage": (df.check_non_root, "FROM a AS b\nUSER 1000\nFROM alpine\nCOPY --from=b /x /x\n"),
    "full-debian-base": (df.check_minimal_base,
                         GOOD.replace("gcr.io/distroless/static-debian12:nonroot", "debian:bookworm")),
    "python-full-base": (df.check_minimal_base, REPO_DOCKERFILE.replace(
        "FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime", "FROM python:${PYTHON_VERSION}-bookworm AS runtime")),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_check_fails_on_broken_dockerfile(case: str) -> None:
    check, text = BROKEN[case]
    j = check(text)
    assert j.verdict == "fail", f"{case}: {j.evidence}"


def test_not_a_dockerfile_is_unknown() -> None:
    for check in (df.check_multi_stage, df.check_non_root, df.check_minimal_base):
        assert check("# nothing here\n").verdict == "unknown"


@pytest.mark.parametrize("ignore,why", [
    (None, "no .dockerignore"),
    ("tests\ndocs\n.github\n", "not excluded: .git/HEAD"),
    (REPO_IGNORE + "\nREADME.md\n", "excluded but COPYed by the Dockerfile: README.md"),
    (REPO_IGNORE + "\nharness/**\n", "excluded but COPYed by the Dockerfile: harness"),
])
def test_dockerignore_fails_on_leaks_and_on_excluding_what_is_copied(ignore: str | None, why: str) -> None:
    j = df.check_dockerignore(REPO_DOCKERFILE, ignore)
    assert j.verdict == "fail" and why in j.evidence, j.evidence


@pytest.mark.parametrize("path,patterns,expected", [
    (".git/HEAD", [".git"], True),
    ("a/b/c.py", ["**"], True),
    ("harness/x.py", ["**", "!harness/**"], False),
    ("harness/__pycache__/x.pyc", ["**", "!harness/**", "**/__pycache__"], True),
    ("docs/a.md", ["*.md"], False),  # * does not cross a directory
    ("README.md", ["*.md", "!README.md"], False),
    ("tests/t.py", ["# comment", "", "tests"], True),
])
def test_dockerignore_matching(path: str, patterns: list[str], expected: bool) -> None:
    assert df.ignored(path, patterns) is expected


def test_find_dockerignore_prefers_the_dockerfile_specific_one(tmp_path: Path) -> None:
    (tmp_path / "docker").mkdir()
    d = tmp_path / "docker" / "x.Dockerfile"
    d.write_text("FROM scratch\n")
    assert df.find_dockerignore(d, tmp_path) is None
    (tmp_path / ".dockerignore").write_text(".git\n")
    assert df.find_dockerignore(d, tmp_path) == tmp_path / ".dockerignore"
    (tmp_path / "docker" / "x.Dockerfile.dockerignore").write_text("**\n")
    assert df.find_dockerignore(d, tmp_path) == tmp_path / "docker" / "x.Dockerfile.dockerignore"
