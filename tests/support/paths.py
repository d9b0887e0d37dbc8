"""Where the repository and the tests' recorded data are, for tests at any depth of tests/.

One place, so that moving a test file between the package folders of tests/ never silently changes
what ``Path(__file__).parents[n]`` points at."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root (the folder holding harness/, scenarios/, tests/)."""
DATA = ROOT / "tests" / "data"
"""tests/data: recorded histories, runs, alert tests, the Chaos Mesh CRD schemas."""
