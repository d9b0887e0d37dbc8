"""Root conftest: makes ``pytest -m e2e`` (and plain ``pytest``) work from the repository root.

The goverse-harness pytest plugin normally loads through its ``pytest11`` entry point, which exists once
the package is installed (scripts/setup.sh). In a checkout that is only on ``PYTHONPATH`` there is no
entry point, so the plugin is loaded from here instead; never both (pluggy refuses a plugin twice).
"""

from __future__ import annotations

from importlib.metadata import entry_points

if not any(ep.value == "harness.pytest_plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["harness.pytest_plugin"]

# Run directories and build outputs are never test sources.
collect_ignore = ["artifacts", "build", "docker", "manifests", "docs", ".venv"]
