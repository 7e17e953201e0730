"""Drive a running gallery with many concurrent clients: the load test in the suite and the soak benchmark.

Every demo declares a realistic mix of cheap calls (`Demo.traffic`); each simulated client sends calls from the mix
of every demo, one after another, through Gradio's plain HTTP API (`POST /gradio_api/call/NAME`, then the event
stream), as a browser does. The report has per-endpoint p50/p95 and every failure with its message.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx

from txgallery.plugin import ApiCall, DemoEntry


@dataclass(frozen=True)
class CallResult:
    """One request: which endpoint, whether it succeeded, how long it took, and the error text if it failed."""

    api_name: str
    ok: bool
    seconds: float
    error: str = ""
    output: str = ""  # the result event's data (JSON), kept only when asked for (`keep_output`)


@dataclass
class LoadReport:
    """Everything a load run measured."""

    clients: int
    wall_seconds: float
    results: list[CallResult] = field(default_factory=list)
    memory_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, RSS MB)

    @property
    def failures(self) -> list[CallResult]:
        """The requests that failed."""
        return [r for r in self.results if not r.ok]

    def latency_table(self) -> list[dict]:
        """Per endpoint: count, failures, p50 and p95 in ms."""
        rows = []
        for name in sorted({r.api_name for r in self.results}):
            times = sorted(r.seconds for r in self.results if r.api_name == name and r.ok)
            failed = sum(1 for r in self.results if r.api_name == name and not r.ok)
            p50 = statistics.median(times) * 1e3 if times else float("nan")
            p95 = times[min(len(times) - 1, int(0.95 * len(times)))] * 1e3 if times else float("nan")
            rows.append({"endpoint": name, "requests": len(times) + failed, "failed": failed,
                         "p50_ms": round(p50, 1), "p95_ms": round(p95, 1)})
        return rows


def traffic_mix(entries: list[DemoEntry]) -> list[ApiCall]:
    """Every call that every loaded demo declares."""
    return [call for entry in entries if entry.ok for call in entry.demo.traffic]


def _is_local_file(value) -> bool:
    return isinstance(value, dict) and value.get("meta", {}).get("_type") == "gradio.FileData" and "path" in value


async def _uploaded(http: httpx.AsyncClient, value):
    """Upload a `handle_file(path)` argument as a browser does and refer to the server's copy."""
    if isinstance(value, list):
        return [await _uploaded(http, item) for item in value]
    if not _is_local_file(value):
        return value
    path = Path(value["path"])
    with path.open("rb") as handle:
        response = await http.post("/gradio_api/upload", files={"files": (path.name, handle)})
    response.raise_for_status()
    return {"path": response.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


async def call_once(http: httpx.AsyncClient, call: ApiCall, keep_output: bool = False) -> CallResult:
    """Send one call through Gradio's HTTP API (uploading its files first) and wait for its result or error event."""
    start = time.perf_counter()
    try:
        data = [await _uploaded(http, arg) for arg in call.arguments()]
        posted = await http.post(f"/gradio_api/call/{call.api_name}", json={"data": data})
        posted.raise_for_status()
        event_id = posted.json()["event_id"]
        event = None
        async with http.stream("GET", f"/gradio_api/call/{call.api_name}/{event_id}") as stream:
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    if event == "error":
                        data = line.split(":", 1)[1].strip()
                        message = json.loads(data) if data not in ("", "null") else "error event without a message"
                        return CallResult(call.api_name, False, time.perf_counter() - start, str(message))
                    return CallResult(call.api_name, True, time.perf_counter() - start,
                                      output=line[5:].strip() if keep_output else "")
        return CallResult(call.api_name, False, time.perf_counter() - start, f"stream ended after event {event!r}")
    except (httpx.HTTPError, KeyError, ValueError, OSError) as exc:
        return CallResult(call.api_name, False, time.perf_counter() - start, f"{type(exc).__name__}: {exc}")


async def _client(base_url: str, mix: list[ApiCall], rng: random.Random, deadline: float, max_calls: int,
                  results: list[CallResult], keep_output: bool) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(600, connect=30)) as http:
        for _ in range(max_calls):
            if time.monotonic() >= deadline:
                return
            results.append(await call_once(http, rng.choice(mix), keep_output))


async def run_load_async(base_url: str, mix: list[ApiCall], clients: int, calls_per_client: int = 1_000_000,
                         duration_s: float = float("inf"), seed: int = 0,
                         memory_probe: Callable[[], float] | None = None, probe_every_s: float = 5.0,
                         keep_output: bool = False) -> LoadReport:
    """Run `clients` concurrent clients until each sent `calls_per_client` calls or `duration_s` passed."""
    if not mix:
        raise ValueError("no calls to send: no demo declares traffic")
    report = LoadReport(clients=clients, wall_seconds=0.0)
    start = time.monotonic()
    deadline = start + duration_s
    tasks = [asyncio.create_task(_client(base_url, mix, random.Random(seed + i), deadline, calls_per_client,
                                         report.results, keep_output)) for i in range(clients)]

    async def probe() -> None:
        while True:
            report.memory_mb.append((time.monotonic() - start, memory_probe()))
            await asyncio.sleep(probe_every_s)

    prober = asyncio.create_task(probe()) if memory_probe else None
    await asyncio.gather(*tasks)
    if prober:
        prober.cancel()
        report.memory_mb.append((time.monotonic() - start, memory_probe()))
    report.wall_seconds = time.monotonic() - start
    return report


def run_load(base_url: str, mix: list[ApiCall], clients: int, **kwargs) -> LoadReport:
    """Blocking wrapper of `run_load_async`."""
    return asyncio.run(run_load_async(base_url, mix, clients, **kwargs))


def rss_probe(pid: int) -> Callable[[], float]:
    """A function returning the resident memory (MB) of process `pid` and its children."""
    import psutil

    process = psutil.Process(pid)

    def probe() -> float:
        processes = [process, *process.children(recursive=True)]
        return sum(p.memory_info().rss for p in processes if p.is_running()) / 2**20

    return probe
