"""Throughput and latency of the reference stack: 3 nodes + 1 gate, Counter.Increment through the gate.

Two phases against one freshly started cluster (real etcd, PostgreSQL, processes):
1. closed loop: ``--concurrency`` clients call as fast as they can for ``--seconds`` -> max calls/s;
2. open loop at ``--rate`` calls/s (default: half the measured maximum) -> p50/p99 latency, measured
   from each call's *scheduled* start so a slow server cannot hide its queueing (no coordinated
   omission).

Usage: python benchmarks/bench_refstack.py [--seconds 10] [--concurrency 32] [--rate R] [--keys 1000]
       [--json out.json]
Every increment is write-through (acknowledged after PostgreSQL committed it), so this measures the
conforming stack. The load generator runs in this process on the same cores as the stack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from harness import wire
from harness.platforms.local.services import EtcdCluster, PostgresServer
from harness.refstack.localcluster import LocalCluster, fresh_database


def percentile(samples: list[float], p: float) -> float:
    """Nearest-rank percentile of raw samples (no bucketing)."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def summary(name: str, latencies: list[float], errors: int, seconds: float) -> dict[str, Any]:
    return {"phase": name, "calls": len(latencies), "errors": errors, "seconds": round(seconds, 2),
            "calls_per_s": round(len(latencies) / seconds, 1) if seconds else 0.0,
            "p50_ms": round(percentile(latencies, 50) * 1000, 2), "p99_ms": round(percentile(latencies, 99) * 1000, 2),
            "max_ms": round(max(latencies, default=float("nan")) * 1000, 2)}


async def closed_loop(url: str, keys: list[str], concurrency: int, seconds: float) -> dict[str, Any]:
    body = json.dumps({"request": wire.pack(wire.new("counter.IncrementRequest", amount=1))})
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        n = i
        while time.perf_counter() < stop_at:
            key = keys[n % len(keys)]
            n += concurrency
            t0 = time.perf_counter()
            async with session.post(f"{url}/api/v1/objects/call/Counter/{key}/Increment", data=body,
                                    headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
                if resp.status == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(i, session) for i in range(concurrency)))
    return summary("closed-loop", latencies, errors, time.perf_counter() - t0)


async def open_loop(url: str, keys: list[str], rate: float, seconds: float) -> dict[str, Any]:
    body = json.dumps({"request": wire.pack(wire.new("counter.IncrementRequest", amount=1))})
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)
    interval = 1.0 / rate

    async def one(n: int, scheduled: float, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        key = keys[n % len(keys)]
        async with session.post(f"{url}/api/v1/objects/call/Counter/{key}/Increment", data=body,
                                headers={"Content-Type": "application/json"}) as resp:
            await resp.read()
            if resp.status == 200:
                latencies.append(time.perf_counter() - scheduled)
            else:
                errors += 1

    tasks = []
    start = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        for n in range(total):
            scheduled = start + n * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # sleep-ok: pacing an open-loop load generator is about time
            tasks.append(asyncio.ensure_future(one(n, scheduled, session)))
        await asyncio.gather(*tasks)
    return summary(f"open-loop@{rate:g}/s", latencies, errors, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rate", type=float, default=None, help="open-loop rate; default half the closed-loop max")
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    for name, value in (("--seconds", args.seconds), ("--concurrency", args.concurrency), ("--keys", args.keys)):
        if value <= 0:
            ap.error(f"{name} must be > 0, got {value}")

    workdir = Path(tempfile.mkdtemp(prefix="gvh-bench-"))
    try:
        with EtcdCluster(workdir / "etcd") as etcd, PostgresServer(workdir / "pg") as pg:
            cluster = LocalCluster(workdir / "cluster", etcd.client_urls, fresh_database(pg), nodes=args.nodes,
                                   gates=1, inspector=False, shards=64, log_format="json")
            try:
                took = cluster.start(timeout=60)
                url = cluster.gates()[0].api
                keys = [f"bench-{i}" for i in range(args.keys)]
                asyncio.run(closed_loop(url, keys, 8, 2.0))  # warm-up: activate objects, fill pools
                results = [asyncio.run(closed_loop(url, keys, args.concurrency, args.seconds))]
                rate = args.rate or max(1.0, results[0]["calls_per_s"] / 2)
                results.append(asyncio.run(open_loop(url, keys, rate, args.seconds)))
            finally:
                cluster.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    load = os.getloadavg()
    print(f"reference stack: {args.nodes} nodes + 1 gate, 64 shards, {args.keys} counters; "
          f"cluster ready in {took:.1f}s; {os.cpu_count()} CPUs, load average {load[0]:.1f}")
    for r in results:
        print(f"{r['phase']:>22}: {r['calls_per_s']:8.1f} calls/s  p50 {r['p50_ms']:7.2f} ms  "
              f"p99 {r['p99_ms']:7.2f} ms  max {r['max_ms']:8.2f} ms  errors {r['errors']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "loadavg": load}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
