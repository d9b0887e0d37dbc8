"""The setting ``object_type`` is honoured: the counter workload (probe, increments, reads, final reads)
calls that type, over real HTTP against a stand-in gate that serves only that type and answers 404 to
any other (as a gate answers an unregistered type); values it cannot honour stop the run with one
message naming the setting and what is allowed."""

from __future__ import annotations

import pytest

from harness.history import Recorder
from harness.settings import SettingsError, load_settings
from harness.waiting import wait_until
from harness.workload.runner import Workload, WorkloadSpec
from harness.workload.standin import StandInGate

GOVERSE_BINS = ("goverse_node_bin", "goverse_gate_bin", "goverse_pgadmin_bin")


def _goverse(tmp_path, **extra):  # type: ignore[no-untyped-def]
    cli = {"stack": "goverse", **extra}
    for name in GOVERSE_BINS:
        exe = tmp_path / name
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
        cli[name] = str(exe)
    return load_settings(cli, env={})


def _run(counter_type: str, served: str) -> tuple[Recorder, StandInGate, dict[str, int | None]]:
    rec = Recorder()
    with StandInGate(rec.now, counter_type=served) as gate:
        spec = WorkloadSpec(probe_hz=20, probe_keys=4, counter_keys=3, counter_rate=40, counter_type=counter_type,
                            timeout=2.0)
        wl = Workload(rec, {"gate-0": gate.url}, spec, run_tag="ot")
        with wl.running():
            wait_until(lambda: len(rec.history().ops("increment")) >= 10, 10, "increments")
        finals = wl.final_reads(timeout=2.0)
    return rec, gate, finals


def test_the_workload_calls_the_configured_type() -> None:
    rec, gate, finals = _run("PersistentCounter", served="PersistentCounter")
    assert set(gate.calls_by_type) == {"PersistentCounter"}  # probe, increments, reads and final reads
    h = rec.history()
    incs = h.ops("increment")
    assert incs and all(o.type == "ok" for o in incs)
    assert all(o.type == "ok" for o in h.ops("probe"))
    # the final reads parse the counter's value under that name: they equal what was acknowledged
    for key, value in finals.items():
        assert value == sum(int(o.value or 0) for o in incs if o.key == key)


def test_the_default_type_is_counter_and_a_gate_without_it_fails_every_call() -> None:
    rec, gate, finals = _run("Counter", served="PersistentCounter")
    assert set(gate.calls_by_type) == {"Counter"}
    incs = rec.history().ops("increment")
    assert incs and all(o.type != "ok" and "NOT_FOUND" in str(o.error) for o in incs)
    assert set(finals.values()) == {None}


def test_goverse_accepts_another_counter_type_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert _goverse(tmp_path, object_type="PersistentCounter").object_type == "PersistentCounter"
    assert load_settings({}, env={"GVH_OBJECT_TYPE": "Counter"}).object_type == "Counter"


@pytest.mark.parametrize(("value", "stack", "message"), [
    ("Thing", "reference", r"^object_type: the reference stack serves the counter methods only on type Counter.*"
                           r"allowed with stack=reference: Counter"),
    ("Wallet", "goverse", r"^object_type: 'Wallet' has no counter methods"),
    ("my-counter", "goverse", r"^object_type: 'my-counter' is not an object type name"),
    ("9Lives", "goverse", r"^object_type: '9Lives' is not an object type name"),
])
def test_values_it_cannot_honour_are_rejected_naming_the_setting(tmp_path, value, stack, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SettingsError, match=message):
        if stack == "goverse":
            _goverse(tmp_path, object_type=value)
        else:
            load_settings({"object_type": value}, env={})
