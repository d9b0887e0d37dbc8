"""Measure what the TCP fault proxy costs and what its latency toxic adds.

Why: the proxy sits on node → PostgreSQL and gate → node links for the whole run, so its overhead is
part of every latency figure the harness reports. Run: ``python benchmarks/bench_faultproxy.py``.
Prints round-trip latency (small request/response, like an RPC) direct vs through the proxy, with a
latency toxic, and bulk throughput direct vs through the proxy.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time

from harness.platforms.local.faultproxy import FaultProxy, Latency


def echo_server() -> tuple[socket.socket, tuple[str, int]]:
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=pump, args=(c,), daemon=True).start()

    def pump(c: socket.socket) -> None:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with c:
            try:
                while d := c.recv(1 << 16):
                    c.sendall(d)
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[:2]


def rtts(addr: tuple[str, int], n: int, size: int = 64) -> list[float]:
    with socket.create_connection(addr) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        msg = b"q" * size
        out = []
        for _ in range(n):
            t = time.perf_counter()
            s.sendall(msg)
            got = 0
            while got < size:
                got += len(s.recv(size - got))
            out.append((time.perf_counter() - t) * 1e6)
        return out


def throughput(addr: tuple[str, int], total: int) -> float:
    """MB/s of an echo round trip of ``total`` bytes (sent and received concurrently)."""
    with socket.create_connection(addr) as s:
        chunk = b"b" * (1 << 16)
        t = time.perf_counter()

        def send() -> None:
            left = total
            while left > 0:
                s.sendall(chunk[: min(left, len(chunk))])
                left -= len(chunk)

        threading.Thread(target=send, daemon=True).start()
        got = 0
        while got < total:
            got += len(s.recv(1 << 16))
        return total / (time.perf_counter() - t) / 1e6


def summary(name: str, us: list[float]) -> str:
    q = statistics.quantiles(us, n=100)
    return f"{name:<34} p50 {q[49]:8.0f} µs   p99 {q[98]:8.0f} µs   max {max(us):8.0f} µs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rtts", type=int, default=2000)
    ap.add_argument("--mb", type=int, default=200)
    args = ap.parse_args()
    srv, upstream = echo_server()
    with FaultProxy() as fp:
        proxied = fp.add_link("bench", upstream)
        rtts(upstream, 100)
        rtts(proxied, 100)
        direct, through = rtts(upstream, args.rtts), rtts(proxied, args.rtts)
        print(summary("round trip, direct", direct))
        print(summary("round trip, through proxy", through))
        added = statistics.median(through) - statistics.median(direct)
        print(f"{'added by the proxy (median)':<34} {added:8.0f} µs")
        fp.set_toxic("bench", Latency(20))
        tox = rtts(proxied, 100)
        print(summary("round trip, latency toxic 20 ms", tox))
        print(f"{'  error vs 20 ms + proxy (median)':<34} "
              f"{statistics.median(tox) - 20_000 - statistics.median(through):8.0f} µs")
        fp.clear("bench")
        total = args.mb * 1_000_000
        print(f"{'throughput, direct':<34} {throughput(upstream, total):8.1f} MB/s")
        print(f"{'throughput, through proxy':<34} {throughput(proxied, total):8.1f} MB/s")
        fp.set_toxic("bench", Latency(20, direction="both"))
        print(f"{'throughput, proxy + 2x20 ms toxic':<34} {throughput(proxied, total // 4):8.1f} MB/s")
    srv.close()


if __name__ == "__main__":
    main()
