"""What the benchmarks share to time the served gallery over HTTP: start a server, upload a file, call an endpoint."""

from __future__ import annotations

import json
import mimetypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

# the baseline every gallery figure is read against: a one-endpoint Gradio app, launched as Gradio's docs show
BARE_ECHO_APP = """
import gradio as gr

def ping(text: str) -> str:
    return text

with gr.Blocks() as app:
    gr.api(ping, api_name="ping")
app.launch(server_name="127.0.0.1", server_port={port})
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_cmdline(process: psutil.Process) -> str:
    """A process's command line as one string; empty if it is gone or not readable."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def start_process(command: list[str], port: int, timeout: float = 300, **popen) -> subprocess.Popen:
    """Spawn `command` in its own session and wait until `/` answers 200 on 127.0.0.1:port."""
    process = subprocess.Popen(command, start_new_session=True, **popen)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    raise RuntimeError(f"{command[:4]} did not answer on port {port} in {timeout} s")


def start_server(port: int, demo: str = "sentiment", timeout: float = 300,
                 extra: tuple[str, ...] = ()) -> subprocess.Popen:
    """`txgallery serve --demo DEMO [EXTRA…]` on 127.0.0.1:port, waiting until it answers."""
    return start_process([sys.executable, "-m", "txgallery.cli", "--log-level", "warning", "serve", "--demo", demo,
                          "--port", str(port), "--preload", *extra], port, timeout)


def stop_server(server: subprocess.Popen) -> None:
    """Stop a server `start_server` started, and its children."""
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


def http_call(http: httpx.Client, api_name: str, data: list) -> list:
    """Gradio's two-step HTTP API: POST the call, then read the server-sent result."""
    event_id = http.post(f"/gradio_api/call/{api_name}", json={"data": data}).json()["event_id"]
    with http.stream("GET", f"/gradio_api/call/{api_name}/{event_id}") as stream:
        event = None
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                if event == "error":
                    raise RuntimeError(line)
                return json.loads(line[5:])
    raise RuntimeError("no result")


def distinct_copies(sources: list[Path], count: int, folder: Path, series: int = 0) -> list[Path]:
    """`count` PNG files cycling through `sources`, no two alike (three pixels of the first row encode the index and
    the series): a page that remembers a recent picture cannot answer one of these from memory."""
    import numpy as np
    from PIL import Image

    copies = []
    for i in range(count):
        picture = np.array(Image.open(sources[i % len(sources)]))
        picture[0, 0], picture[0, 1], picture[0, 2] = i % 256, (i // 256) % 256, series
        path = folder / f"copy_s{series}_{i}.png"
        Image.fromarray(picture).save(path)
        copies.append(path)
    return copies


def upload(http: httpx.Client, path: Path) -> dict:
    """Upload a file as a browser does; the FileData that an endpoint's file input takes."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    with path.open("rb") as handle:
        (uploaded,) = http.post("/gradio_api/upload", files={"files": (path.name, handle, mime)}).json()
    return {"path": uploaded, "meta": {"_type": "gradio.FileData"}}
