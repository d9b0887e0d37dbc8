"""Is a rollout done, is a pod ready, did a Job finish — read from object status (pure).

Why separate from the watch loop: these are the predicates the harness waits on; getting one subtly
wrong (a Deployment whose old ReplicaSet still serves, a StatefulSet whose pods run the old revision)
makes every wait lie. They take plain dicts (``ApiClient.sanitize_for_serialization`` of a client
object, or a watch event's raw object) and are unit-tested on recorded status shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _cond(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def deployment_progress(obj: Mapping[str, Any]) -> tuple[bool, str]:
    """Complete when the controller saw the latest spec and every replica is updated and available
    (what ``kubectl rollout status`` checks), or it failed its progress deadline."""
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    want = int(spec.get("replicas", 1))
    if st.get("observedGeneration", 0) < obj.get("metadata", {}).get("generation", 0):
        return False, "waiting for the controller to observe the new spec"
    cond = _cond(obj, "Progressing")
    if cond and cond.get("reason") == "ProgressDeadlineExceeded":
        raise RolloutFailed(f"Deployment {obj['metadata']['name']}: {cond.get('message', 'deadline exceeded')}")
    updated, total = int(st.get("updatedReplicas", 0)), int(st.get("replicas", 0))
    available = int(st.get("availableReplicas", 0))
    if updated < want:
        return False, f"{updated}/{want} replicas updated"
    if total > updated:
        return False, f"{total - updated} old replicas pending termination"
    if available < updated:
        return False, f"{available}/{updated} updated replicas available"
    return True, f"{available}/{want} available"


def statefulset_progress(obj: Mapping[str, Any]) -> tuple[bool, str]:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    want = int(spec.get("replicas", 1))
    if st.get("observedGeneration", 0) < obj.get("metadata", {}).get("generation", 0):
        return False, "waiting for the controller to observe the new spec"
    ready, current = int(st.get("readyReplicas", 0)), int(st.get("replicas", 0))
    if current != want:
        return False, f"{current}/{want} replicas exist"
    if ready < want:
        return False, f"{ready}/{want} replicas ready"
    strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
    revision = st.get("updateRevision")
    if strategy == "RollingUpdate" and revision and st.get("currentRevision") != revision:
        return False, f"{st.get('updatedReplicas', 0)}/{want} pods on revision {st.get('updateRevision')}"
    return True, f"{ready}/{want} ready"


def job_progress(obj: Mapping[str, Any]) -> tuple[bool, str]:
    if (_cond(obj, "Complete") or {}).get("status") == "True":
        return True, "complete"
    failed = _cond(obj, "Failed")
    if failed and failed.get("status") == "True":
        name = obj["metadata"]["name"]
        raise RolloutFailed(f"Job {name} failed: {failed.get('reason')}: {failed.get('message', '')}")
    st = obj.get("status") or {}
    return False, f"active {st.get('active', 0)}, failed attempts {st.get('failed', 0)}"


def progress(obj: Mapping[str, Any]) -> tuple[bool, str]:
    kind = obj.get("kind")
    if kind == "Deployment":
        return deployment_progress(obj)
    if kind == "StatefulSet":
        return statefulset_progress(obj)
    if kind == "Job":
        return job_progress(obj)
    raise ValueError(f"no rollout predicate for {kind}")


class RolloutFailed(RuntimeError):
    """The controller gave up (progress deadline, Job backoff): waiting longer will not help."""


def pod_ready(obj: Mapping[str, Any]) -> bool:
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return (_cond(obj, "Ready") or {}).get("status") == "True"


def pod_problem(obj: Mapping[str, Any]) -> str | None:
    """A waiting reason that will not fix itself (bad image, crash loop, config error), else None."""
    st = obj.get("status") or {}
    for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                                     "CreateContainerConfigError", "CrashLoopBackOff"):
            return f"{cs.get('name')}: {waiting.get('reason')}: {waiting.get('message', '')}".strip()
    return None


def running_container_id(obj: Mapping[str, Any], container: str) -> str | None:
    """The id of ``container``'s current container (``containerd://…``), None when it has none."""
    for cs in (obj.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == container:
            return cs.get("containerID") or None
    return None


def container_termination(obj: Mapping[str, Any], container: str, container_id: str) -> dict[str, Any] | None:
    """How the container with ``container_id`` ended, as the kubelet recorded it (``exit_code``,
    ``reason``, ``finished_at``, and ``restarted``: whether a new container already runs), or None if
    it has not ended (or the kubelet has not noticed yet). Matched by id, not by "the last termination":
    a container killed earlier in the same pod (another scenario of the module) also left a record,
    and while the kubelet backs off a restart the dead container is still the current one."""
    for cs in (obj.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") != container:
            continue
        for key, restarted in (("state", False), ("lastState", True)):
            term = (cs.get(key) or {}).get("terminated")
            if term and term.get("containerID") == container_id:
                return {"exit_code": term.get("exitCode"), "reason": term.get("reason"),
                        "finished_at": term.get("finishedAt"),
                        "restarted": restarted and cs.get("containerID") != container_id}
    return None
