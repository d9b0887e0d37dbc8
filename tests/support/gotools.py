"""Go tools the operator tests need (promtool, helm), built once from the Go module proxy.

Why build instead of download: the module proxy is the one registry this machine and CI can reach, and
``go install module@version`` is reproducible (go.sum checksums). Builds run under ``nice -n 19`` (they
share the machine with test clusters) into ``~/.cache/goverse-harness/<tool>/<version>/``; a cached
binary is used as is.

Without a Go toolchain the test is skipped with a reason naming "go toolchain"; tests/conftest.py's
CI_MAY_SKIP does not match it, so the skip is allowed only outside CI. A failed build is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

#: tool -> (package to `go install`, version)
TOOLS: dict[str, tuple[str, str]] = {
    "promtool": ("github.com/prometheus/prometheus/cmd/promtool", "v0.316.0"),
    "helm": ("helm.sh/helm/v3/cmd/helm", "v3.22.0"),
}


def cache_dir(tool: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "goverse-harness"
    return base / tool / TOOLS[tool][1]


def go_tool(tool: str, timeout: float = 1800) -> str:
    """Path of ``tool``, building it first if it is not cached."""
    package, version = TOOLS[tool]
    exe = cache_dir(tool) / tool
    if exe.is_file():
        return str(exe)
    go = shutil.which("go")
    if go is None:
        pytest.skip(f"go toolchain is not on PATH: {tool} {version} cannot be built from the module proxy")
    exe.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(exe.parent), "GOFLAGS": "-mod=mod"}
    cmd = [go, "install", f"{package}@{version}"]
    nice = shutil.which("nice")
    res = subprocess.run([nice, "-n", "19", *cmd] if nice else cmd, capture_output=True, text=True, env=env,
                         timeout=timeout, check=False)
    if res.returncode != 0 or not exe.is_file():
        pytest.fail(f"building {tool} {version} failed ({res.returncode}): {res.stderr.strip()[-1500:]}")
    return str(exe)
