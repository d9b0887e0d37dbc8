"""Benchmark: is locust (our locustfile, master + one worker per core) the bottleneck? Its achieved
req/s against ``wrk`` (C, epoll; Debian package) on the same gate endpoint of the same local stack.

Why: a load report is only about the stack if the generator could have offered more. wrk is about as
cheap a client as exists; if locust reaches at least half of what wrk reaches on the same endpoint
(the issue's bar), the stack — not Python — limits the numbers. Both run closed-loop with the same
concurrency (``--connections`` wrk connections = locust users with no think time), both POST the same
``Counter.Get`` calls over the same key space, on the same cores as the stack (as in CI). Figures are
printed, never asserted (wall-clock numbers on a shared 2-core VM are noisy).

    python benchmarks/bench_locust_vs_wrk.py [--seconds 10] [--connections 64] [--keys 100] [--rounds 2]
                                             [--workers N] [--json out.json]

Each round runs wrk, then locust (alternating order between rounds to cancel drift); locust's rate is
counted from its raw samples after a warm-up, wrk's from its own summary. Generator CPU is the tool's
CPU seconds per wall second (1.0 = one core busy), read with psutil.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from harness import wire
from harness.checkers.latency import nearest_rank
from harness.load.generator import GeneratorSpec, LocustGenerator, default_workers
from harness.load.samples import read_samples
from harness.platforms.base import StackSpec
from harness.platforms.local.deploy import LocalPlatform

LUA = """
local body = '{"request":"%s"}'
local keys = %d
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = body
request = function()
  return wrk.format(nil, "/api/v1/objects/call/Counter/bench-ctr-" .. math.random(0, keys - 1) .. "/Get")
end
"""


class CpuMeter:
    """CPU seconds used by a set of process trees (sampled every 0.2 s so short-lived children count)."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)
        self._th.start()

    def _sample(self) -> None:
        for r in self.roots:
            try:
                procs = [psutil.Process(r), *psutil.Process(r).children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for p in procs:
                try:
                    t = p.cpu_times()
                    self.seen[p.pid] = t.user + t.system
                except psutil.NoSuchProcess:
                    continue

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.2)

    def stop(self) -> float:
        self._sample()
        self._stop.set()
        self._th.join()
        return sum(self.seen.values())


def run_wrk(url: str, seconds: float, connections: int, keys: int, threads: int) -> dict[str, Any]:
    body = wire.pack(wire.new("counter.GetRequest"))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA % (body, keys))
        script = f.name
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--latency", "-s", script, url]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    meter = CpuMeter([proc.pid])
    out, _ = proc.communicate(timeout=seconds + 30)
    wall = time.monotonic() - t0
    cpu = meter.stop()
    Path(script).unlink(missing_ok=True)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    return {"tool": "wrk", "rps": rps, "p50": lat.get("50"), "p99": lat.get("99"), "cpu_cores": cpu / wall,
            "errors": int(non2xx.group(1)) if non2xx else 0, "raw": out}


def run_locust(gates: dict[str, str], seconds: float, connections: int, keys: int, workers: int,
               warmup: float) -> dict[str, Any]:
    d = Path(tempfile.mkdtemp(prefix="gvh-bench-locust-"))
    # no think time: a per-user rate far above what one request per round trip allows
    user_rate = 10_000.0
    spec = GeneratorSpec(gates=gates, shape=f"steady:rate={connections * user_rate:g},duration={seconds + warmup:g}",
                         mix="read:1", keys=keys, prefix="bench", user_rate=user_rate, workers=workers)
    gen = LocustGenerator(spec, d)
    try:
        gen.start()
        meter = CpuMeter([p.pid for p in gen.processes if p.pid])
        t0 = time.monotonic()
        gen.wait(seconds + warmup + 30)
        wall = time.monotonic() - t0
        cpu = meter.stop()
    finally:
        gen.stop()
    assert gen.t0_wall is not None
    a, b = gen.t0_wall + warmup, gen.t0_wall + warmup + seconds
    ok_ms, errors = [], 0
    for s in read_samples(gen.samples_dir):
        if a <= s.start < b:
            if s.type == "ok":
                ok_ms.append(s.duration * 1000)
            else:
                errors += 1
    ok_ms.sort()
    shutil.rmtree(d, ignore_errors=True)
    return {"tool": f"locust ({workers} workers)" if workers else "locust (1 process)",
            "rps": (len(ok_ms) + errors) / seconds, "ok_rps": len(ok_ms) / seconds,
            "p50": f"{nearest_rank(ok_ms, 50):.2f}ms" if ok_ms else None,
            "p99": f"{nearest_rank(ok_ms, 99):.2f}ms" if ok_ms else None,
            "cpu_cores": cpu / wall, "errors": errors}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0, help="locust: seconds excluded at the start")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections = locust users")
    ap.add_argument("--keys", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=default_workers(), help="locust workers (0 = one process)")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gvh-bench-stack-") as tmp:
        dep = LocalPlatform().deploy(StackSpec(gates=1), Path(tmp))
        try:
            gates = dep.gate_urls()
            url = next(iter(gates.values()))
            print(f"stack: {dep.spec.nodes} nodes, 1 gate at {url}; {psutil.cpu_count()} cores shared with the "
                  f"generators; {args.connections} connections/users, {args.keys} keys, Counter.Get, "
                  f"{args.seconds:g} s per run")
            results: list[dict[str, Any]] = []
            for r in range(args.rounds):
                order = ["wrk", "locust"] if r % 2 == 0 else ["locust", "wrk"]
                for tool in order:
                    if tool == "wrk":
                        res = run_wrk(url, args.seconds, args.connections, args.keys, args.wrk_threads)
                    else:
                        res = run_locust(gates, args.seconds, args.connections, args.keys, args.workers,
                                         args.warmup)
                    res["round"] = r + 1
                    results.append(res)
                    print(f"  round {r + 1} {res['tool']:<22} {res['rps']:9.1f} req/s   p50 {res['p50']:>9}   "
                          f"p99 {res['p99']:>9}   errors {res['errors']:5d}   "
                          f"generator CPU {res['cpu_cores']:.2f} cores")
        finally:
            dep.teardown()
    wrk_rps = statistics.median(x["rps"] for x in results if x["tool"] == "wrk")
    loc_rps = statistics.median(x["rps"] for x in results if x["tool"] != "wrk")
    loc_cpu = statistics.median(x["cpu_cores"] for x in results if x["tool"] != "wrk")
    wrk_cpu = statistics.median(x["cpu_cores"] for x in results if x["tool"] == "wrk")
    ratio = loc_rps / wrk_rps if wrk_rps else float("nan")
    print(f"median: wrk {wrk_rps:.1f} req/s ({wrk_cpu:.2f} cores), locust {loc_rps:.1f} req/s ({loc_cpu:.2f} cores)")
    print(f"locust / wrk = {ratio:.2f}  ({'meets' if ratio >= 0.5 else 'BELOW'} the 0.5 bar); "
          f"locust cost {loc_cpu / max(loc_rps, 1e-9) * 1000:.2f} ms CPU per request "
          f"≈ {loc_rps / max(loc_cpu, 1e-9):.0f} req/s per generator core at this load")
    if args.json:
        for x in results:
            x.pop("raw", None)
        args.json.write_text(json.dumps({"results": results, "wrk_rps": wrk_rps, "locust_rps": loc_rps,
                                         "ratio": ratio, "args": {k: str(v) for k, v in vars(args).items()}},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
