"""Soak: many concurrent clients drive every demo of a `txgallery serve` child process for minutes.

    .venv/bin/python bench/soak.py [--clients 64] [--minutes 10] [--warmup-minutes 2] [--port 7873] [--demo SLUG ...]

Starts the gallery on 127.0.0.1 (run it inside `unshare -n` like the tests), warms it up with the same clients and
mix for `--warmup-minutes` (so every model is loaded, every thread pool and allocator arena has seen the peak
concurrency, and Gradio's session store has filled to its `MAX_SESSIONS` bound), records the server's resident
memory (with its children), then runs the clients for `--minutes` and prints: failed requests (target: none),
p50/p95 per endpoint (with `ping`, the gallery's echo: the floor), throughput, the memory series, and the
memory growth after warm-up (target: < 10%).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import time

import httpx

from txgallery.loadgen import rss_probe, run_load, traffic_mix
from txgallery.plugin import ApiCall, discover_demos


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 900) -> None:
    """Poll the gallery until it answers (building every demo takes a while on a small machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the gallery exited with {process.returncode}")
        try:
            if httpx.get(url + "/config", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise SystemExit("the gallery did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--warmup-minutes", type=float, default=2)
    parser.add_argument("--port", type=int, default=7873)
    parser.add_argument("--demo", action="append", help="only these demos (default: all)")
    args = parser.parse_args()

    entries = [e for e in discover_demos(only=args.demo) if e.ok]
    # the gallery's echo endpoint, in the same mix: the HTTP + Gradio floor each endpoint's latency sits on
    mix = traffic_mix(entries) + [ApiCall("ping", ("hello",))]
    command = [sys.executable, "-m", "txgallery.cli", "serve", "--port", str(args.port)]
    for slug in args.demo or ():
        command += ["--demo", slug]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{args.port}"
    try:
        wait_until_up(url, server)
        memory = rss_probe(server.pid)
        warm = run_load(url, mix, clients=1, calls_per_client=len(mix), seed=1)  # loads every model once
        warm.results += run_load(url, mix, clients=args.clients, duration_s=args.warmup_minutes * 60, seed=2).results
        if warm.failures:
            print("warm-up failures:", *[f"{f.api_name}: {f.error}" for f in warm.failures[:5]], sep="\n  ")
        after_warm_up = memory()
        report = run_load(url, mix, clients=args.clients, duration_s=args.minutes * 60, memory_probe=memory,
                          probe_every_s=15)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()

    final = report.memory_mb[-1][1]
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    print(f"command: bench/soak.py --clients {args.clients} --minutes {args.minutes} --warmup-minutes {args.warmup_minutes}"
          f"{''.join(' --demo ' + d for d in args.demo or ())}")
    print(f"{len(report.results)} requests in {report.wall_seconds:.0f} s "
          f"({len(report.results) / report.wall_seconds:.1f}/s), failed: {len(report.failures)}")
    for failure in report.failures[:10]:
        print(f"  FAILED {failure.api_name}: {failure.error[:200]}")
    print("\n| endpoint | requests | failed | p50 ms | p95 ms |\n|---|---|---|---|---|")
    for row in report.latency_table():
        print(f"| {row['endpoint']} | {row['requests']} | {row['failed']} | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} |")
    print("\nmemory series (s since the soak began: MB): "
          + ", ".join(f"{t:.0f}: {mb:.0f}" for t, mb in report.memory_mb))
    peak = max(mb for _, mb in report.memory_mb)
    print(f"\nmemory (server + children): {after_warm_up:.0f} MB after warm-up, {final:.0f} MB at the end, peak "
          f"{peak:.0f} MB; growth after warm-up {100 * (final - after_warm_up) / after_warm_up:+.1f}%")


if __name__ == "__main__":
    main()
