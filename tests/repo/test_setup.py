"""scripts/setup.sh on a fresh clone with the machine's system Python (/usr/bin/python3).

Debian 12 and Ubuntu 24.04 mark that interpreter externally managed: pip refuses to install into it, so
set-up must make and use the checkout's own virtual environment. This is the CI check for that: it
clones this repository (its committed state, as CI sees it) twice, sets both up with the system Python,
and proves each checkout's ``.venv`` imports that checkout's harness, and that a second set-up is a no-op.
pip's download cache (~/.cache/pip) keeps it quick when warm.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.need import need
from tests.support.paths import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = ROOT
SYSTEM_PYTHON = Path("/usr/bin/python3")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHON"] = str(SYSTEM_PYTHON)
    return env


def _setup(checkout: Path) -> str:
    done = subprocess.run(["scripts/setup.sh"], cwd=checkout, env=_env(), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, f"setup failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _harness_of(checkout: Path) -> str:
    out = subprocess.run([str(checkout / ".venv/bin/python"), "-c",
                          "import harness, harness.cli, harness.pytest_plugin; print(harness.__file__)"],
                         cwd="/", env=_env(), capture_output=True, text=True, check=True, timeout=120)
    return out.stdout.strip()


def test_setup_with_system_python_on_fresh_clones(tmp_path: Path) -> None:
    need(SYSTEM_PYTHON.exists(), f"{SYSTEM_PYTHON} does not exist on this machine")
    version = subprocess.run([str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info >= (3, 11))"],
                             capture_output=True, text=True).stdout.strip()
    need(version == "True", f"{SYSTEM_PYTHON} is older than 3.11")
    need((REPO / ".git").exists(), "not a git checkout: nothing to clone")
    first, second = tmp_path / "first", tmp_path / "second"
    for d in (first, second):
        subprocess.run(["git", "clone", "-q", str(REPO), str(d)], check=True, timeout=120)
        subprocess.run(["git", "-C", str(d), "checkout", "-q",
                        subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                       text=True, check=True).stdout.strip()], check=True)
    out = _setup(first)
    assert "installing goverse-harness" in out
    assert (first / ".venv/bin/goverse-harness").exists()
    assert _harness_of(first) == str(first / "harness" / "__init__.py")
    _setup(second)
    # the second checkout has its own environment: the first still runs its own code
    assert _harness_of(first) == str(first / "harness" / "__init__.py")
    assert _harness_of(second) == str(second / "harness" / "__init__.py")
    again = _setup(first)
    assert "installing" not in again and "creating" not in again, again  # satisfied: does nothing
    cli = subprocess.run([str(first / ".venv/bin/goverse-harness"), "--help"], env=_env(), capture_output=True,
                         text=True, timeout=60)
    assert cli.returncode == 0 and "cleanup" in cli.stdout
