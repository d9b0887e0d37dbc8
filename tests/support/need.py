"""Tests that lack something they need skip on a developer's machine but fail loudly in CI.

Why: a CI run where a whole family of tests silently skips (a missing tool, a missing data file) looks
green and proves nothing. ``CI`` is set by GitHub Actions and by most CI systems.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def need(condition: bool, why: str) -> None:
    """Skip the calling test with ``why`` when ``condition`` is false -- or fail it when ``CI`` is set."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI is set and this test cannot run: {why}", pytrace=False)
    pytest.skip(why)
