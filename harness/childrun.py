"""Run a child ``goverse-harness`` (a whole scenario run) so that an interrupt lets it tear down.

Why: ``goverse-harness bugs`` runs one ``goverse-harness run`` per selection. With ``subprocess.run`` a
Ctrl-C or a SIGTERM to the parent gave the child 0.25 s (CPython's grace on KeyboardInterrupt) and then
SIGKILL: the child's stack (etcd, PostgreSQL, namespaces, mounts) was left for ``goverse-harness
cleanup``. Here the child runs in its own session, so the terminal's Ctrl-C reaches only the parent,
and the parent forwards exactly one SIGTERM (which the child treats as Ctrl-C, harness.interrupts) and
waits for its teardown; only past ``teardown_s`` is it killed, and that is said.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Sequence

TEARDOWN_S = 180.0


def run_child(cmd: Sequence[str], teardown_s: float = TEARDOWN_S) -> int:
    """Run ``cmd`` to the end and return its exit code; on an interrupt, stop it cleanly and re-raise."""
    proc = subprocess.Popen(list(cmd), start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(teardown_s)
        except subprocess.TimeoutExpired:
            print(f"goverse-harness: the child run did not tear down within {teardown_s:.0f} s; killed — "
                  "'goverse-harness cleanup' removes what it left", file=sys.stderr, flush=True)
            proc.kill()
            proc.wait()
        raise
