"""Helpers the test modules import (conftest.py files are fixtures only: several exist, so none can be imported)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from pathlib import Path

import psutil

# Debian's chromium, as Playwright drives it (never a downloaded browser); the flags keep it off the closed network
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def running(process: psutil.Process) -> bool:
    """Whether the process still runs (a zombie, or a pid that was reused, does not)."""
    with contextlib.suppress(psutil.Error):
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    return False


def command_line(process: psutil.Process) -> str:
    """The first words of its command line (a Ray worker shows its actor's class there)."""
    with contextlib.suppress(psutil.Error):
        return " ".join(process.cmdline()[:3])
    return f"pid {process.pid}"


def screenshot_path(name: str) -> Path:
    """Where a browser test saves its screenshot: `docs/` under `make screenshots` (TXGALLERY_SCREENSHOTS=1), else a
    scratch folder, so that `make test` leaves the work tree clean."""
    if os.environ.get("TXGALLERY_SCREENSHOTS") == "1":
        return Path(__file__).resolve().parents[1] / "docs" / name
    scratch = Path(tempfile.gettempdir()) / "txgallery-screenshots"
    scratch.mkdir(exist_ok=True)
    return scratch / name


def top_class(page, selector: str, timeout_ms: int = 120_000) -> str:
    """The winning class a `gr.Label` shows, once it shows probabilities (read from Gradio's heading, not from the
    block's lines: the status tracker's text can come first while the result renders)."""
    from playwright.sync_api import expect
    block = page.locator(selector)
    expect(block).to_contain_text("%", timeout=timeout_ms)
    heading = block.get_by_test_id("label-output-value")
    expect(heading).not_to_have_text("", timeout=timeout_ms)
    return heading.inner_text().strip()
