"""The run directory on disk: ``artifacts/runs/<UTC timestamp>-<short id>/`` and ``artifacts/latest``.

Layout (DESIGN.md "Run directory")::

    artifacts/
      latest -> runs/20251128T103000Z-1a2b3c      (relative symlink, replaced atomically)
      runs/20251128T103000Z-1a2b3c/
        run.json  junit.xml  report.html           (written by finalize)
        logs/<instance>.log
        <scenario dir>/result.json  history.jsonl  checks.json  availability.png  latency.png

Why each scenario has its own directory and files: pytest-xdist workers write concurrently and must
never share a file; the run-level files are assembled once, at the end, from what is on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.report.files import JUNIT_FILE, REPORT_FILE, RESULT_FILE, RUN_FILE
from harness.report.results import ScenarioResult

RUN_NAME = re.compile(r"^(\d{8}T\d{6}Z)-([0-9a-z]+)$")
def scenario_dirname(scenario_id: str) -> str:
    """A readable, filesystem-safe directory name for a pytest node id.

    ``scenarios/test_restarts.py::test_recovers_from[sigkill-node]`` →
    ``test_restarts__test_recovers_from-sigkill-node``.
    When characters had to be replaced (or the name is long) a short hash of the id is appended, so two
    ids never share a directory."""
    name = scenario_id.rsplit("/", 1)[-1].replace(".py::", "__").replace("::", "__")
    name = name.replace("[", "-").replace("]", "")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip("._") or "scenario"
    if safe != name or len(safe) > 96:
        digest = hashlib.sha1(scenario_id.encode()).hexdigest()[:7]
        safe = f"{safe[:88]}-{digest}"
    return safe


@dataclass(frozen=True)
class RunDir:
    """One run's directory and the paths inside it."""

    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def run_json(self) -> Path:
        return self.path / RUN_FILE

    @property
    def junit_xml(self) -> Path:
        return self.path / JUNIT_FILE

    @property
    def report_html(self) -> Path:
        return self.path / REPORT_FILE

    @property
    def logs_dir(self) -> Path:
        """``<run>/logs`` (created on first use): instance logs, one file per process."""
        d = self.path / "logs"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def scenario_dir(self, scenario_id: str) -> Path:
        d = self.path / scenario_dirname(scenario_id)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def started_at(self) -> str | None:
        """The UTC start encoded in the directory name, as ISO 8601."""
        m = RUN_NAME.match(self.run_id)
        if not m:
            return None
        return datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).isoformat().replace(
            "+00:00", "Z")

    def scenario_results(self) -> list[ScenarioResult]:
        """Every ``*/result.json`` under the run, sorted by scenario id."""
        out = []
        for p in sorted(self.path.glob(f"*/{RESULT_FILE}")):
            res = ScenarioResult.from_dict(json.loads(p.read_text(encoding="utf-8")))
            res.dir = p.parent.name
            out.append(res)
        return sorted(out, key=lambda r: r.id)

    def load_run_json(self) -> dict[str, Any] | None:
        if not self.run_json.exists():
            return None
        return json.loads(self.run_json.read_text(encoding="utf-8"))


class RunStore:
    """Creates run directories under ``<root>/runs`` and keeps ``<root>/latest`` pointing at the newest."""

    def __init__(self, root: Path | str = "artifacts") -> None:
        self.root = Path(root)
        self.runs = self.root / "runs"

    def create(self, now: datetime | None = None, short_id: str | None = None) -> RunDir:
        """A new, empty run directory (created once, by the pytest controller, before workers start)."""
        now = now or datetime.now(UTC)
        sid = short_id or secrets.token_hex(3)
        if not re.fullmatch(r"[0-9a-z]+", sid):
            raise ValueError(f"short id must be lowercase alphanumeric, got {sid!r}")
        self.runs.mkdir(parents=True, exist_ok=True)
        path = self.runs / f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{sid}"
        path.mkdir()
        run = RunDir(path)
        self.point_latest(run)
        return run

    def point_latest(self, run: RunDir) -> Path:
        """Replace ``<root>/latest`` with a relative symlink to ``run`` (atomic rename of a temp link)."""
        link = self.root / "latest"
        target = os.path.relpath(run.path.resolve(), self.root.resolve())
        tmp = self.root / f".latest.{os.getpid()}.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(target)
        os.replace(tmp, link)
        return link

    def latest(self) -> RunDir | None:
        link = self.root / "latest"
        if not link.exists():
            return None
        return RunDir(link.resolve())

    def all_runs(self) -> list[RunDir]:
        if not self.runs.is_dir():
            return []
        return [RunDir(p) for p in sorted(self.runs.iterdir()) if p.is_dir() and RUN_NAME.match(p.name)]


def create_run_dir(artifacts: Path | str = "artifacts") -> Path:
    """A new run directory under ``<artifacts>/runs`` with ``latest`` pointing at it (for the plugin/CLI)."""
    return RunStore(artifacts).create().path

