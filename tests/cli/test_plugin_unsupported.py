"""An ``Unsupported`` met anywhere in a test (not only inside ``unsupported_is_skip``) is a skip with the
platform's reason, never an error: a platform's operations object may lack one action (DESIGN)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT


def test_unsupported_in_a_test_body_is_an_explained_skip_and_other_errors_stay_errors(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text(
        "from harness.platforms.base import Unsupported\n"
        "def test_op():\n    raise Unsupported('scale: not on this platform')\n"
        "def test_other():\n    raise RuntimeError('boom')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:randomly",
                          str(tmp_path / "test_x.py"), "--artifacts", str(tmp_path / "art")],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert "1 failed, 1 skipped" in out.stdout, out.stdout + out.stderr
    assert "unsupported on this platform: scale: not on this platform" in out.stdout
    assert "RuntimeError: boom" in out.stdout
