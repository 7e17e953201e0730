"""Serving throughput: `txgallery serve` vs Ray Serve (batched and one-at-a-time), 1/4/16/64 concurrent clients.

    unshare -n sh -c 'ip link set lo up; .venv/bin/python bench/bench_serving.py [--clients 1,4,16,64]'

In one run, on 127.0.0.1 (run it inside a loopback-only namespace: it starts Ray):
  serve        `txgallery serve --demo sentiment --preload` as a child process (one model thread)
  ray batched  the Ray Serve app, sentiment only, ONE model replica, batching up to 16 calls per forward (`CallBatcher`)
  ray 1-by-1   the same app redeployed with max_batch_size=1 (the one-at-a-time baseline for batching)
For each: `/sentiment_predict` and the `/ping` echo (the HTTP + Gradio floor, no model) at each client count,
through a raw HTTP client (httpx, Gradio's two-step call API) and, for sentiment, through gradio_client;
throughput (requests/s) and p50/p95 latency. Also: resident memory of the model replica and of the UI replica.
Through a DeploymentHandle it also calls the model deployment alone (no UI replica), which is where batching acts.
Prints a markdown table and the batching ratios (target ≥ 3× at 16 clients).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback only (see the namespace above)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import httpx  # noqa: E402
import psutil  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from bench_sentiment import TEXTS  # noqa: E402
from served import http_call, start_server  # noqa: E402
from timing import percentiles  # noqa: E402


def load(call, clients: int, requests: int) -> tuple[float, float, float, int]:
    """Throughput (answered calls/s), p50 and p95 (ms) of `call(i)` for `requests` calls from `clients` threads,
    and how many calls failed (e.g. turned away by a full queue: QUEUE_SIZE in txgallery/limits.py)."""
    latencies: list[float] = []
    failed: list[str] = []

    def one(i: int) -> None:
        start = time.perf_counter()
        try:
            call(i)
            latencies.append(time.perf_counter() - start)
        except Exception as exc:  # counted and reported, not fatal: a full queue turns calls away by design
            failed.append(type(exc).__name__)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(min(clients, 4))))  # warm-up: connections, sessions
        latencies.clear()
        failed.clear()
        start = time.perf_counter()
        list(pool.map(one, range(requests)))
        elapsed = time.perf_counter() - start
    p50, p95 = percentiles(latencies) if latencies else (float("nan"), float("nan"))
    return len(latencies) / elapsed, p50, p95, len(failed)


def measure(url: str, label: str, levels: list[int], rows: list, handle=None) -> None:
    """Every endpoint × client kind × concurrency level against one server (and its model deployment's handle)."""
    from gradio_client import Client

    text = lambda i: TEXTS[i % len(TEXTS)]  # noqa: E731
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    with httpx.Client(base_url=url, timeout=300, limits=limits) as http:
        client = Client(url + "/", verbose=False)
        paths = {
            ("ping (echo floor)", "raw HTTP"): lambda i: http_call(http, "ping", [text(i)]),
            ("sentiment_predict", "raw HTTP"): lambda i: http_call(http, "sentiment_predict", [text(i)]),
            ("sentiment_predict", "gradio_client"): lambda i: client.predict(text(i), api_name="/sentiment_predict"),
        }
        if handle is not None:  # the model deployment alone, without the UI replica: what batching changes
            paths[("predict (model only)", "DeploymentHandle")] = \
                lambda i: handle.call.remote("predict", ([text(i)],), {}).result()
        for clients in levels:
            for (endpoint, kind), call in paths.items():
                throughput, p50, p95, failed = load(call, clients, max(16, 2 * clients))
                rows.append((label, endpoint, kind, clients, throughput, p50, p95, failed))
                print(f"{label:<12} {endpoint:<18} {kind:<13} {clients:>3} clients: {throughput:7.1f} req/s, "
                      f"p50 {p50:7.1f} ms, p95 {p95:7.1f} ms, {failed} failed", flush=True)


def replica_memory() -> dict[str, float]:
    """Resident MB of each Serve replica process of this Ray (by its process title)."""
    out = {}
    for process in psutil.Process().children(recursive=True):
        try:
            title = " ".join(process.cmdline())
            if "ServeReplica:" in title:
                out[title.split("ServeReplica:")[1].split()[0]] = process.memory_info().rss / 2**20
        except psutil.Error:
            continue
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,4,16,64")
    parser.add_argument("--serve-port", type=int, default=7872)
    parser.add_argument("--ray-port", type=int, default=8011)
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    rows: list = []

    server = start_server(args.serve_port)
    try:
        measure(f"http://127.0.0.1:{args.serve_port}", "serve", levels, rows)
        serve_rss = psutil.Process(server.pid).memory_info().rss / 2**20
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    import ray
    from ray import serve

    from txgallery.serving.ray_serve import build_app

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.ray_port})
        url = f"http://127.0.0.1:{args.ray_port}"
        memory = {}
        for label, batch in (("ray batched", 16), ("ray 1-by-1", 1)):
            serve.run(build_app({"demos": ["sentiment"], "num_cpus": 0.5, "max_batch_size": batch}),
                      name="txgallery", route_prefix="/")
            handle = serve.get_deployment_handle("SentimentClassifier-minilm-rt-sentiment", app_name="txgallery")
            measure(url, label, levels, rows, handle)
            memory = replica_memory()
    finally:
        serve.shutdown()
        ray.shutdown()

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}; "
          f"ray {ray.__version__}\n")
    print("| server | endpoint | client | clients | req/s | p50 ms | p95 ms | failed |\n|---|---|---|---|---|---|---|---|")
    for label, endpoint, kind, clients, throughput, p50, p95, failed in rows:
        print(f"| {label} | {endpoint} | {kind} | {clients} | {throughput:.1f} | {p50:.0f} | {p95:.0f} | {failed} |")
    rate = {(r[0], r[1], r[2], r[3]): r[4] for r in rows}
    for clients in levels:
        batched = rate[("ray batched", "sentiment_predict", "raw HTTP", clients)]
        single = rate[("ray 1-by-1", "sentiment_predict", "raw HTTP", clients)]
        served = rate[("serve", "sentiment_predict", "raw HTTP", clients)]
        model = (rate[("ray batched", "predict (model only)", "DeploymentHandle", clients)]
                 / rate[("ray 1-by-1", "predict (model only)", "DeploymentHandle", clients)])
        print(f"{clients:>3} clients: model deployment alone, batched / 1-by-1 = {model:.2f}×; through the UI (raw "
              f"HTTP): ray batched / ray 1-by-1 = {batched / single:.2f}×, ray batched / txgallery serve = "
              f"{batched / served:.2f}×")
    print(f"\nresident memory: txgallery serve (whole process) {serve_rss:.0f} MB; "
          + "; ".join(f"{name} {mb:.0f} MB" for name, mb in memory.items()))


if __name__ == "__main__":
    main()
