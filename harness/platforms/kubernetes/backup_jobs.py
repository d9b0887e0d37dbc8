"""The Jobs of the backup and restore procedure on Kubernetes, built from the backup CronJobs (pure).

Why derive every Job from the CronJobs (``manifests/components/backup``, the chart's ``backup.yaml``)
instead of writing pod specs here: a backup Job made "by hand" is exactly what
``kubectl create job --from=cronjob/...`` makes (:func:`job_from_cronjob`), and the verify and restore
Jobs reuse the CronJobs' pod identity — the label the backup NetworkPolicies let reach etcd/PostgreSQL,
the user that owns the files on the backup volume, the restricted security context, the images — so
what the harness exercises is what an operator running docs/runbooks/restore.md gets, not a
privileged shortcut. Everything here is a function of plain dicts, tested on the rendered manifests.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

#: component -> the CronJob that backs it up, and the volume it writes to
CRONJOBS: dict[str, str] = {"etcd": "goverse-etcd-backup", "postgres": "goverse-postgres-backup"}
BACKUP_PVCS: dict[str, str] = {"etcd": "goverse-backup-etcd", "postgres": "goverse-backup-postgres"}
#: the container of each CronJob's pod whose image/identity the derived Jobs reuse
_TOOL_CONTAINER: dict[str, str] = {"etcd": "snapshot", "postgres": "pg-dump"}
#: the busybox step of the etcd CronJob (a shell: the etcd image has none)
_SHELL_CONTAINER = "clean"
ETCD_DATA_DIR = "/var/lib/etcd/data"  # ETCD_DATA_DIR of the goverse-etcd StatefulSet (its volume at /var/lib/etcd)
#: the CronJob's own tool: etcd 3.4 (Debian's) has no etcdutl, and 3.5's etcdctl still has ``snapshot
#: status``/``restore`` (deprecated there in favour of etcdutl), so etcdctl works with both images
ETCDCTL = "/usr/local/bin/etcdctl"
MANUAL_ANNOTATION = "cronjob.kubernetes.io/instantiate"

_WROTE = re.compile(r"^(etcd|postgres)-backup: wrote (/backups/[A-Za-z0-9._-]+)\s*$", re.M)
_TOC_DATA = re.compile(r"^\d+; \d+ \d+ TABLE DATA (\S+) (\S+) ", re.M)


def job_from_cronjob(cronjob: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The Job ``kubectl create job NAME --from=cronjob/CJ`` creates: the jobTemplate's metadata and
    spec, the ``cronjob.kubernetes.io/instantiate: manual`` annotation, and an owner reference to the
    CronJob (so deleting the CronJob deletes it, as for scheduled runs)."""
    tmpl = cronjob["spec"]["jobTemplate"]
    meta = cronjob["metadata"]
    tmeta = tmpl.get("metadata") or {}
    job: dict[str, Any] = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": name,
            "labels": dict(tmeta.get("labels") or {}),
            "annotations": {**(tmeta.get("annotations") or {}), MANUAL_ANNOTATION: "manual"},
        },
        "spec": copy.deepcopy(tmpl["spec"]),
    }
    if meta.get("uid"):
        job["metadata"]["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "CronJob", "name": meta["name"],
                                               "uid": meta["uid"], "controller": True}]
    if meta.get("namespace"):
        job["metadata"]["namespace"] = meta["namespace"]
    return job


def _container(pod: Mapping[str, Any], name: str) -> dict[str, Any]:
    for c in list(pod.get("initContainers") or []) + list(pod.get("containers") or []):
        if c.get("name") == name:
            return copy.deepcopy(dict(c))
    raise ValueError(f"the backup CronJob's pod has no container {name!r}")


