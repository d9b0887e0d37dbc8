"""The runtime suite's semantics without a stack: a crashed experiment or judge is ``unknown``; a
platform without ad-hoc instances is ``not-applicable`` (a skip); every outcome writes its result file
first, with secrets redacted."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.conformance.model import failed, not_applicable, passed
from harness.conformance.runner import Outcome, conclude, judged, run_experiment

CID = "2.6-no-secrets-in-logs"


def test_experiment_errors_and_crashing_judges_are_unknown() -> None:
    def boom() -> None:
        raise ConnectionError("etcd down")
    out = run_experiment(boom)
    assert out.error and "ConnectionError: etcd down" in out.error
    assert judged(out, lambda v: passed("never called")).verdict == "unknown"
    assert judged(Outcome(value=1), lambda v: {}["missing"]).verdict == "unknown"
    assert judged(Outcome(value=2), lambda v: passed(f"saw {v}")).evidence == "saw 2"


def test_platform_without_adhoc_instances_is_not_applicable() -> None:
    remote = SimpleNamespace(spec=SimpleNamespace(stack="reference"))  # no spawn_adhoc: e.g. Kubernetes
    out = run_experiment(lambda: pytest.fail("must not run"), needs_adhoc=remote)
    assert out.not_applicable and "cannot start ad-hoc instances" in out.not_applicable
    assert judged(out, lambda v: passed("x")).verdict == "not-applicable"


def test_conclude_writes_then_passes_skips_or_fails(tmp_path: Path) -> None:
    conclude(tmp_path, CID, passed("clean"), [])
    with pytest.raises(pytest.skip.Exception, match="not applicable: no logs here"):
        conclude(tmp_path, CID, not_applicable("no logs here"), [])
    with pytest.raises(pytest.fail.Exception, match=r"fail: found \*\*\* in node-0.log") as err:
        conclude(tmp_path, CID, failed("found s3cret in node-0.log"), ["s3cret"])
    assert "s3cret" not in str(err.value)
    saved = json.loads((tmp_path / "conformance" / f"{CID}.json").read_text())
    assert saved["verdict"] == "fail" and "s3cret" not in json.dumps(saved)


def test_an_experiment_missing_a_platform_piece_is_not_applicable_with_the_reason() -> None:
    from harness.platforms.base import Unsupported

    def needs_proxy() -> None:
        raise Unsupported("the harness does not run on this cluster's node")
    out = run_experiment(needs_proxy)
    assert out.not_applicable and "does not run on this cluster's node" in out.not_applicable
    assert judged(out, lambda v: passed("x")).verdict == "not-applicable"
