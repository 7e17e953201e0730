"""Sentiment latency: the gallery's HTTP path vs a raw transformers forward of the same model, in one run.

    .venv/bin/python bench/bench_sentiment.py [--requests 60] [--port 7871]

Starts `txgallery serve --demo sentiment` as a child process on 127.0.0.1, then measures, in this process:
  raw        tokenizer + forward of the same transformers model on a quiet thread (the baseline)
  echo       the `/ping` endpoint: Gradio's own HTTP floor, measured with the same clients
  gallery    `/sentiment_predict` through a raw HTTP client (httpx) and through gradio_client
interleaving all paths round by round, and prints p50/p95 at batch 1, throughput for 64 texts, and the ratio (gallery − echo) / raw at p50, which is the
project's share above Gradio's floor (target: ≤ 1.15). It also shows why models run on a dedicated thread: the same
forward issued from a fresh thread per call (what a pool of short-lived workers does) vs one long-lived thread.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import threading
from concurrent.futures import ThreadPoolExecutor

# The raw baseline gets the same OpenMP policy as the server (txgallery.lib.threads.prefer_passive_openmp): it makes the
# raw forward faster, not slower, and keeps this process's several torch thread pools from spinning against each other.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import httpx  # noqa: E402
import torch  # noqa: E402
from served import http_call, start_server  # noqa: E402
from timing import interleaved, percentiles  # noqa: E402

TEXTS = [
    "A gripping, beautifully acted film that stays with you long after the credits.",
    "The plot is a mess and the jokes fall flat; I checked my watch twice.",
    "Not bad at all: the second half more than makes up for a slow start.",
    "Great cast, awful script.",
    "An uneven but often touching portrait of a family coming apart.",
    "It is the kind of movie that makes you want to call your mother.",
    "Two hours of my life I will never get back.",
    "Smart, funny and surprisingly tender.",
]


def timed(fn, n: int, warmup: int = 5) -> list[float]:
    """Wall-clock seconds of `fn(i)` for i in range(n), after a warm-up."""
    return interleaved({"fn": fn}, n, warmup)["fn"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--port", type=int, default=7871)
    args = parser.parse_args()
    n = args.requests

    from txgallery.embedded.sentiment import minilm_rt_sentiment
    from txgallery.limits import MAX_TOKENS

    model, tokenizer = minilm_rt_sentiment()

    @torch.inference_mode()
    def raw_forward(texts: list[str]):
        batch = tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        return model(**batch).logits.softmax(-1)

    text = lambda i: TEXTS[i % len(TEXTS)]  # noqa: E731

    def fresh_thread(i):  # what a pool of short-lived workers does
        worker = threading.Thread(target=raw_forward, args=([text(i)],))
        worker.start()
        worker.join()

    one_thread = ThreadPoolExecutor(max_workers=1)  # what the serving seam does
    server = start_server(args.port)
    try:
        url = f"http://127.0.0.1:{args.port}"
        with httpx.Client(base_url=url, timeout=120) as http:
            # phase 1: raw forwards and raw HTTP, interleaved; no gradio_client yet (its background threads would
            # disturb the raw baseline in this process)
            samples = interleaved({
                "raw forward, quiet main thread (baseline)": lambda i: raw_forward([text(i)]),
                "raw forward, a fresh thread per call": fresh_thread,
                "raw forward, one long-lived thread": lambda i: one_thread.submit(raw_forward, [text(i)]).result(),
                "echo /ping, raw HTTP (floor)": lambda i: http_call(http, "ping", [text(i)]),
                "gallery /sentiment_predict, raw HTTP": lambda i: http_call(http, "sentiment_predict", [text(i)]),
            }, n, warmup=5)
            many = [f"{text(i)} ({i})" for i in range(64)]
            batch = interleaved({"raw": lambda i: raw_forward(many),
                                 "gallery": lambda i: http_call(http, "sentiment_batch", ["\n".join(many), None])},
                                5, warmup=1)
        # phase 2: the same through gradio_client (≈ 70 ms of client CPU per call on these 2 cores)
        from gradio_client import Client

        client = Client(url, verbose=False)
        samples |= interleaved({
            "echo /ping, gradio_client (floor)": lambda i: client.predict(text(i), api_name="/ping"),
            "gallery /sentiment_predict, gradio_client": lambda i: client.predict(text(i), api_name="/sentiment_predict"),
        }, n, warmup=5)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    stats = {name: percentiles(values) for name, values in samples.items()}
    raw = stats["raw forward, quiet main thread (baseline)"]
    raw_64, gallery_64 = statistics.median(batch["raw"]), statistics.median(batch["gallery"])
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), python {platform.python_version()}; {n} requests per row\n")
    print("| path | p50 ms | p95 ms |\n|---|---|---|")
    for name, (p50, p95) in stats.items():
        print(f"| {name} | {p50:.1f} | {p95:.1f} |")
    print(f"\nthroughput, 64 texts: raw batch forward {64 / raw_64:.0f} texts/s; "
          f"gallery /sentiment_batch (one request) {64 / gallery_64:.0f} texts/s ({gallery_64 / raw_64:.2f}× raw time)")
    for client_name in ("raw HTTP", "gradio_client"):
        gallery, echo = stats[f"gallery /sentiment_predict, {client_name}"], stats[f"echo /ping, {client_name} (floor)"]
        print(f"{client_name}: gallery p50 {gallery[0]:.1f} ms = echo floor {echo[0]:.1f} ms + {gallery[0] - echo[0]:.1f} "
              f"ms; (gallery − echo) / raw at p50 = {(gallery[0] - echo[0]) / raw[0]:.2f}× (target ≤ 1.15)")


if __name__ == "__main__":
    main()
