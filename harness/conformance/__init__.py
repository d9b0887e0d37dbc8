"""The conformance suite: the seed's requirements (reference/seed-kubernetes-todo.md §1–§6) as checks.

Each check has an id tied to its seed section (``2.2-sigterm-exit-within-grace``), a kind (``static``:
judged from the Dockerfile and the rendered manifests; ``runtime``: judged against a deployed stack by
``scenarios/test_conformance.py``) and a verdict ``pass | fail | unknown | not-applicable`` with
evidence — like kube-bench or Sonobuoy. Results are files in ``<run_dir>/conformance/``; the CLI
(``goverse-harness conformance``) runs both kinds and prints the table; docs/conformance.md explains
every check.
"""

from harness.conformance.catalogue import CHECKS, get, select
from harness.conformance.model import CheckSpec, Judgement, Result, Verdict, merge
from harness.conformance.results import load_results, write_result

__all__ = ["CHECKS", "CheckSpec", "Judgement", "Result", "Verdict", "get", "load_results", "merge", "select",
           "write_result"]
