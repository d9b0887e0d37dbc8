"""Interrupt a child run the way a user's Ctrl-C does, and never leave it running.

Why shared: every "Ctrl-C leaves nothing behind" test (local scenarios, chaos, explore, Kubernetes
volumes) starts a real run, waits for a state worth interrupting, sends SIGINT and then judges what is
left. The child must be reaped even when an assertion fails before the interrupt, or the test itself
would leave a run behind.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def reaped(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Yield ``proc``; on the way out (pass or fail) kill it if it still runs, and wait for it."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def ctrl_c(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """SIGINT, then its stdout and stderr once it has exited (``""`` for a stream not piped)."""
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=timeout)
    return out or "", err or ""
