"""The merged history: pairing, unknown outcomes, fault windows, and a lossless JSONL round trip."""

import pytest

from harness.history import History, Recorder


def test_pairs_invocations_and_treats_missing_completion_as_info(tmp_path):
    rec = Recorder(tmp_path / "h.jsonl")
    a = rec.invoke("client-0", "increment", key="k", value=2)
    rec.complete(a, "ok", "client-0", "increment", key="k", value=2, extra={"node": "node-1", "epoch": 4})
    rec.invoke("client-1", "increment", key="k", value=3)  # never completes
    fid = rec.nemesis_start("kill", target=["node-0"])
    rec.nemesis_stop(fid, "kill")
    rec.close()
    h = History.load(tmp_path / "h.jsonl")
    ops = h.ops("increment")
    assert [(o.type, o.value) for o in ops] == [("ok", 2), ("info", 3)]
    assert ops[0].extra == {"node": "node-1", "epoch": 4}
    (w,) = h.faults()
    assert w.kind == "kill" and w.target == ["node-0"] and w.t_stop is not None and w.t_stop >= w.t_start


def test_bad_completion_type_is_rejected():
    rec = Recorder()
    op = rec.invoke("p", "read")
    with pytest.raises(ValueError, match="completion type"):
        rec.complete(op, "maybe", "p", "read")
