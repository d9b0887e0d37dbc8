"""Record what the instances say about themselves (``/ready``) and where the shard map says each shard
is settled, as they change, for the readiness ⇒ serving check (harness/checkers/readiness.py).

Why a poller of our own: a node's /ready is consulted by load balancers and rolling operations at their
own moments, which the history never sees; comparing calls with readiness needs the answers over
time. Only changes are recorded (and each instance's first answer), so a long run adds little.
An instance that is stopped, gone or unreachable is recorded as not ready: that is what a kubelet's
probe would conclude.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from harness.cluster_state import ClusterState
from harness.history import Recorder
from harness.platforms.base import Instance

READY_F = "ready"  # the checker's names (harness.checkers.readiness), repeated: checkers import nothing here
PLACEMENT_F = "placement"
COMPONENTS = ("node", "gate")


class ReadinessPoller:
    """Polls every node's and gate's ``/ready`` every ``period`` seconds; records changes."""

    def __init__(self, recorder: Recorder, instances: Callable[[], list[Instance]], period: float = 0.1,
                 timeout: float = 0.3) -> None:
        self.recorder = recorder
        self.instances = instances
        self.period = period
        self.timeout = timeout
        self.last: dict[str, tuple[bool, str]] = {}
        self.session = requests.Session()

    def answer(self, inst: Instance) -> tuple[bool, str]:
        if not inst.running:
            return False, "not running"
        if not inst.ops_url:
            return False, "no ops endpoint"
        try:
            resp = self.session.get(f"{inst.ops_url}/ready", timeout=self.timeout)
        except requests.RequestException as exc:
            return False, f"unreachable: {type(exc).__name__}"
        return resp.status_code == 200, "" if resp.status_code == 200 else f"HTTP {resp.status_code}"

    def poll_once(self) -> None:
        try:
            insts = [i for i in self.instances() if i.component in COMPONENTS]
        except Exception as exc:  # noqa: BLE001 - a platform that cannot list now: try the next round
            self.recorder.log("readiness poll: cannot list instances", error=repr(exc)[:200])
            return
        seen = set()
        for inst in insts:
            seen.add(inst.name)
            self._record(inst.name, inst.component, *self.answer(inst))
        for name in set(self.last) - seen:
            self._record(name, name.split("-")[0], False, "gone")

    def _record(self, name: str, component: str, ready: bool, reason: str) -> None:
        if self.last.get(name, (None, None))[0] == ready:
            return
        self.last[name] = (ready, reason)
        self.recorder.sample(READY_F, {"instance": name, "component": component, "ready": ready,
                                       "reason": reason[:120]}, process="readiness")

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                t0 = time.monotonic()
                self.poll_once()
                stop.wait(max(0.0, self.period - (time.monotonic() - t0)))
        finally:
            self.session.close()


class PlacementRecorder:
    """Records the shard map's settled shards (``target == current``, owner live) per instance name,
    when they change."""

    def __init__(self, recorder: Recorder, shards: int) -> None:
        self.recorder = recorder
        self.shards = shards
        self.last: dict[str, list[int]] | None = None

    def observe(self, st: ClusterState, names: dict[str, str]) -> None:
        serving: dict[str, list[int]] = {}
        for shard, (target, current) in sorted(st.shards.items()):
            if current and target == current and current in st.nodes:
                serving.setdefault(names.get(current, current), []).append(shard)
        if serving == self.last:
            return
        self.last = serving
        value: dict[str, Any] = {"shards": self.shards, "serving": serving}
        self.recorder.sample(PLACEMENT_F, value, process="oracle")
