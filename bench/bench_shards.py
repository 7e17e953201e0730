"""UI shards on Ray Serve: the gallery's `/ping` echo through the proxy with one UI shard and with two, in one run.

    unshare -rn sh -c 'ip link set lo up && exec .venv/bin/python bench/bench_shards.py [--clients 16,64]
        [--seconds 15] [--rounds 2]'

What it starts, all on 127.0.0.1 (run it inside a loopback-only namespace, as above): a local Ray (this process's
children, stopped at the end, every process accounted for), Serve's proxy, the main application (`build_app`, the
simulated-GPU demo only: its model replica has no torch and the echo never calls it) with `ui_shards: 2` at `/`, and
UI shard 1 (`build_ui_shard`) at `/ui-1`. Closed-loop clients (txgallery.loadgen: Gradio's two-step HTTP call API,
one call after another, no think time) call `/ping`:
  1 shard   every client at `/` (shard 1 is deployed but idle)
  2 shards  half the clients at `/`, half at `/ui-1/`
alternating at each client count for `--rounds` rounds (the machine is shared: alternation spreads its drift over
both), each point after one warm-up call per client. Prints req/s, p50/p95, the CPU each process spent per answered
call (UI shard 0, UI shard 1, proxy, the rest of Ray, the load generator), the cores the machine's other work took
meanwhile (this machine is shared: a busy neighbour takes cores from the shards), and 2 shards / 1 shard per client
count; then the ceilings that the CPU per call implies (each UI shard and each proxy one process, at most a core;
all of them sharing the node's cores), beside the measured figures and for bigger nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "bench" / "plugins"
MAIN_APP, SHARD_APP, SHARD_PREFIX = "txgallery", "txgallery-ui-1", "/ui-1"
ROLES = ("UI shard 0", "UI shard 1", "proxy", "other Ray", "load generator")

sys.path.insert(0, str(PLUGINS))
sys.path.insert(0, os.path.dirname(__file__))

import psutil  # noqa: E402
from served import free_port, process_cmdline  # noqa: E402
from timing import percentiles  # noqa: E402

from txgallery.loadgen import run_load_async  # noqa: E402
from txgallery.plugin import ApiCall  # noqa: E402


def _role(process: psutil.Process, own: int) -> str:
    title = process_cmdline(process)
    if process.pid == own:
        return "load generator"  # the clients' event loop (and the idle driver)
    if title.startswith(f"ray::ServeReplica:{SHARD_APP}:"):
        return "UI shard 1"
    if title.startswith(f"ray::ServeReplica:{MAIN_APP}:GalleryIngress"):
        return "UI shard 0"
    return "proxy" if title.startswith("ray::ProxyActor") else "other Ray"


def _cpu_seconds() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of this process and each of its descendants (Ray's), with its role."""
    me = psutil.Process()
    out = {}
    for process in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            out[process.pid] = (_role(process, me.pid), times.user + times.system)
    return out


def measure(urls: list[str], clients: int, seconds: float) -> dict:
    """`clients` closed-loop clients split evenly over `urls` for `seconds` (after one warm-up call each)."""
    ping = ApiCall("ping", ("hello",))
    shares = [clients // len(urls) + (i < clients % len(urls)) for i in range(len(urls))]

    async def run(**kwargs) -> list:
        return await asyncio.gather(*(run_load_async(url, [ping], n, seed=100 * i, **kwargs)
                                      for i, (url, n) in enumerate(zip(urls, shares)) if n))

    asyncio.run(run(calls_per_client=1))
    before, machine_before = _cpu_seconds(), _machine_busy_seconds()
    start = time.monotonic()
    reports = asyncio.run(run(duration_s=seconds))
    wall = time.monotonic() - start
    after, machine = _cpu_seconds(), _machine_busy_seconds() - machine_before
    ok = [r.seconds for report in reports for r in report.results if r.ok]
    failed = sum(len(report.failures) for report in reports)
    spent = dict.fromkeys(ROLES, 0.0)
    for pid, (role, total) in after.items():
        spent[role] += total - before.get(pid, (role, 0.0))[1]
    p50, p95 = percentiles(ok) if ok else (float("nan"), float("nan"))
    return {"shards": len(urls), "clients": clients, "rps": len(ok) / wall, "p50": p50, "p95": p95, "failed": failed,
            "cpu_ms": {role: 1e3 * s / max(1, len(ok)) for role, s in spent.items()},
            "busy": sum(spent.values()) / wall / (os.cpu_count() or 1),
            "others": max(0.0, machine - sum(spent.values())) / wall}  # cores that the machine's other work took


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every process, not only this bench's)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="16,64")
    parser.add_argument("--seconds", type=float, default=15.0, help="per point")
    parser.add_argument("--rounds", type=int, default=2, help="1 shard, 2 shards, … alternated this many times")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    os.environ.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", OMP_WAIT_POLICY="PASSIVE",
                      PYTHONPATH=os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH", "")])))
    import ray
    from ray import serve

    from txgallery.serving.ray_serve import build_app, build_ui_shard

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    started, rows = time.monotonic(), []
    app_args = {"demos": ["simulated"], "num_cpus": 0.25, "ui_num_cpus": 1}
    two_shards = {"deployments": {"GalleryIngress": {"user_config": {"ui_shards": 2}}}}  # shard 0 spreads visitors
    try:
        ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)  # logical CPUs: a scheduling budget
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app({**app_args, **two_shards}), name=MAIN_APP, route_prefix="/")
        serve.run(build_ui_shard({**app_args, "shard": 1}), name=SHARD_APP, route_prefix=SHARD_PREFIX)
        for round_ in range(args.rounds):
            for clients in levels:
                for urls in ([url], [url, url + SHARD_PREFIX]):
                    row = measure(urls, clients, args.seconds)
                    rows.append(row)
                    print(f"round {round_ + 1}: {row['shards']} shard(s) c={clients:<3} {row['rps']:7.1f} req/s  "
                          f"p50 {row['p50']:6.1f} ms  p95 {row['p95']:6.1f} ms  failed {row['failed']}  "
                          f"cores busy {row['busy']:.0%}, other work {row['others']:.2f} cores", flush=True)
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        ray.shutdown()
    left = _left_behind(before)
    report(rows, levels, args, time.monotonic() - started, left)
    if left:
        raise SystemExit(f"processes of Ray left behind: {left}")