def derived_job(cronjob: Mapping[str, Any], name: str, steps: Sequence[tuple[str, str, list[str]]],
                extra_volumes: Sequence[tuple[Mapping[str, Any], str]] = (), backoff_limit: int = 0,
                purpose: str = "") -> dict[str, Any]:
    """A one-off Job with the CronJob's pod identity (labels, service account, security context,
    volumes) running ``steps`` instead of its own containers: each ``(name, template container,
    command)`` copies that container (image, security context, env, mounts) with a new command; every
    step but the last is an init container (they run in order, each must succeed). ``extra_volumes``:
    ``(volume, mountPath)`` pairs mounted into every step. No retries by default: a restore step that
    failed once is looked at, not repeated on a half-restored target."""
    if not steps:
        raise ValueError("a derived Job needs at least one step")
    job = job_from_cronjob(cronjob, name)
    job["metadata"].pop("ownerReferences", None)  # not a run of the CronJob: it must not count in its history
    job["metadata"]["annotations"].pop(MANUAL_ANNOTATION, None)
    if purpose:
        job["metadata"]["annotations"]["goverse-harness/purpose"] = purpose
    spec = job["spec"]
    spec["backoffLimit"] = backoff_limit
    pod = spec["template"]["spec"]
    built = []
    for step_name, tmpl_name, command in steps:
        c = _container(pod, tmpl_name)
        c["name"] = step_name
        c["command"] = list(command)
        c.pop("args", None)
        for vol, path in extra_volumes:
            c.setdefault("volumeMounts", []).append({"name": vol["name"], "mountPath": path})
        built.append(c)
    pod["initContainers"] = built[:-1]
    if not pod["initContainers"]:
        del pod["initContainers"]
    pod["containers"] = built[-1:]
    pod["volumes"] = list(pod.get("volumes") or []) + [copy.deepcopy(dict(v)) for v, _ in extra_volumes]
    return job


def verify_etcd_job(cronjob: Mapping[str, Any], name: str, snapshot: str) -> dict[str, Any]:
    """``etcdctl snapshot status -w json`` of ``snapshot`` on the backup volume (hash, revision, keys)."""
    return derived_job(cronjob, name, [("status", _TOOL_CONTAINER["etcd"],
                                        [ETCDCTL, "snapshot", "status", snapshot, "-w", "json"])],
                       purpose="verify-backup")


def verify_postgres_job(cronjob: Mapping[str, Any], name: str, dump: str) -> dict[str, Any]:
    """``pg_restore --list`` of ``dump`` on the backup volume (its table of contents)."""
    return derived_job(cronjob, name, [("list", _TOOL_CONTAINER["postgres"], ["pg_restore", "--list", dump])],
                       purpose="verify-backup")


def restore_postgres_job(cronjob: Mapping[str, Any], name: str, dump: str, database: str = "goverse",
                         host: str = "goverse-postgres", port: int = 5432) -> dict[str, Any]:
    """docs/runbooks/restore.md §2 as a Job: ``pg_restore --clean --if-exists --single-transaction``
    of ``dump`` into PostgreSQL, as the application user (password read from the mounted Secret into
    ``PGPASSWORD`` inside the shell, never on a command line). ``--clean --if-exists`` makes the same
    Job right for a database that still has the tables (a bad deploy) and for an empty one (a lost
    volume: the dump brings the schema)."""
    script = "\n".join([
        "set -eu",
        'PGPASSWORD="$(cat /etc/goverse-secrets/postgres-password)"; export PGPASSWORD',
        f'pg_restore --host={shlex.quote(host)} --port={int(port)} --username="$PGUSER" '
        f"--dbname={shlex.quote(database)} --clean --if-exists --single-transaction --exit-on-error "
        f"{shlex.quote(dump)}",
        f"echo postgres-restore: restored {shlex.quote(dump)}",
    ])
    return derived_job(cronjob, name, [("pg-restore", _TOOL_CONTAINER["postgres"], ["sh", "-c", script])],
                       purpose="restore")


def etcd_initial_cluster(namespace: str, members: int) -> str:
    return ",".join(f"goverse-etcd-{i}=http://goverse-etcd-{i}.goverse-etcd-headless.{namespace}.svc:2380"
                    for i in range(members))


