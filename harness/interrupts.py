"""SIGTERM handled exactly like Ctrl-C (SIGINT), everywhere the harness runs.

Why: CI cancellation, ``timeout`` and ``kill`` send SIGTERM, whose default action ends the interpreter
at once -- no ``finally``, no fixture finalizer, no teardown -- and leaves etcd, PostgreSQL, namespaces,
mounts and the stack directory behind. Raising ``KeyboardInterrupt`` instead lets the same unwinding as
Ctrl-C run. Only the first SIGTERM interrupts: further ones (CI often repeats it) are ignored while the
teardown they would otherwise cut short is running; SIGKILL still ends everything, and
``goverse-harness cleanup`` then removes what is left.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from types import FrameType


class Terminated(KeyboardInterrupt):
    """The interrupt raised for SIGTERM (a KeyboardInterrupt, so every Ctrl-C path handles it)."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, _ignore_repeat)
    raise Terminated(f"signal {signum} (SIGTERM)")


def _ignore_repeat(signum: int, frame: FrameType | None) -> None:
    print("goverse-harness: SIGTERM again; still tearing down (SIGKILL would leave leftovers for "
          "'goverse-harness cleanup')", file=sys.stderr, flush=True)


def install_sigterm_as_interrupt() -> bool:
    """Install the handler (main thread only; signal handlers cannot be set elsewhere). Idempotent."""
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current in (_on_sigterm, _ignore_repeat):
        return True
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, _on_sigterm)
        return True
    return False
