"""FNV-1a 32-bit must match the reference vectors, or keys land on other shards than Goverse's."""

import pytest

from harness.sharding import fnv1a32, keys_covering_shards, shard_of


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", 0x811C9DC5), (b"a", 0xE40C292C), (b"foobar", 0xBF9CF968)],  # published FNV-1a test vectors
)
def test_fnv1a32_reference_vectors(data, expected):
    assert fnv1a32(data) == expected


def test_pinned_ids_map_to_their_shard():
    assert shard_of("shard#5/monitor", 64) == 5
    # Out of range or malformed: the whole id is hashed (Goverse's GetShardID), never N mod shards.
    assert shard_of("shard#70/x", 64) == fnv1a32(b"shard#70/x") % 64
    assert shard_of("shard#x/y", 64) == fnv1a32(b"shard#x/y") % 64


def test_keys_cover_distinct_shards():
    keys = keys_covering_shards("k-", 32, 64)
    assert len(keys) == 32
    assert len({shard_of(k, 64) for k in keys}) == 32


def test_zero_shards_is_rejected():
    with pytest.raises(ValueError, match="shards must be > 0"):
        shard_of("x", 0)
