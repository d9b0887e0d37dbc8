"""Fault specs: ids, serialisation, validation and late target resolution."""

from __future__ import annotations

import json
import random
import signal

import pytest

from harness.faults.spec import (
    FAULT_KINDS,
    OPERATOR_ACTIONS,
    CpuStress,
    DiskFault,
    Fault,
    Kill,
    Latency,
    MemoryPressure,
    Partition,
    Pause,
    Reset,
    Restart,
    Restore,
    Rollback,
    RollingRestart,
    RotateSecret,
    ScaleTo,
    TakeBackup,
    TargetError,
    Timeout,
    UpdateConfig,
    Upgrade,
    VolumeLoss,
    Wipe,
    is_target_spec,
    resolve_link,
    resolve_target,
)

TOPO = {"node-0": "node", "node-1": "node", "node-2": "node", "gate-0": "gate", "gate-1": "gate",
        "etcd-0": "etcd", "etcd-1": "etcd", "etcd-2": "etcd", "postgres": "postgres",
        "inspector": "inspector"}

ALL = [
    Kill("node-0", "SIGKILL"), Kill(), Pause("node-1"), Restart("gate-0"), Restart("node-0", graceful=False),
    Partition("isolate-node"), Partition("node-etcd", "node-2", one_way=True), Partition("halves"),
    Latency(("node-0", "postgres"), 200, 20), Timeout(("gates", "node-1")), Reset(("one-node", "postgres")),
    CpuStress("node-0", 0.1), MemoryPressure("one-node", 64), DiskFault("postgres", "full"),
    DiskFault("postgres", "latency", latency_ms=30), ScaleTo("node", 5),
    # operator actions
    ScaleTo("gate", 1, drain_endpoints=False), RollingRestart(("node",)), UpdateConfig("LOG_LEVEL", "warn"),
    RotateSecret(), Upgrade("B"), Rollback(), TakeBackup("/tmp/b"), Restore("/tmp/b", ("k1", "k2"), etcd=False),
    Wipe("/tmp/b", ("k1",)), VolumeLoss("etcd", "/tmp/b"),
]


def test_ids_are_short_and_distinct() -> None:
    ids = [str(f) for f in ALL]
    assert ids[:2] == ["kill-node0-sigkill", "kill-one-node-sigkill"]
    assert "partition-isolate-node" in ids
    assert "partition-node-etcd-node2-oneway" in ids
    assert "latency-node0-postgres-200ms-j20" in ids
    assert "timeout-gates-node1" in ids
    assert "restart-node0-sigkill" in ids and "restart-gate0-graceful" in ids
    assert "cpu-stress-node0-10pct" in ids and "memory-pressure-one-node-64mb" in ids
    assert "disk-full-postgres" in ids and "scale-nodes-to-5" in ids
    assert "update-config-log-level-warn" in ids and "upgrade-to-b" in ids and "volume-loss-etcd" in ids
    assert "rolling-restart-nodes" in ids and "restore-postgres" in ids and "rotate-secret-postgres-password" in ids
    assert len(set(ids)) == len(ids)
    assert all(" " not in i and i == i.lower() for i in ids)


@pytest.mark.parametrize("fault", ALL, ids=str)
def test_round_trips_through_json(fault: Fault) -> None:
    back = Fault.from_dict(json.loads(json.dumps(fault.to_dict())))
    assert back == fault and hash(back) == hash(fault)
    rec = json.loads(json.dumps(fault.record()))
    assert rec["id"] == str(fault) and rec["kind"] == fault.kind
    assert "target" not in rec["params"] and "link" not in rec["params"]


def test_every_kind_is_registered() -> None:
    assert set(FAULT_KINDS) == {"kill", "pause", "restart", "partition", "latency", "timeout", "reset",
                                "cpu-stress", "memory-pressure", "disk", "scale", "rolling-restart", "update-config",
                                "rotate-password", "upgrade", "roll-back", "take-backup", "restore-backup",
                                "wipe-state", "lose-volume"}
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault.from_dict({"kind": "meteor"})


