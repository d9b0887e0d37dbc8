"""A child run stops cleanly when its parent is interrupted: real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from harness.waiting import wait_until

# The child: says it runs, and on SIGTERM "tears down" (takes a moment, writes a marker) and exits 3.
CHILD = r"""
import signal, sys, time, pathlib
def term(*_):
    time.sleep(0.5)  # sleep-ok: a teardown that takes time
    pathlib.Path(sys.argv[1]).write_text("torn down")
    sys.exit(3)
signal.signal(signal.SIGTERM, term)
pathlib.Path(sys.argv[2]).write_text("running")
while True:
    signal.pause()
"""
# The parent: runs the child through run_child, reports the interrupt.
PARENT = r"""
import sys
from harness.childrun import run_child
try:
    run_child([sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3]])
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def test_an_interrupted_parent_lets_the_child_tear_down(tmp_path: Path) -> None:
    marker, running = tmp_path / "marker", tmp_path / "running"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, str(marker), str(running)],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()},
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_until(running.exists, 20, "the child to run")
    parent.send_signal(signal.SIGINT)  # Ctrl-C to the parent only (the child is in its own session)
    out, _ = parent.communicate(timeout=30)
    assert parent.returncode == 130 and "interrupted" in out
    assert marker.read_text() == "torn down"  # the parent waited for the child's teardown
