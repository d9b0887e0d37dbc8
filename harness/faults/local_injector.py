"""Applies faults on the local platform (processes, signals; namespaces and cgroups where available).

Why resolution happens here: a target such as ``one-node`` is chosen when the fault runs, from the live
topology, with the seeded RNG; what was actually hit is returned so the history records it.
"""

from __future__ import annotations

from typing import Any

from harness.faults.nemesis import Injected
from harness.faults.spec import Fault, Kill, Pause, Restart, ScaleTo, resolve_target
from harness.platforms.base import Unsupported


class LocalInjector:
    """Fault application for ``LocalDeployment`` (see harness/platforms/local/deploy.py)."""

    def __init__(self, deployment: Any) -> None:
        self.dep = deployment

    def topology(self, running_only: bool = True) -> dict[str, str]:
        return {i.name: i.component for i in self.dep.instances() if i.running or not running_only}

    def _one(self, spec: str) -> list[str]:
        return resolve_target(spec, self.topology())

    def inject(self, fault: Fault) -> Injected:
        handler = getattr(self, f"_inject_{fault.kind.replace('-', '_')}", None)
        if handler is None:
            raise Unsupported(f"the local platform cannot apply {fault.kind!r} faults")
        return handler(fault)  # type: ignore[no-any-return]

    def _inject_kill(self, fault: Kill) -> Injected:
        targets = self._one(fault.target)
        for t in targets:
            self.dep.kill(t, fault.signum)

        def heal() -> dict[str, Any]:
            for t in targets:
                self.dep.start(t)
            return {"restarted": targets}
        return Injected(targets, heal, {"signal": fault.signal})

    def _inject_restart(self, fault: Restart) -> Injected:
        targets = self._one(fault.target)
        codes = {t: self.dep.stop(t, graceful=fault.graceful) for t in targets}

        def heal() -> dict[str, Any]:
            for t in targets:
                self.dep.start(t)
            return {"restarted": targets}
        return Injected(targets, heal, {"exit_codes": codes})

    def _inject_pause(self, fault: Pause) -> Injected:
        targets = self._one(fault.target)
        for t in targets:
            self.dep.pause(t)

        def heal() -> None:
            for t in targets:
                self.dep.resume(t)
        return Injected(targets, heal)

    def _inject_scale(self, fault: ScaleTo) -> Injected:
        before = len([i for i in self.dep.instances(fault.component) if i.running])
        changed = self.dep.scale(fault.component, fault.n)

        def heal() -> dict[str, Any]:
            return {"changed": self.dep.scale(fault.component, before)}
        return Injected(changed, heal, {"from": before, "to": fault.n})


