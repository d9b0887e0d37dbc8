"""File names inside a run directory and the one way run files are written (atomically).

Why atomic writes: ``goverse-harness report`` or a CI step may read a run while workers still write
to it; a reader must see either the previous file or the new one, never half a JSON document.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
HISTORY_FILE = "history.jsonl"
CHECKS_FILE = "checks.json"
RUN_FILE = "run.json"
JUNIT_FILE = "junit.xml"
REPORT_FILE = "report.html"


def write_json(path: Path, data: Any) -> None:
    """Write via a temporary file in the same directory and rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
