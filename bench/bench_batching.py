"""How batches form in a model replica: Ray's `@serve.batch` vs txgallery's `CallBatcher`, with a simulated device.

    PYTHONPATH=bench/plugins .venv/bin/python bench/bench_batching.py [--rounds 3] [--seconds 3] [--clients 16]

In this process, no Ray cluster: `--clients` closed-loop callers of one batchable method whose device holds each batch
for 20 ms + 1 ms per item (bench/plugins/txgallery_simulated), as `ModelService` runs it (the batch on an executor
thread). After each answer a caller comes back after a round trip of 5–50 ms (what a call through the proxy and the UI
replica takes), or at once with `--round-trip-ms 0,0`. The two batchers alternate, round after round; prints calls/s,
the mean batch size and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "plugins"))

import ray.serve.batching  # noqa: E402
from ray import serve  # noqa: E402
from txgallery_simulated.device import SimulatedDevice  # noqa: E402

from txgallery.serving.ray_serve import CallBatcher  # noqa: E402

# outside a replica `@serve.batch` cannot read the replica's max_ongoing_requests for a warning; skip that check only
ray.serve.batching._BatchQueue._warn_if_max_batch_size_exceeds_max_ongoing_requests = lambda self: None


async def trial(kind: str, clients: int, seconds: float, round_trip_s: tuple[float, float], max_batch: int,
                wait_s: float) -> tuple[float, float]:
    """(calls/s, mean batch size) of one batcher."""
    device = SimulatedDevice(20, 1)
    loop = asyncio.get_running_loop()

    async def run(calls: list[list]) -> list:
        out = await loop.run_in_executor(None, device.predict, [x for call in calls for x in call])
        return [[item] for item in out]

    batcher = (CallBatcher(run, max_batch, wait_s) if kind == "CallBatcher"
               else serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=wait_s)(run))
    answered = 0
    rng = random.Random(0)

    async def caller(deadline: float) -> None:
        nonlocal answered
        while time.monotonic() < deadline:
            await batcher(["text"])
            answered += 1
            await asyncio.sleep(rng.uniform(*round_trip_s))

    start = time.monotonic()
    await asyncio.gather(*(caller(start + seconds) for _ in range(clients)))
    elapsed = time.monotonic() - start
    sizes = [size for _, _, size in device.device_holds()]
    return answered / elapsed, sum(sizes) / len(sizes)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--round-trip-ms", default="5,50")
    args = parser.parse_args()
    round_trip = tuple(float(x) / 1e3 for x in args.round_trip_ms.split(","))
    results: dict[str, list[tuple[float, float]]] = {"@serve.batch": [], "CallBatcher": []}
    for _ in range(args.rounds):
        for kind in results:
            results[kind].append(await trial(kind, args.clients, args.seconds, round_trip, 16, 0.01))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, ray "
          f"{ray.__version__}; load average {os.getloadavg()[0]:.1f}; {args.clients} clients, round trip "
          f"{args.round_trip_ms} ms, device 20 ms + 1 ms per item, max_batch_size 16, wait 10 ms\n")
    print("| batcher | calls/s per round | mean batch per round |\n|---|---|---|")
    for kind, rows in results.items():
        print(f"| {kind} | {', '.join(f'{r:.0f}' for r, _ in rows)} | {', '.join(f'{b:.1f}' for _, b in rows)} |")
    ratios = [c[0] / s[0] for c, s in zip(results["CallBatcher"], results["@serve.batch"])]
    print(f"\nCallBatcher / @serve.batch, calls/s per round: {', '.join(f'{r:.2f}×' for r in ratios)}")


if __name__ == "__main__":
    asyncio.run(main())
