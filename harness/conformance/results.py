"""Conformance results on disk: ``<run_dir>/conformance/<check id>.json``, one file per check.

Why one file per check: static checks (the CLI process), runtime checks (pytest, possibly several
xdist workers) and a re-run of one check with ``-k`` all write into the same run directory without
coordinating; the report merges whatever is there (``load_results``) into run.json["conformance"].
Writes are atomic (temp file + rename) so a reader never sees half a file. Secrets are removed from
the evidence before anything is written (``redact``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.conformance.model import Result

SUBDIR = "conformance"
REDACTED = "***"


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` (str, or nested dict/list of them) with every occurrence of a secret replaced."""
    secrets = [s for s in secrets if s]
    if not secrets:
        return value
    if isinstance(value, str):
        for s in secrets:
            value = value.replace(s, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, secrets) for v in value]
    return value


def results_dir(run_dir: Path | str) -> Path:
    return Path(run_dir) / SUBDIR


def write_result(run_dir: Path | str, result: Result, secrets: Iterable[str] = ()) -> Path:
    """Write one result (evidence and data redacted); returns its path."""
    secrets = list(secrets)
    d = result.to_dict()
    d["evidence"] = redact(d["evidence"], secrets)
    d["data"] = redact(d["data"], secrets)
    out = results_dir(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{result.id}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(d, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def load_results(run_dir: Path | str) -> list[Result]:
    """Every result in the run directory, sorted by id. Unparseable files are skipped; temp files of an
    interrupted write (``.<id>.json.<pid>.tmp``) do not match ``*.json``."""
    out = []
    for p in sorted(results_dir(run_dir).glob("*.json")):
        try:
            out.append(Result.from_dict(json.loads(p.read_text(encoding="utf-8"))))
        except (OSError, ValueError, KeyError):
            continue
    return sorted(out, key=lambda r: r.id)


def report_rows(results: Iterable[Result]) -> list[dict[str, Any]]:
    """The ``conformance`` list of run.json: {id, section, title, verdict, evidence} (+ kind)."""
    return [{"id": r.id, "section": r.section, "title": r.title, "verdict": str(r.verdict),
             "evidence": r.evidence, "kind": r.kind} for r in results]
