"""The outcome vocabulary both fault interpreters share (harness/faults/outcomes.py, handlers.py).

Why mypy is run here on crafted handlers: the point of typing the outcomes is that a platform whose
handler returns another shape (``backend`` for ``how``, ``replaced`` for ``restarted``) fails the type
check; that is shown failing on a wrong handler and passing on a right one, so it cannot silently stop
biting. The interpreters' tables are checked to cover every kind (Kubernetes lacks only ``Reset``).
"""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pytest

from harness.faults.handlers import FAULT_TYPES, Handlers, handler_table
from harness.faults.nemesis import Injected
from harness.faults.outcomes import KillDetail, KillHealed, PartitionShape
from harness.faults.plan import plan_partition
from harness.faults.spec import Fault, Kill, Partition
from harness.platforms.actions import OperatorActions
from harness.platforms.kubernetes.injector import KubernetesInjector
from harness.platforms.local.injector import LocalInjector
from tests.support.paths import ROOT

TOPOLOGY = {"node-0": "node", "node-1": "node", "node-2": "node", "etcd-0": "etcd", "postgres": "postgres",
            "gate-0": "gate"}


def test_the_typed_table_names_every_kind_the_interpreters_apply_and_each_key_its_own_type() -> None:
    assert set(typing.get_type_hints(Handlers)) == set(FAULT_TYPES)
    for key, ftype in FAULT_TYPES.items():
        assert ftype.kind.replace("-", "_") == key, (key, ftype)  # key = the fault kind, spelled as a name


def test_both_interpreters_cover_every_kind() -> None:
    """Kubernetes lacked Reset until the pg-proxy sidecar (node -> postgres) gave it one."""
    local = LocalInjector(None)  # type: ignore[arg-type] - the table binds methods, touches no deployment
    k8s = KubernetesInjector(None)  # type: ignore[arg-type]
    actions = set(OperatorActions().handlers())
    assert set(local.handlers()) == set(FAULT_TYPES.values()) | actions
    assert set(k8s.handlers()) == set(FAULT_TYPES.values()) | actions


def test_handler_table_dispatches_by_fault_type() -> None:
    def kill(fault: Kill) -> Injected[KillDetail, KillHealed]:
        def heal() -> KillHealed:
            return {"restarted": ["node-0"]}
        return Injected(["node-0"], heal, {"signal": fault.signal, "how": "test"})

    table = handler_table(Handlers(kill=kill))
    assert list(table) == [Kill]
    injected = table[Kill](Kill("node-0"))
    assert injected.detail == {"signal": "SIGKILL", "how": "test"} and injected.heal() == {"restarted": ["node-0"]}


def test_the_partition_plan_records_the_shared_keys_in_the_history_order() -> None:
    shape: PartitionShape = plan_partition(Partition("node-postgres", target="node-1"), TOPOLOGY).detail()
    assert list(shape) == ["shape", "one_way", "victim", "grudge"]
    assert shape == {"shape": "node-postgres", "one_way": False, "victim": "node-1",
                     "grudge": {"node-1": ["postgres"], "postgres": ["node-1"]}}


HANDLER = '''
from harness.faults.handlers import Handlers
from harness.faults.nemesis import Injected
from harness.faults.outcomes import KillDetail, KillHealed
from harness.faults.spec import Kill


def kill(fault: Kill) -> Injected[KillDetail, KillHealed]:
    def heal() -> KillHealed:
        return {HEALED: ["node-0"]}
    return Injected(["node-0"], heal, {"signal": fault.signal, DETAIL: "pod deletion"})


table = Handlers(kill=kill)
'''


@pytest.mark.slow
@pytest.mark.parametrize(("detail", "healed", "errors"), [
    ("how", "restarted", []),
    ("backend", "replaced", ['Extra key "backend" for TypedDict "KillDetail"', 'Missing key "how"',
                             'Extra key "replaced" for TypedDict "KillHealed"', 'Missing key "restarted"']),
], ids=["shared-vocabulary", "a-platform-drifting"])
def test_mypy_rejects_a_handler_that_returns_another_shape(tmp_path: Path, detail: str, healed: str,
                                                           errors: list[str]) -> None:
    mod = tmp_path / "handler.py"
    mod.write_text(HANDLER.replace("DETAIL", repr(detail)).replace("HEALED", repr(healed)))
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"),
                          "--follow-imports=silent", str(mod)], capture_output=True, text=True, cwd=ROOT,
                         timeout=300, check=False)
    for e in errors:
        assert e in out.stdout, out.stdout
    assert (out.returncode == 0) == (not errors), out.stdout + out.stderr


def test_fault_kinds_of_the_table_are_fault_subclasses() -> None:
    assert all(issubclass(t, Fault) for t in FAULT_TYPES.values())