def test_operator_action_kinds_never_name_the_windows_their_operations_record() -> None:
    """The outer nemesis window and the per-instance windows inside it must differ in kind, or a
    one-at-a-time check would see the outer window overlap every instance's."""
    from harness import operation_kinds as ok

    inner = {*ok.SCALE_KINDS, *ok.ROLL_KINDS, ok.BACKUP_KIND, ok.WIPE_KIND, ok.RESTORE_KIND, ok.VOLUME_LOSS_KIND,
             ok.ROTATE_KIND, ok.RESTART_ROLL_KIND, "secret-rollout"}
    assert not {c.kind for c in OPERATOR_ACTIONS} & inner


@pytest.mark.parametrize("bad, match", [
    (lambda: UpdateConfig("log level", "warn"), "environment setting"),
    (lambda: UpdateConfig("LOG_LEVEL", "warn", components=("database",)), "components: unknown"),
    (lambda: RollingRestart(()), "non-empty tuple"),
    (lambda: Upgrade("B; rm -rf /"), "plain tag"),
    (lambda: RotateSecret("tls-key"), "postgres-password"),
    (lambda: TakeBackup(""), "backup's directory"),
    (lambda: Restore("/b", etcd=False, postgres=False), "etcd, PostgreSQL or both"),
    (lambda: VolumeLoss("node", "/b"), "postgres or etcd"),
    (lambda: ScaleTo("inspector", 2), "only nodes and gates"),
])
def test_operator_actions_refuse_bad_input_naming_the_setting(bad, match) -> None:
    with pytest.raises(ValueError, match=match):
        bad()


def test_frozen() -> None:
    with pytest.raises(AttributeError):
        Kill().target = "node-1"  # type: ignore[misc]


def test_validation() -> None:
    with pytest.raises(ValueError, match="signal"):
        Kill("node-0", "SIGNOPE")
    with pytest.raises(TargetError):
        Pause("nodes-zero")
    with pytest.raises(ValueError, match="shape"):
        Partition("triangle")
    with pytest.raises(ValueError, match="takes no target"):
        Partition("halves", "node-0")
    with pytest.raises(ValueError, match="jitter"):
        Latency(("node-0", "postgres"), 10, 20)
    with pytest.raises(TargetError):
        Latency(("node-0",), 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CpuStress("node-0", 0)
    with pytest.raises(ValueError):
        DiskFault("postgres", "melt")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ScaleTo("postgres", 2)
    assert Kill("node-0", "SIGTERM").signum == signal.SIGTERM


def test_target_spec_syntax() -> None:
    for ok in ("node-0", "one-node", "all-nodes", "nodes", "gates", "all-postgres", "etcd-leader",
               "postgres", "one-etcd"):
        assert is_target_spec(ok), ok
    for bad in ("", "node", "one-moon", "node-x", "leader"):
        assert not is_target_spec(bad), bad


def test_resolve_target() -> None:
    assert resolve_target("node-1", TOPO) == ["node-1"]
    assert resolve_target("gates", TOPO) == ["gate-0", "gate-1"]
    assert resolve_target("all-etcd", TOPO) == ["etcd-0", "etcd-1", "etcd-2"]
    assert resolve_target("postgres", TOPO) == ["postgres"]
    picks = {resolve_target("one-node", TOPO, random.Random(s))[0] for s in range(40)}
    assert picks == {"node-0", "node-1", "node-2"}
    assert resolve_target("one-node", TOPO, random.Random(5)) == resolve_target("one-node", TOPO,
                                                                               random.Random(5))
    assert resolve_target("etcd-leader", TOPO, etcd_leader=lambda: "etcd-2") == ["etcd-2"]
    assert resolve_target("etcd-follower", TOPO, random.Random(1), etcd_leader="etcd-2")[0] in {
        "etcd-0", "etcd-1"}
    with pytest.raises(TargetError, match="leader"):
        resolve_target("etcd-leader", TOPO)
    with pytest.raises(TargetError, match="no gate"):
        resolve_target("one-gate", {"node-0": "node"})
    with pytest.raises(TargetError):
        resolve_target("node-7", TOPO)


def test_resolve_link() -> None:
    assert resolve_link(("gates", "node-1"), TOPO) == [("gate-0", "node-1"), ("gate-1", "node-1")]
    assert resolve_link(("nodes", "postgres"), TOPO) == [
        ("node-0", "postgres"), ("node-1", "postgres"), ("node-2", "postgres")]
    assert resolve_link(("nodes", "node-0"), TOPO) == [("node-1", "node-0"), ("node-2", "node-0")]
    with pytest.raises(TargetError):
        resolve_link(("node-0", "node-0"), TOPO)