def restore_etcd_job(cronjob: Mapping[str, Any], name: str, snapshot: str, namespace: str, members: int,
                     ordinal: int) -> dict[str, Any]:
    """docs/runbooks/restore.md §3 as a Job for member ``ordinal``: with the member's data volume
    (``data-goverse-etcd-N``) mounted at /var/lib/etcd, empty its data directory (a shell step: the
    etcd image has none) and ``etcdctl snapshot restore`` the snapshot into it with the member's name,
    peer URL, the cluster's token and initial cluster — what the StatefulSet's pods use, so the member
    starts on it as the same cluster. Run with the etcd StatefulSet scaled to 0."""
    if not 0 <= ordinal < members:
        raise ValueError(f"etcd member ordinal {ordinal} outside 0..{members - 1}")
    member = f"goverse-etcd-{ordinal}"
    data = {"name": "etcd-data", "persistentVolumeClaim": {"claimName": f"data-{member}"}}
    restore = [ETCDCTL, "snapshot", "restore", snapshot, "--name", member,
               "--initial-cluster", etcd_initial_cluster(namespace, members),
               "--initial-cluster-token", f"goverse-etcd-{namespace}",
               "--initial-advertise-peer-urls", f"http://{member}.goverse-etcd-headless.{namespace}.svc:2380",
               "--data-dir", ETCD_DATA_DIR]
    return derived_job(cronjob, name, [("empty-data-dir", _SHELL_CONTAINER, ["rm", "-rf", ETCD_DATA_DIR]),
                                       ("snapshot-restore", _TOOL_CONTAINER["etcd"], restore)],
                       extra_volumes=[(data, "/var/lib/etcd")], purpose="restore")


def pvc_from_claim_template(statefulset: Mapping[str, Any], ordinal: int, template: str = "data") -> dict[str, Any]:
    """The PersistentVolumeClaim the StatefulSet controller would create for pod ``ordinal`` (named
    ``<template>-<sts>-<ordinal>``; the controller adopts an existing claim of that name). Made ahead
    of the pod so a restore Job can fill it before the member starts."""
    sts_name = statefulset["metadata"]["name"]
    for t in statefulset["spec"].get("volumeClaimTemplates") or []:
        if t["metadata"]["name"] == template:
            labels = dict(t["metadata"].get("labels") or {})
            labels.update(statefulset["spec"]["selector"].get("matchLabels") or {})
            return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": f"{template}-{sts_name}-{ordinal}", "labels": labels},
                    "spec": copy.deepcopy(t["spec"])}
    raise ValueError(f"StatefulSet {sts_name} has no volumeClaimTemplate {template!r}")


def written_file(log_text: str, component: str) -> str:
    """The file a backup Job wrote, from its ``<component>-backup: wrote /backups/...`` log line."""
    found = [m.group(2) for m in _WROTE.finditer(log_text) if m.group(1) == component]
    if not found:
        tail = log_text.strip().splitlines()[-3:]
        raise ValueError(f"the {component} backup Job's log names no written file (last lines: {tail})")
    return found[-1]


def snapshot_status(text: str) -> dict[str, int]:
    """``etcdctl snapshot status -w json``: ``{"hash", "revision", "totalKey", "totalSize"}``; a
    snapshot with no key is refused (an etcd the stack used holds at least its shard map)."""
    try:
        got = json.loads(text.strip().splitlines()[-1])
        out = {k: int(got[k]) for k in ("hash", "revision", "totalKey", "totalSize")}
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"not an etcdctl snapshot status: {text.strip()[:200]!r}") from exc
    if out["totalKey"] < 1:
        raise ValueError(f"the snapshot holds no key: {out}")
    return out


def dump_tables(text: str) -> list[str]:
    """Tables whose data a ``pg_restore --list`` table of contents holds (``schema.table``)."""
    return sorted(f"{schema}.{table}" for schema, table in _TOC_DATA.findall(text))


def listed_size(log_text: str, path: str) -> int | None:
    """The size of ``path`` in the ``ls -l /backups`` a backup Job prints after writing (None if absent)."""
    base = path.rsplit("/", 1)[-1]
    for line in log_text.splitlines():
        fields = line.split()
        if len(fields) >= 9 and fields[-1] == base and fields[0].startswith("-") and fields[4].isdigit():
            return int(fields[4])
    return None
