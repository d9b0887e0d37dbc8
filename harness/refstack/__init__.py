"""The reference stack: a small, honest implementation of Goverse's cluster contract.

Nodes (``node.py``), gates (``gate.py``) and an inspector (``inspector.py``) run as separate processes
on real etcd and PostgreSQL; they are the system under test for the whole harness. Pure decision logic
lives in ``sharding.py`` and ``config.py``; seeded bugs are listed in ``bugs.py``. Start one with
``python -m harness.refstack node|gate|inspector --config FILE``; docs/refstack.md shows a full cluster
by hand.
"""
