"""Pure judges for seed §2.5 (metrics) and §2.6 (logs), and the §5.3 "no secret in logs" check.

Why parse the exposition format instead of grepping names: "the metric exists" is not enough — the
seed's metrics must *move* (a method-call counter that counts nothing alerts on nothing) and agree with
the cluster (shard gauges summing to the shard count). Log lines are judged one by one, because one
unparseable line breaks a log pipeline's query as surely as a thousand do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from harness.conformance.model import Judgement, failed, passed, unknown

#: key aliases accepted for the three fields (zap: ts/msg, logrus and slog: time/msg, ECS: @timestamp)
LEVEL_KEYS = ("level", "severity", "lvl")
TIME_KEYS = ("time", "ts", "timestamp", "@timestamp")
MESSAGE_KEYS = ("message", "msg")
LEVELS = {"trace": 5, "debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "fatal": 50,
          "critical": 50, "panic": 50}
#: a line the process supervisor writes into the log file (ManagedProcess), not the process itself
SUPERVISOR_LINE = re.compile(r"^--- \S+: ")
MEMORY_METRICS = ("process_resident_memory_bytes", "go_memstats_alloc_bytes", "go_memstats_sys_bytes")
CONCURRENCY_METRICS = ("go_goroutines", "go_threads", "process_threads", "python_threads",
                       "process_num_threads", "python_asyncio_tasks")

Samples = list[tuple[str, dict[str, str], float]]


def parse_metrics(text: str) -> Samples:
    """Exposition text -> ``[(sample name, labels, value)]`` (counters keep their ``_total`` name)."""
    out: Samples = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.append((s.name, dict(s.labels), float(s.value)))
    return out


def metric_sum(samples: Samples, name: str, **labels: str) -> float | None:
    hits = [v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items())]
    return sum(hits) if hits else None


def names(samples: Samples) -> set[str]:
    return {n for n, _, _ in samples}


def judge_method_calls(before: float | None, after: float | None, acknowledged: int) -> Judgement:
    data = {"before": before, "after": after, "acknowledged": acknowledged}
    if acknowledged <= 0:
        return unknown("no call was acknowledged, so nothing should have been counted", **data)
    if after is None:
        return failed("no goverse_method_calls_total series on any node after the load", **data)
    delta = after - (before or 0.0)
    if delta < acknowledged:
        return failed(f"goverse_method_calls_total rose by {delta:g} for {acknowledged} acknowledged calls", **data)
    return passed(f"goverse_method_calls_total rose by {delta:g} for {acknowledged} acknowledged calls", **data)


def judge_shard_gauges(per_instance: Mapping[str, Samples], shards: int) -> Judgement:
    """On every node, goverse_shards_total summed over its ``node`` labels equals the shard count."""
    if not per_instance:
        return unknown("no node metrics were read")
    sums = {name: metric_sum(s, "goverse_shards_total") for name, s in sorted(per_instance.items())}
    bad = {k: v for k, v in sums.items() if v is None or round(v) != shards}
    listing = ", ".join(f"{k}={'missing' if v is None else f'{v:g}'}" for k, v in sums.items())
    if bad:
        return failed(f"sum(goverse_shards_total) != {shards} on {', '.join(bad)} ({listing})", sums=sums)
    return passed(f"sum(goverse_shards_total) == {shards} on every node ({listing})", sums=sums)


def judge_process_metrics(per_instance: Mapping[str, Samples]) -> Judgement:
    if not per_instance:
        return unknown("no metrics were read")
    problems, seen = [], {}
    for name, samples in sorted(per_instance.items()):
        have = names(samples)
        mem = [m for m in MEMORY_METRICS if m in have]
        conc = [m for m in CONCURRENCY_METRICS if m in have]
        seen[name] = {"memory": mem, "concurrency": conc}
        if not mem:
            problems.append(f"{name}: no memory metric (one of {', '.join(MEMORY_METRICS)})")
        if not conc:
            problems.append(f"{name}: no goroutine/thread metric (one of {', '.join(CONCURRENCY_METRICS)})")
    if problems:
        return failed("; ".join(problems), seen=seen)
    first = next(iter(seen.values()))
    return passed(f"memory ({', '.join(first['memory'])}) and concurrency ({', '.join(first['concurrency'])}) "
                  f"metrics on {', '.join(seen)}", seen=seen)


def judge_pod_info(samples: Samples | None, pod_name: str, instance: str) -> Judgement:
    """goverse_pod_info{pod_name, namespace, node_name} == 1 with pod_name from POD_NAME."""
    if samples is None:
        return unknown(f"the metrics of {instance} could not be read")
    rows = [(lab, v) for n, lab, v in samples if n == "goverse_pod_info"]
    if not rows:
        return failed(f"{instance} (POD_NAME={pod_name}) exposes no goverse_pod_info")
    labels, value = rows[0]
    missing = [k for k in ("pod_name", "namespace", "node_name") if k not in labels]
    if missing or labels.get("pod_name") != pod_name or value != 1:
        return failed(f"{instance}: goverse_pod_info{labels} = {value:g}; want pod_name={pod_name!r}, labels "
                      "pod_name, namespace, node_name, value 1", labels=labels)
    return passed(f"{instance}: goverse_pod_info{labels} = 1", labels=labels)


def judge_pod_info_elsewhere(per_node: Mapping[str, Samples | None], why: str) -> Judgement:
    """2.5-pod-info-metric when the POD_NAME node could not run (``why``): the metric may still be
    judged absent. If none of the stack's own nodes exposes any ``goverse_pod_info`` series, the
    requirement fails whatever POD_NAME would have done (the metric family does not exist); if some
    do, their pod_name cannot be tied to POD_NAME, so it stays unknown."""
    read = {n: s for n, s in per_node.items() if s}
    if not read:
        return unknown(f"{why}, and no node's metrics could be read either")
    having = sorted(n for n, samples in read.items() if any(name == "goverse_pod_info" for name, _, _ in samples))
    if having:
        return unknown(f"{why}; {', '.join(having)} expose goverse_pod_info, but were not started from POD_NAME, "
                       "so its pod_name cannot be checked", nodes=having)
    return failed(f"none of the {len(read)} running nodes ({', '.join(sorted(read))}) exposes goverse_pod_info at "
                  f"all ({why})", nodes=sorted(read))


def judge_readiness_metrics(per_instance: Mapping[str, Samples], ready: Mapping[str, bool]) -> Judgement:
    """goverse_k8s_ready agrees with /ready, goverse_k8s_startup_time_seconds is a positive number."""
    if not per_instance:
        return unknown("no metrics were read")
    problems, facts = [], []
    for name, samples in sorted(per_instance.items()):
        r = metric_sum(samples, "goverse_k8s_ready")
        st = metric_sum(samples, "goverse_k8s_startup_time_seconds")
        want = 1.0 if ready.get(name) else 0.0
        if r is None:
            problems.append(f"{name}: no goverse_k8s_ready")
        elif r != want:
            problems.append(f"{name}: goverse_k8s_ready {r:g} but /ready says {'200' if want else 'not ready'}")
        if st is None:
            problems.append(f"{name}: no goverse_k8s_startup_time_seconds")
        elif st <= 0:
            problems.append(f"{name}: goverse_k8s_startup_time_seconds {st:g}")
        if r is not None and st is not None:
            facts.append(f"{name} ready={r:g} startup={st:.2f}s")
    if problems:
        return failed("; ".join(problems))
    return passed("; ".join(facts))


# ------------------------------------------------------------------------------------------ logs
@dataclass(frozen=True)
class LogRecord:
    level: str | None
    ok: bool
    problem: str = ""


def _field(obj: Mapping[str, object], keys: Sequence[str]) -> object | None:
    return next((obj[k] for k in keys if k in obj), None)


def parse_line(line: str) -> LogRecord:
    try:
        obj = json.loads(line)
    except ValueError:
        return LogRecord(None, False, "not JSON")
    if not isinstance(obj, dict):
        return LogRecord(None, False, "JSON but not an object")
    level = _field(obj, LEVEL_KEYS)
    missing = [what for what, keys in (("level", LEVEL_KEYS), ("time", TIME_KEYS), ("message", MESSAGE_KEYS))
               if _field(obj, keys) in (None, "")]
    if missing:
        return LogRecord(str(level).lower() if level else None, False, "no " + ", ".join(missing))
    return LogRecord(str(level).lower(), True)


def process_lines(text: str) -> list[str]:
    """The lines a process wrote (blank lines and the supervisor's header lines removed)."""
    return [ln for ln in text.splitlines() if ln.strip() and not SUPERVISOR_LINE.match(ln)]


def judge_json_logs(logs: Mapping[str, str]) -> Judgement:
    if not logs:
        return unknown("no log files to read")
    total, bad = 0, []
    for name, text in sorted(logs.items()):
        for i, line in enumerate(process_lines(text), 1):
            total += 1
            rec = parse_line(line)
            if not rec.ok:
                bad.append(f"{name} line {i}: {rec.problem}: {line[:120]!r}")
    data = {"lines": total, "bad": len(bad), "files": sorted(logs)}
    if total == 0:
        return unknown(f"the {len(logs)} log files hold no lines", **data)
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        return failed(f"{len(bad)} of {total} lines are not JSON objects with level, time and message: "
                      + "; ".join(bad[:3]) + more, **data)
    return passed(f"all {total} lines of {len(logs)} logs ({', '.join(sorted(logs))}) are JSON with level, "
                  "time and message", **data)


#: a level in a text log line: ``[2026-12-03 12:31:30.159] [WARN] [Cluster] …`` (Goverse's logger) or
#: logfmt ``level=info``; only for counting levels (2.6-log-level), never for 2.6-json-logs
TEXT_LEVEL = re.compile(r"^(?:\[[^\]]*\]\s*)?\[(?P<b>[A-Za-z]+)\]|\blevel=(?P<k>[A-Za-z]+)\b")


def line_level(line: str) -> str | None:
    """The level of one log line, JSON or text; None when it names none that LEVELS knows."""
    rec = parse_line(line)
    level = rec.level
    if level is None:
        m = TEXT_LEVEL.search(line)
        level = (m.group("b") or m.group("k")).lower() if m else None
    return level if level in LEVELS else None


def level_counts(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in process_lines(text):
        key = line_level(line) or "unparsed"
        out[key] = out.get(key, 0) + 1
    return out


#: a verbose run that logged at least this many records, none below the quiet level, shows the variable
#: changed nothing (a process that logs this much at warn+ and never at info was not set to info)
LOG_LEVEL_MIN_RECORDS = 20


def judge_log_level(quiet: str, quiet_level: str, verbose: str, verbose_level: str) -> Judgement:
    """``quiet`` (logged at ``quiet_level``) has no record below it; ``verbose`` (at ``verbose_level``,
    lower) has records below ``quiet_level`` — so the variable, not the code, decided what was logged."""
    q, v = level_counts(quiet), level_counts(verbose)
    threshold = LEVELS[quiet_level]
    below_q = {k: n for k, n in q.items() if k in LEVELS and LEVELS[k] < threshold}
    below_v = {k: n for k, n in v.items() if k in LEVELS and LEVELS[k] < threshold}
    data = {"quiet": q, "verbose": v, "quiet_level": quiet_level, "verbose_level": verbose_level}
    if below_q:
        return failed(f"LOG_LEVEL={quiet_level} still logged {below_q}", **data)
    if not below_v:
        leveled = sum(n for k, n in v.items() if k in LEVELS)
        if leveled >= LOG_LEVEL_MIN_RECORDS:
            return failed(f"LOG_LEVEL={verbose_level} logged {leveled} records, none below {quiet_level} ({v}), "
                          f"like LOG_LEVEL={quiet_level} ({q or 'nothing'}): the variable changed nothing that "
                          "was logged", **data)
        return unknown(f"LOG_LEVEL={verbose_level} logged nothing below {quiet_level} either ({v}) and too few "
                       f"records (< {LOG_LEVEL_MIN_RECORDS}) to tell whether LOG_LEVEL changes anything", **data)
    return passed(f"LOG_LEVEL={verbose_level}: {v}; LOG_LEVEL={quiet_level}: {q or 'nothing'} — nothing below "
                  f"{quiet_level}", **data)


def judge_no_secret(hits: Iterable[str], scanned: int, what: str = "the PostgreSQL password") -> Judgement:
    hits = sorted(hits)
    if scanned == 0:
        return unknown("no files were scanned")
    if hits:
        return failed(f"{what} appears in {len(hits)} of {scanned} files: {', '.join(hits[:5])}", files=hits,
                      scanned=scanned)
    return passed(f"{what} appears in none of {scanned} files", scanned=scanned)
