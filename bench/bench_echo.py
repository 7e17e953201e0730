"""The gallery's own floor: its `/ping` echo against a bare one-endpoint Gradio app's, and its pages against both.

Three servers run side by side, each as its user starts it, from a fresh HOME outside the temp directory:
- a bare Gradio app with one `gr.api` echo (the baseline);
- the gallery as `txgallery serve --preload` starts it (every demo, the shipped defaults);
- the same gallery launched with Gradio's own session state (what `txgallery.gallery.launch` replaces with
  `PageSessionState`), so the change is measured in the same run.
Each call is Gradio's two-step HTTP API (POST, then the server-sent result), the path every program and page takes;
the paths interleave, so the machine's noise hits them alike. Ratios are to the bare echo's p50.

    unshare -n sh -c 'ip link set lo up; .venv/bin/python bench/bench_echo.py --rounds 200'
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from served import BARE_ECHO_APP, free_port, http_call, start_process  # noqa: E402
from timing import interleaved, percentiles  # noqa: E402

# `txgallery serve`'s launch, less `keep_sessions_light`: the gallery as it ran before PageSessionState
GRADIO_SESSIONS_APP = """
from txgallery.gallery import CSS, build_gallery, page_head, queue
from txgallery.limits import MAX_SESSIONS, MAX_UPLOAD_SIZE
from txgallery.plugin import discover_demos
from txgallery.cli import check_models

entries = discover_demos()
check_models(entries, load=True)
app = queue(build_gallery(entries))
app.launch(server_name="127.0.0.1", server_port={port}, max_file_size=MAX_UPLOAD_SIZE, css=CSS, head=page_head(),
           state_session_capacity=MAX_SESSIONS, show_error=True)
"""
TEXT = "A gripping, beautifully acted film that stays with you long after the credits."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="txgallery-echo-", dir="/var/tmp"))
    (root / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TXGALLERY_", "XDG_"))}
    env.update(HOME=str(root / "home"), GRADIO_ANALYTICS_ENABLED="False")
    quiet = dict(cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    txgallery = str(Path(sys.executable).parent / "txgallery")
    ports = {"bare": free_port(), "gallery": free_port(), "gradio sessions": free_port()}
    servers = [start_process([sys.executable, "-c", BARE_ECHO_APP.format(port=ports["bare"])], ports["bare"], **quiet),
               start_process([txgallery, "--log-level", "warning", "serve", "--preload", "--port",
                              str(ports["gallery"])], ports["gallery"], timeout=600, **quiet),
               start_process([sys.executable, "-c", GRADIO_SESSIONS_APP.format(port=ports["gradio sessions"])],
                             ports["gradio sessions"], timeout=600, **quiet)]
    clients = {name: httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) for name, port in ports.items()}
    try:
        paths = {"bare Gradio app: echo (baseline)": lambda i: http_call(clients["bare"], "ping", [f"x{i}"])}
        for name, label in (("gallery", "gallery"), ("gradio sessions", "gallery with Gradio's sessions")):
            client = clients[name]
            paths |= {
                f"{label}: /ping echo": lambda i, c=client: http_call(c, "ping", [f"x{i}"]),
                f"{label}: /sentiment_predict": lambda i, c=client: http_call(c, "sentiment_predict",
                                                                              [f"{TEXT} ({i})"]),
                f"{label}: /attention_analyse": lambda i, c=client: http_call(
                    c, "attention_analyse", ["minilm-l6", f"{TEXT} ({i})", "", 0, 0, []]),
            }
        samples = interleaved(paths, args.rounds, warmup=10)
    finally:
        for client in clients.values():
            client.close()
        for server in servers:
            os.killpg(server.pid, 15)
            server.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)
    baseline = percentiles(samples["bare Gradio app: echo (baseline)"])[0]
    print(f"{args.rounds} interleaved rounds, two-step HTTP call API, one client\n")
    print("| path | p50 ms | p95 ms | p50 × bare echo |\n|---|---|---|---|")
    for name, values in samples.items():
        p50, p95 = percentiles(values)
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {p50 / baseline:.2f}× |")


if __name__ == "__main__":
    main()
