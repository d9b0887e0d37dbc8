"""Checkers of operator actions (scale, rolling restarts and upgrades, config and secret roll-outs,
backup and restore), over the windows and samples the operations record into the history.

Why here and not beside the operations: a checker reads only the history, so it runs offline on any
platform's history and is unit-tested on crafted histories (tests/checkers/test_checkers_operations.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.capabilities import STORED_READ_GAP_S, Capabilities, stored_state_reason
from harness.checkers.bounds import KeyBounds, final_reads, increment_bounds, violations
from harness.checkers.ops import FINAL_FS, as_int, completed_op_ids
from harness.checkers.verdict import Check, Checker, Verdict, checker_factory, examples, named
from harness.history import Event, FaultWindow, History
from harness.operation_kinds import CONFIG_F, RESTORED_F, ROLL_KINDS, SECRET_F, VERSIONS_F


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


def counter_bounds(history: History, t_point: float, t_end: float) -> dict[str, KeyBounds]:
    """Per counter key: ``lo`` = Σ increments acknowledged (ok) before ``t_point``; ``hi`` = Σ ok or
    indeterminate increments invoked before ``t_end``. Definitely failed increments never count."""
    if t_end < t_point:
        raise ValueError(f"backup ended ({t_end}) before its point ({t_point})")
    return increment_bounds(history, acked=lambda op: op.t_complete < t_point, maybe=lambda op: op.t_invoke < t_end)


restored_violations = violations  # keys whose restored value is outside its bounds (harness.checkers.bounds)


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
    window's stop record (``converged_s``; ``None`` = not converged before the operation gave up).

    ``budget_s`` is the stack's promise, from its timers. What the platform spent before the stack could
    act is added to that step's budget and named in the verdict, as the operation recorded it:
    ``stop_delay_s`` (leaving instances held before their SIGTERM, one after the other — on Kubernetes
    each pod's ``preStop`` sleep, 5 s per node in our manifests) and ``start_delay_s`` (until the slowest
    added instance's process was started — on Kubernetes scheduling, sandbox, network, container,
    measured from the container's ``startedAt``). Local steps record neither; the stack's share is
    judged the same everywhere."""
    name = "steps_converged_within"

    def run(history: History) -> Check:
        rows = _stop_results(history, kinds)
        if not rows:
            return Check(name, Verdict.UNKNOWN, f"no {'/'.join(kinds)} step recorded", {"budget_s": budget_s})
        steps = [{"id": ev.value.get("id"), "target": ev.value.get("target"), "converged_s": r.get("converged_s"),
                  "to": r.get("to"), "stop_delay_s": float(r.get("stop_delay_s") or 0.0),
                  "start_delay_s": float(r.get("start_delay_s") or 0.0)} for ev, r in rows]
        for s in steps:
            s["budget_s"] = round(budget_s + s["stop_delay_s"] + s["start_delay_s"], 3)
        bad = [s for s in steps if s["converged_s"] is None or s["converged_s"] > s["budget_s"]]
        data = {"budget_s": budget_s, "steps": steps}

        def one(s: dict[str, Any]) -> str:
            took = f"{s['converged_s']}s" if s["converged_s"] is not None else "never"
            parts = [f"+ {s['stop_delay_s']:g}s preStop before SIGTERM" if s["stop_delay_s"] else "",
                     f"+ {s['start_delay_s']:g}s until the platform started the process" if s["start_delay_s"] else ""]
            platform = ", ".join(p for p in parts if p)
            return f"→{s['to']}: {took}" + (f" (budget {s['budget_s']:g}s: {platform})" if platform else "")

        text = "; ".join(one(s) for s in steps)
        if bad:
            return Check(name, Verdict.FAIL, f"step convergence over the stack's budget {budget_s:g}s: {text}", data)
        return Check(name, Verdict.PASS, f"every step converged within the stack's {budget_s:g}s: {text}", data)

    return named(name, run)


def _last_sample(history: History, f: str) -> list[Event]:
    return [s for s in history.samples(f) if isinstance(s.value, dict)]


