"""From `txgallery serve` to the landing page answering, against a bare Gradio app started the same way.

Each round starts, in turn: a one-endpoint Gradio app (the baseline: Python, Gradio's import and launch), the whole
gallery with a fresh empty HOME (a cold `~/.cache/txgallery`), and the gallery again with that now-warm HOME; each
is timed from the spawn to the first 200 from `/`, then stopped. Rounds interleave so the machine's noise hits all
three alike. HOME and the working directory lie outside the repository and the temp directory, as for a user.

    unshare -n sh -c 'ip link set lo up; .venv/bin/python bench/bench_startup.py --rounds 5'
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from served import BARE_ECHO_APP, free_port  # noqa: E402


def time_to_landing(command: list[str], port: int, home: Path, cwd: Path, timeout: float = 300) -> float:
    """Seconds from spawning `command` to `/` answering 200 on `port`; the process is stopped afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TXGALLERY_", "XDG_"))}
    env.update(HOME=str(home), GRADIO_ANALYTICS_ENABLED="False")
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - started < timeout:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"{command[:3]} did not answer in {timeout} s")
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    txgallery = str(Path(sys.executable).parent / "txgallery")
    times: dict[str, list[float]] = {"bare Gradio app (baseline)": [], "gallery, cold HOME": [],
                                     "gallery, warm HOME": []}
    for _ in range(args.rounds):
        root = Path(tempfile.mkdtemp(prefix="txgallery-startup-", dir="/var/tmp"))
        home, cwd = root / "home", root / "work"
        home.mkdir()
        cwd.mkdir()
        try:
            port = free_port()
            times["bare Gradio app (baseline)"].append(time_to_landing(
                [sys.executable, "-c", BARE_ECHO_APP.format(port=port)], port, home, cwd))
            for name in ("gallery, cold HOME", "gallery, warm HOME"):
                port = free_port()
                times[name].append(time_to_landing([txgallery, "serve", "--port", str(port)], port, home, cwd))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    baseline = statistics.median(times["bare Gradio app (baseline)"])
    print("| start | median s | min s | max s | × bare Gradio |\n|---|---|---|---|---|")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"| {name} | {median:.2f} | {min(samples):.2f} | {max(samples):.2f} | {median / baseline:.2f}× |")


if __name__ == "__main__":
    main()
