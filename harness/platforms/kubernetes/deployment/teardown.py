"""Teardown of a Kubernetes stack: evidence (pod logs, events, pod objects) into the run directory,
then thaw, heal, close forwards and hand the namespace to its owner for deletion."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from harness.platforms.kubernetes.deployment.operate import OperatorActions

log = logging.getLogger(__name__)


class Teardown(OperatorActions):
    """Save the evidence and remove the stack; idempotent."""

    def collect_logs(self) -> Path:
        """Every container's log (and the previous one after a restart) into ``<run_dir>/logs``."""
        out = self.run_dir / "logs"
        out.mkdir(parents=True, exist_ok=True)
        for pod in self.core.list_namespaced_pod(self.namespace).items:
            if pod.spec is None or pod.metadata is None or not pod.metadata.name:
                continue
            names = [c.name for c in (pod.spec.init_containers or []) + pod.spec.containers]
            for c in names:
                for previous in (False, True):
                    with contextlib.suppress(Exception):
                        text = self.core.read_namespaced_pod_log(pod.metadata.name, self.namespace, container=c,
                                                                 previous=previous, _request_timeout=20)
                        suffix = ".previous" if previous else ""
                        (out / f"{pod.metadata.name}.{c}{suffix}.log").write_text(text)
        return out

    def collect_evidence(self) -> Path:
        """Pod logs, the namespace's events and every pod's full object (what ``kubectl describe`` shows)
        into ``<run_dir>/logs``: called at every teardown, before the namespace goes."""
        out = self.collect_logs()
        import yaml

        san = self.core.api_client.sanitize_for_serialization
        with contextlib.suppress(Exception):
            events = sorted(san(self.core.list_namespaced_event(self.namespace)).get("items", []),
                            key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
            lines = [f"{e.get('lastTimestamp') or e.get('eventTime')} {e.get('type')} {e.get('reason')} "
                     f"{e['involvedObject'].get('kind')}/{e['involvedObject'].get('name')}: {e.get('message')}"
                     for e in events]
            (out / "events.txt").write_text("\n".join(lines) + "\n")
        with contextlib.suppress(Exception):
            pods = san(self.core.list_namespaced_pod(self.namespace)).get("items", [])
            (out / "pods.yaml").write_text(yaml.safe_dump_all(pods))
        return out

    def teardown(self) -> None:
        """Save evidence, close port-forwards, recover chaos, delete the namespace and wait until it is
        gone. Idempotent."""
        if self._torn_down:
            return
        self._torn_down = True
        for name in list(self._frozen):  # a frozen pod cannot even be killed: thaw before deleting
            with contextlib.suppress(Exception):
                self.resume(name)
        for key, lim in list(self.limits.items()):  # a fault whose heal never ran (nemesis heals first)
            with contextlib.suppress(Exception):
                lim.heal()
            self.limits.pop(key, None)
        self.stop_all_adhoc(grace=0.0)  # saves their logs; the namespace's deletion would take them anyway
        try:
            self.collect_evidence()
        except Exception as exc:  # noqa: BLE001 - evidence is best effort; teardown must go on
            log.warning("saving pod logs/events of %s failed: %s", self.namespace, exc)
        for pf in self._forwards.values():
            pf.close()
        self._forwards.clear()
        if self._on_teardown is not None:
            self._on_teardown(self)
