"""Disk faults: disk full on a small filesystem, I/O latency and EIO through FUSE — real mounts."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import random as hrand
from harness.platforms.local import diskfault
from harness.platforms.local.diskfault import FaultFS, SmallFilesystem
from harness.waiting import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting filesystems needs root"),
]
fuse_ok, fuse_why = diskfault.fuse_support()
needs_fuse = pytest.mark.skipif(not fuse_ok, reason=f"FUSE layer unavailable: {fuse_why}")


@pytest.fixture
def prefix() -> Iterator[str]:
    p = hrand.run_prefix()
    yield p
    assert diskfault.leftovers(p) == [], "mounts, loop devices or daemons left behind"


@pytest.mark.parametrize("kind", ["tmpfs", "ext4"])
def test_disk_full_then_freed_without_losing_data(prefix: str, tmp_path: Path, kind: str) -> None:
    data = tmp_path / f"{prefix}-data"
    data.mkdir(mode=0o700)
    (data / "existing").write_text("written before the filesystem was slid underneath")
    with SmallFilesystem(prefix, data, size_mb=16, kind=kind) as fs:  # type: ignore[arg-type]
        assert diskfault.is_mounted(data)
        assert (data / "existing").read_text().startswith("written before")
        assert oct(data.stat().st_mode & 0o777) == oct(0o700)
        (data / "table").write_bytes(b"r" * 100_000)
        ballast = fs.fill()
        assert ballast > 10 * 1024 * 1024 and fs.free_bytes() == 0
        with pytest.raises(OSError) as err:
            (data / "new-row").write_bytes(b"x" * 65536)
        assert err.value.errno == errno.ENOSPC
        assert (data / "table").read_bytes() == b"r" * 100_000  # data intact while full
        fs.free()
        (data / "new-row").write_bytes(b"x" * 65536)
        assert fs.free_bytes() > 10 * 1024 * 1024
    assert not diskfault.is_mounted(data)
    if kind == "ext4":
        assert fs.image is None and fs.loopdev is None


def test_crashed_small_filesystem_is_swept(prefix: str, tmp_path: Path) -> None:
    fs = SmallFilesystem(prefix, tmp_path / "d", size_mb=8, kind="ext4", workdir=tmp_path).mount()
    assert fs.image is not None and any("loop" in x for x in diskfault.leftovers(prefix))
    removed = diskfault.cleanup_leftovers(prefix)  # as after a crash: nobody unmounted
    assert any(r.startswith("mount") for r in removed) and any(r.startswith("loop") for r in removed)
    assert not fs.image.exists()


@needs_fuse
def test_fuse_layer_latency_eio_and_heal(prefix: str, tmp_path: Path) -> None:
    src, mnt = tmp_path / "src", tmp_path / f"{prefix}-mnt"
    src.mkdir()
    (src / "old").write_text("kept")
    with FaultFS(prefix, src, mnt) as ff:
        assert (mnt / "old").read_text() == "kept"
        (mnt / "w").write_bytes(b"ok")  # pass-through: lands in the source
        assert (src / "w").read_bytes() == b"ok"

        ff.latency(150)
        t = time.monotonic()
        with open(mnt / "w", "r+b") as f:
            f.write(b"slow")
            f.flush()
            os.fsync(f.fileno())
        assert time.monotonic() - t >= 0.3  # open + write + fsync, each delayed

        ff.eio()
        with pytest.raises(OSError) as err:
            (mnt / "new").write_bytes(b"x")
        assert err.value.errno == errno.EIO
        with pytest.raises(OSError) as err:
            os.open(mnt / "old", os.O_RDONLY)
        assert err.value.errno == errno.EIO
        assert sorted(os.listdir(mnt)) == ["old", "w"]  # metadata still answers, like a dying disk

        ff.heal()
        t = time.monotonic()
        (mnt / "new").write_bytes(b"fine")
        assert time.monotonic() - t < 0.15
        assert (src / "new").read_bytes() == b"fine" and (src / "w").read_bytes() == b"slow"
    assert not diskfault.is_mounted(mnt)


@needs_fuse
def test_fuse_daemon_killed_mount_is_swept(prefix: str, tmp_path: Path) -> None:
    src, mnt = tmp_path / "src", tmp_path / f"{prefix}-mnt"
    src.mkdir()
    ff = FaultFS(prefix, src, mnt).mount()
    assert ff.proc is not None
    ff.proc.kill()  # the daemon dies; the mount is left dangling (ENOTCONN)
    ff.proc.wait()
    wait_until(lambda: diskfault.is_mounted(mnt), 2, "dangling mount still listed")
    removed = diskfault.cleanup_leftovers(prefix)
    assert any(r.startswith("mount") for r in removed)
    assert not diskfault.is_mounted(mnt)
    ff.unmount()  # and the owner's own cleanup is still harmless
