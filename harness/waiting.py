"""Waiting on conditions with deadlines — the only way the harness waits.

Why: fixed sleeps make chaos tests both slow and flaky. Every wait names what it waits for, so a
timeout says which condition was never reached and what was last seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_fixed,
)

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """A condition was not reached before its deadline."""


class Abort(Exception):
    """Raised by a probe when waiting longer is pointless (e.g. the process it waits for died);
    ``wait_until`` re-raises it at once instead of retrying until the deadline."""


def wait_until(
    probe: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.05,
    describe: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns a truthy value (returned) or ``timeout`` seconds pass.

    Exceptions raised by ``probe`` count as "not yet" (a service that is still starting refuses
    connections); the last one is reported in the timeout message together with ``describe()``.
    """
    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(interval),
        retry=(retry_if_exception_type(Exception) & retry_if_not_exception_type(Abort))
        | retry_if_result(lambda v: not v),
        reraise=False,
    )
    try:
        return retrying(probe)
    except Abort:
        raise
    except RetryError as err:
        exc = err.last_attempt.exception()
        last_exc = [exc] if exc is not None else []
        detail = f"; last error: {last_exc[0]!r}" if last_exc else ""
    if describe is not None:
        try:
            detail += f"; last seen: {describe()}"
        except Exception as exc:  # noqa: BLE001
            detail += f"; (describe failed: {exc!r})"
    raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {what}{detail}")


class Deadline:
    """A point in monotonic time; ``remaining()`` never goes negative."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at
