"""checkov beside the conformance verdicts: its JSON is parsed into findings per source and summarised;
it runs only when a binary is available (its own venv), never deciding a verdict."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.conformance import checkov

OUTPUT = [
    {"check_type": "kubernetes", "results": {"failed_checks": [
        {"check_id": "CKV_K8S_43", "check_name": "Image should use digest", "file_path": "/../../x/kind-reference.yaml",
         "resource": "Deployment.goverse.goverse-gate"},
        {"check_id": "CKV_K8S_43", "check_name": "Image should use digest", "file_path": "/../../x/k3s-goverse.yaml",
         "resource": "StatefulSet.goverse.goverse-node"},
        {"check_id": "CKV_K8S_40", "check_name": "high UID", "file_path": "/x/kind-reference.yaml",
         "resource": "StatefulSet.goverse.goverse-postgres"}]}},
    {"check_type": "dockerfile", "results": {"failed_checks": [
        {"check_id": "CKV_DOCKER_2", "check_name": "HEALTHCHECK", "file_path": "/w/refstack.Dockerfile",
         "resource": "/w/refstack.Dockerfile."}]}},
]
SOURCES = {"kind-reference.yaml": "kind/reference", "k3s-goverse.yaml": "k3s/goverse",
           "refstack.Dockerfile": "refstack.Dockerfile"}


def test_parse_maps_files_to_overlays() -> None:
    found = checkov.parse_output(json.dumps(OUTPUT), SOURCES)
    assert [(f.source, f.check_id) for f in found] == [
        ("kind/reference", "CKV_K8S_43"), ("k3s/goverse", "CKV_K8S_43"), ("kind/reference", "CKV_K8S_40"),
        ("refstack.Dockerfile", "CKV_DOCKER_2")]
    assert checkov.parse_output(json.dumps(OUTPUT[0]), SOURCES)[0].resource == "Deployment.goverse.goverse-gate"
    assert checkov.parse_output("", SOURCES) == []
    with pytest.raises(ValueError):
        checkov.parse_output("Traceback ...", SOURCES)


def test_render_groups_by_policy_most_frequent_first() -> None:
    text = checkov.render(checkov.parse_output(json.dumps(OUTPUT), SOURCES))
    lines = text.splitlines()
    assert lines[0].startswith("checkov (beside ours, not part of the verdicts): 4 failed checks, 3 policies")
    assert lines[1].split()[0] == "CKV_K8S_43" and "2×" in lines[1]
    assert "k3s/goverse, kind/reference" in lines[2]
    assert checkov.render([], "boom") == "checkov: boom"
    assert checkov.render([]) == "checkov: no failed checks"


def test_find_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GVH_CHECKOV", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert checkov.find_binary(None) is None
    exe = tmp_path / "checkov"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert checkov.find_binary(None) == str(exe)
    assert checkov.find_binary(str(tmp_path / "missing")) == str(exe)


@pytest.mark.skipif(not os.environ.get("GVH_CHECKOV"), reason="GVH_CHECKOV (a checkov in its own venv) is not set")
def test_real_checkov_over_a_rendered_overlay(tmp_path: Path) -> None:
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n"},
           "spec": {"containers": [{"name": "c", "image": "busybox:latest"}]}}
    found, error = checkov.run(os.environ["GVH_CHECKOV"], {"kind/reference": [doc]}, None, tmp_path)
    assert error is None and any(f.source == "kind/reference" and f.check_id == "CKV_K8S_14" for f in found)
