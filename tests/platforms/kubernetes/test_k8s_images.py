"""The two refstack images (docker/refstack.Dockerfile for Docker users, the umoci build for machines
without Docker) install the same Python dependencies, and those cover what harness.refstack imports."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from harness.platforms.kubernetes.cluster import images
from tests.support.paths import ROOT

REPO = ROOT
DOCKERFILE = REPO / "docker" / "refstack.Dockerfile"
# import name -> distribution name where they differ
DIST = {"yaml": "pyyaml", "etcd3gw": "etcd3gw", "google": "protobuf", "psycopg_pool": "psycopg"}


def _dist(req: str) -> str:
    return re.split(r"[\[<>=!~ ]", req, maxsplit=1)[0].lower().replace("_", "-")


def _third_party_imports(package: Path) -> set[str]:
    names: set[str] = set()
    for f in package.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "harness"}


def test_dockerfile_installs_exactly_the_shared_requirements_file() -> None:
    text = DOCKERFILE.read_text()
    pip_lines = [ln for ln in text.splitlines() if "pip install" in ln and "--no-deps" not in ln]
    assert pip_lines == ["RUN pip install -r /tmp/refstack-requirements.txt"], pip_lines
    assert "COPY docker/refstack-requirements.txt /tmp/refstack-requirements.txt" in text
    assert images.REQUIREMENTS == REPO / "docker" / "refstack-requirements.txt"


def test_requirements_cover_every_third_party_import_of_the_reference_stack() -> None:
    reqs = {_dist(r) for r in images.requirements()}
    missing = {DIST.get(n, n).lower().replace("_", "-") for n in _third_party_imports(REPO / "harness" / "refstack")}
    missing = {m for m in missing if m not in reqs}
    assert not missing, f"harness/refstack imports {missing} but docker/refstack-requirements.txt lacks them"
    assert "psutil" in reqs  # the defect a real cluster found: No module named 'psutil'


def test_requirements_check_notices_a_dropped_dependency(tmp_path: Path) -> None:
    reqs = {_dist(r) for r in images.requirements()} - {"psutil"}
    imports = {DIST.get(n, n) for n in _third_party_imports(REPO / "harness" / "refstack")}
    assert "psutil" in imports - reqs


def test_requirements_agree_with_pyproject_lower_bounds() -> None:
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    project = {_dist(d): d for d in deps}
    for req in images.requirements():
        assert _dist(req) in project, f"{req} is not a dependency in pyproject.toml"


def test_split_ref_normalized_names() -> None:
    assert images.split_ref("docker.io/goverse-harness/refstack:dev") == ("docker.io/goverse-harness/refstack", "dev")
    assert images.split_ref("registry.k8s.io/pause:3.10.1") == ("registry.k8s.io/pause", "3.10.1")
    assert images.split_ref("localhost:5000/x") == ("localhost:5000/x", "latest")