@checker_factory
def version_everywhere() -> Checker:
    """After each roll every running instance reports exactly the version it was rolled to in
    ``goverse_build_info`` (samples ``versions`` written by the rolling operations)."""
    name = "version_everywhere"

    def run(history: History) -> Check:
        caps = Capabilities.from_meta(history.meta)
        if caps is not None and not caps.build_version:
            return Check(name, Verdict.NOT_APPLICABLE,
                         f"stack {caps.stack} exports no build version (no goverse_build_info on /metrics): "
                         "which version an instance runs cannot be observed",
                         {"capability": "build_version", "declared": False})
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
def config_in_effect(value: str | None = None) -> Checker:
    """After a config roll the new value is in effect on every instance (sample ``config-in-effect``).
    ``value``: judge the last roll to that value (e.g. the update, when its undo rolled back after
    it); default the last roll."""
    name = "config_in_effect"

    def run(history: History) -> Check:
        samples = [dict(s.value) for s in _last_sample(history, CONFIG_F)
                   if value is None or s.value.get("value") == value]
        v = samples[-1] if samples else None
        if v is None:
            return Check(name, Verdict.UNKNOWN, "no config-in-effect sample recorded"
                         + (f" for value {value!r}" if value is not None else ""))
        insts: dict[str, Any] = v.get("instances") or {}
        # ok None: the instance's lines cannot tell (it logged nothing with a level since its restart)
        bad = [f"{n}: {r.get('why')}" for n, r in sorted(insts.items()) if r.get("ok") is False]
        undecided = [f"{n}: {r.get('why')}" for n, r in sorted(insts.items()) if r.get("ok") is None]
        data = dict(v)
        label = f"{v.get('key')}={v.get('value')}"
        if not insts:
            return Check(name, Verdict.UNKNOWN, f"{label}: no instance was verified", data)
        if bad:
            return Check(name, Verdict.FAIL, f"{label} not in effect on {len(bad)} of {len(insts)} instances: "
                         f"{examples(bad + undecided)}", data)
        if undecided:
            return Check(name, Verdict.UNKNOWN, f"{label}: {len(undecided)} of {len(insts)} instances cannot "
                         f"tell: {examples(undecided)}", data)
        return Check(name, Verdict.PASS, f"{label} in effect on all {len(insts)} instances", data)

    return named(name, run)


@checker_factory
def secret_rotated() -> Checker:
    """After a PostgreSQL password rotation: the old password is rejected, the new one accepted, and
    every running node holds a session opened with the new password after sessions opened with the old
    one were revoked (sample ``secret-rotation``; it never holds a secret)."""
    name = "secret_rotated"

    def run(history: History) -> Check:
        v = _latest(history, SECRET_F)
        if v is None:
            return Check(name, Verdict.UNKNOWN, "no secret-rotation sample recorded")
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


def _latest(history: History, f: str) -> dict[str, Any] | None:
    """The value of the last dict sample ``f`` (what the operation observed last), or None."""
    samples = _last_sample(history, f)
    return dict(samples[-1].value) if samples else None


def _restored_sample(history: History) -> dict[str, Any] | None:
    return _latest(history, RESTORED_F)


@checker_factory
def restored_matches_backup() -> Checker:
    """What a restore brought back equals what was acknowledged before the backup point: for every
    counter key, Σ increments acknowledged before the backup point ≤ restored value ≤ Σ increments
    invoked (and not definitely failed) before the backup finished. Reads sample ``restored``.

    A stack that saves periodically (capabilities ``persistence_interval_s`` > 0: Goverse) holds in its
    database — and so in any backup of it — what was acknowledged one save interval earlier: the lower
    bound is taken at the point minus the interval and the read gap (as for the stored state), and when
    the interval is too long to judge the stored state at all, the check is not applicable."""
    name = "restored_matches_backup"

    def run(history: History) -> Check:
        v = _restored_sample(history)
        if v is None:
            return Check(name, Verdict.UNKNOWN, "no restore recorded")
        t_point, t_end = float(v["backup_point"]), float(v["backup_end"])
        caps = Capabilities.from_meta(history.meta)
        lag = 0.0
        if caps is not None and caps.persistence_interval_s > 0:
            skip = stored_state_reason(caps)
            if skip is not None:
                return Check(name, Verdict.NOT_APPLICABLE, skip, {"capability": "persistence_interval_s"})
            lag = caps.persistence_interval_s + STORED_READ_GAP_S
        restored = {k: as_int(x) for k, x in (v.get("values") or {}).items()}
        bounds = counter_bounds(history, t_point - lag, t_end)
        if not bounds:
            return Check(name, Verdict.UNKNOWN, "no increment recorded: nothing to compare", {})
        bad = restored_violations(bounds, {k: restored.get(k) for k in bounds})
        judged = sum(1 for b in bounds.values() if b.lo > 0)
        data = {"backup_point": t_point, "backup_end": t_end, "keys": len(bounds), "violations": bad,
                "acknowledged_before_point": sum(b.lo for b in bounds.values()), "save_lag_s": lag}
        saved = f" (stack {caps.stack} saves every {caps.persistence_interval_s:g} s: acknowledged before " \
                f"{t_point - lag:.2f}s)" if caps is not None and lag else ""
        if bad:
            msgs = [f"key {r['key']}: restored {r['restored']} not in [{r['lo']}, {r['hi']}] ({r['problem']})"
                    for r in bad]
            return Check(name, Verdict.FAIL, f"{len(bad)} of {len(bounds)} keys differ from the backup{saved}: "
                         f"{examples(msgs)}", data)
        if not judged:
            return Check(name, Verdict.UNKNOWN, "no increment was acknowledged before the backup point", data)
        return Check(name, Verdict.PASS, f"all {len(bounds)} keys restored within [acknowledged before "
                     f"{t_point - lag:.2f}s, invoked before {t_end:.2f}s]{saved}", data)

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
        bounds = increment_bounds(history, base=base, only_counted=True,
                                  acked=lambda op: op.t_invoke >= t_data, maybe=lambda op: op.t_complete >= t_data)
        finals = final_reads(history)
        bad = violations(bounds, {k: finals.get(k) for k in bounds})
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
