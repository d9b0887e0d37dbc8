"""Kept so existing imports work: ``ManagedProcess`` lives in :mod:`harness.process` (platform-neutral,
used by the reference stack's local cluster and the load generator as well as this platform)."""

from harness.process import ManagedProcess

__all__ = ["ManagedProcess"]