def _left_behind(before: set[int]) -> list[str]:
    """The processes Ray started that are still alive a minute after it was shut down (should be none)."""
    deadline = time.monotonic() + 60
    while True:
        alive = [p for p in psutil.Process().children(recursive=True)
                 if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            return [f"{p.pid} {process_cmdline(p)[:100]}" for p in alive]
        time.sleep(0.5)


def ceiling(cpu: dict[str, float], shards: int, cores: float, proxies: int = 1, clients_here: bool = True) -> float:
    """The calls/s that CPU per call allows: each UI shard and each proxy is one process (at most one core, its
    GIL), and all processes together share `cores`; without `clients_here`, the load generator runs elsewhere."""
    ui = cpu["UI shard 0"] + cpu["UI shard 1"]  # per call, the shards together
    rest = cpu["proxy"] + cpu["other Ray"] + (cpu["load generator"] if clients_here else 0.0)
    return min(shards * 1e3 / ui, proxies * 1e3 / cpu["proxy"], cores * 1e3 / (ui + rest))


def report(rows: list[dict], levels: list[int], args, seconds: float, left: list[str]) -> None:
    """The table (median of the rounds per point) with CPU per call and the ceiling it implies, 2 shards / 1 shard
    per client count, and the ceilings that CPU per call predicts on bigger nodes."""
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.1f}; {date.today()}; {seconds / 60:.1f} min in all; "
          f"{args.seconds:g} s per point, {args.rounds} round(s), median of the rounds\n")

    def chosen(shards: int, clients: int) -> list[dict]:
        return [r for r in rows if r["shards"] == shards and r["clients"] == clients]

    def median(shards: int, clients: int, key: str) -> float:
        return statistics.median(r[key] for r in chosen(shards, clients))

    def cpu(shards: int, clients: int) -> dict[str, float]:
        return {role: statistics.median(r["cpu_ms"][role] for r in chosen(shards, clients)) for role in ROLES}

    print("| UI shards | clients | req/s | p50 ms | p95 ms | failed | "
          + " | ".join(f"CPU ms/call: {role}" for role in ROLES)
          + " | cores busy | other work, cores | CPU-bound ceiling, req/s |")
    print("|---|---|---|---|---|---|" + "---|" * (len(ROLES) + 3))
    for clients in levels:
        for shards in (1, 2):
            free = (os.cpu_count() or 1) - median(shards, clients, "others")  # the cores this bench had
            print(f"| {shards} | {clients} | {median(shards, clients, 'rps'):.1f} | "
                  f"{median(shards, clients, 'p50'):.1f} | {median(shards, clients, 'p95'):.1f} | "
                  f"{sum(r['failed'] for r in chosen(shards, clients))} | "
                  + " | ".join(f"{cpu(shards, clients)[role]:.1f}" for role in ROLES)
                  + f" | {median(shards, clients, 'busy'):.0%} | {median(shards, clients, 'others'):.2f} | "
                  f"{ceiling(cpu(shards, clients), shards, free):.0f} |")
    print()
    for clients in levels:
        each = [f"{b['rps'] / a['rps']:.2f}×" for a, b in zip(chosen(1, clients), chosen(2, clients))]
        best = max(r["rps"] for r in chosen(2, clients)) / max(r["rps"] for r in chosen(1, clients))
        print(f"{clients} clients: 2 shards / 1 shard = {median(2, clients, 'rps') / median(1, clients, 'rps'):.2f}× "
              f"(medians; best round of each {best:.2f}×; per round {', '.join(each)})")
    top = max(levels)
    print(f"\nDerived, not measured: ceilings in req/s with C cores in all (clients elsewhere), from the CPU per call "
          f"above at {top} clients (1 shard: its row; more shards: the 2-shard row); one proxy per node "
          "(`proxy_location: EveryNode`), so P proxies = P nodes behind the load balancer\n")
    print("| cores C | proxies P | 1 shard | 2 shards | 4 shards | 2 shards / 1 |")
    print("|---|---|---|---|---|---|")
    for cores in (2, 4, 8, 16):
        for proxies in (1, 2):
            one = ceiling(cpu(1, top), 1, cores, proxies, clients_here=False)
            two, four = (ceiling(cpu(2, top), n, cores, proxies, clients_here=False) for n in (2, 4))
            print(f"| {cores} | {proxies} | {one:.0f} | {two:.0f} | {four:.0f} | {two / one:.2f}× |")
    print(f"\nprocesses of Ray left: {len(left)}")


if __name__ == "__main__":
    main()
