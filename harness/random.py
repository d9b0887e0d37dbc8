"""The harness's one source of randomness: every random choice goes through here, seeded per run.

Why one module: a chaos run that fails must be reproducible. Target choice ("one-node"), partition
shapes ("random halves"), op values and stagger jitter all draw from the same seeded generator, and the
report records the seed, so ``--seed N`` replays the same choices (Jepsen's ``jepsen.random``). Code in
the harness never calls the global :mod:`random` functions.

Usage::

    from harness import random as hrand
    hrand.seed(1234)              # once per run (the pytest plugin does it from --seed)
    victim = hrand.choice(["node-0", "node-1"])
    rng = hrand.fork("probe")     # an independent, reproducible stream for one component
"""

from __future__ import annotations

import hashlib
import os
import random as _random
import threading
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_seed: int = int.from_bytes(os.urandom(4), "big")
_rng = _random.Random(_seed)


def seed(value: int | None = None) -> int:
    """(Re)seed the harness RNG and return the seed in force. ``None`` draws a fresh seed from the OS
    (still recorded, so the run stays reproducible)."""
    global _seed, _rng
    with _lock:
        _seed = int.from_bytes(os.urandom(4), "big") if value is None else int(value)
        _rng = _random.Random(_seed)
        return _seed


def current_seed() -> int:
    """The seed in force, for the report header."""
    return _seed


def rng() -> _random.Random:
    """The shared generator (for APIs that take a ``random.Random``)."""
    return _rng


def fork(name: str) -> _random.Random:
    """An independent generator derived from the run seed and ``name``.

    Why: threads (probe, workload clients, nemesis) that share one generator make each other's draws
    depend on scheduling; a named fork gives each a stable stream regardless of interleaving.
    """
    digest = hashlib.sha256(f"{_seed}:{name}".encode()).digest()
    return _random.Random(int.from_bytes(digest[:8], "big"))


def choice(seq: Sequence[T]) -> T:
    """One element of a non-empty sequence."""
    if not seq:
        raise IndexError("choice from an empty sequence")
    with _lock:
        return _rng.choice(seq)


def sample(seq: Sequence[T], k: int) -> list[T]:
    """``k`` distinct elements, in random order."""
    with _lock:
        return _rng.sample(list(seq), k)


def shuffled(seq: Sequence[T]) -> list[T]:
    """A shuffled copy (the input is left alone)."""
    out = list(seq)
    with _lock:
        _rng.shuffle(out)
    return out


def uniform(a: float, b: float) -> float:
    with _lock:
        return _rng.uniform(a, b)


def randint(a: int, b: int) -> int:
    """An integer in ``[a, b]`` inclusive."""
    with _lock:
        return _rng.randint(a, b)


def random() -> float:
    """A float in ``[0, 1)``."""
    with _lock:
        return _rng.random()


def token_hex(nbytes: int = 3) -> str:
    """Hex digits from the seeded RNG, e.g. for reproducible names.

    Resource *prefixes* of a run (namespaces, cgroups) must not collide between parallel runs that
    happen to share a seed, so those use :func:`os.urandom` instead (see ``run_prefix``)."""
    with _lock:
        return _rng.getrandbits(8 * nbytes).to_bytes(nbytes, "big").hex()


def run_prefix(tag: str = "gvh") -> str:
    """A fresh per-run name prefix like ``gvh3fa9c1`` for every OS resource a run creates, so a
    sweeper can find leftovers of crashed runs. Deliberately *not* seeded: two parallel runs with the
    same seed must not fight over the same namespace names."""
    return f"{tag}{os.urandom(3).hex()}"
