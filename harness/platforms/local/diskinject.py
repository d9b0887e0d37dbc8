"""A disk fault on PostgreSQL's small filesystem and FUSE layer: what "full", "latency" and "eio" do, and
what they record, shared by the local platform and the Kubernetes one with node access (whose PostgreSQL
volume is the same small filesystem and FUSE layer, ``kubernetes/pgvolume.py``).

Why shared: the same fault id must mean the same act and leave the same evidence on both platforms
(``disk_was_full`` reads ``ballast_bytes``/``free_bytes``/``filesystem_mb`` from the fault's detail).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.faults import outcomes as out
from harness.faults import spec
from harness.faults.nemesis import Injected
from harness.platforms.base import Unsupported


def inject_pg_disk(fault: spec.DiskFault, disk: Any, layer: Any,
                   unwired: Mapping[str, str]) -> Injected[out.DiskDetail, out.DiskHealed]:
    """Apply ``fault`` to PostgreSQL: "full" writes a ballast into the small filesystem ``disk``
    (``smallfs.SmallFilesystem``) until ENOSPC, heal deletes it; "latency"/"eio" switch the FUSE layer
    ``layer`` (``faultfs.FaultFS``), heal makes it transparent. ``None`` for a part not wired here raises
    Unsupported with the reason from ``unwired`` (keyed ``disk-full``/``disk-latency``/``disk-eio``)."""
    targets = ["postgres"]
    if fault.disk == "full":
        if disk is None:
            raise Unsupported("disk full: " + unwired.get("disk-full", "not wired"))
        ballast = disk.fill()
        detail: out.DiskDetail = {"disk": "full", "how": "ballast in a small filesystem", "ballast_bytes": ballast,
                                  "free_bytes": disk.free_bytes(), "filesystem_mb": disk.size_mb}

        def heal_full() -> out.DiskHealed:
            disk.free()
            return {"free_bytes": disk.free_bytes()}
        return Injected(targets, heal_full, detail)
    if layer is None or layer.proc is None:
        raise Unsupported(f"disk {fault.disk}: " + unwired.get(f"disk-{fault.disk}", "not wired"))
    if fault.disk == "latency":
        layer.latency(fault.latency_ms)
    else:
        layer.eio()

    def heal() -> out.DiskHealed | None:
        layer.heal()
        return None
    return Injected(targets, heal, {"disk": fault.disk, "latency_ms": fault.latency_ms, "via": "fuse",
                                    "how": "FUSE fault layer"})
