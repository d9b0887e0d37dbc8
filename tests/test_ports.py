"""free_port: a port handed out is not handed out again while its service may still be starting."""

from __future__ import annotations

from harness.ports import free_port


def test_successive_ports_are_distinct() -> None:
    # 2,000 draws from the ~22,000 ports below the ephemeral range: without the memory of handed-out
    # ports a repeat is all but certain (the birthday bound), and a stack's two listeners would collide.
    ports = [free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)
    assert all(1024 < p < 65536 for p in ports)
