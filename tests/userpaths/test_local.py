"""The local user path: the gallery started as the README tells a user, driven page by page in a real browser.

`.venv/bin/txgallery serve` (what `make serve` runs) with default settings, from a working directory outside the
repository, with a fresh empty HOME (so `~/.cache/txgallery` is cold and is the real default), no Fashion-MNIST dataset
visible, and both HOME and the working directory outside the system's temp directory: Gradio serves files from the
working directory and the temp directory, so a test that lives under /tmp passes where users fail. Only the port is
chosen (a free one). Debian's chromium opens every page, clicks its first example (which runs it: no button is
pressed), downloads what the page offers, and fails on any error toast, error state in an output, or console error.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from support import CHROMIUM, CHROMIUM_FLAGS, free_port, top_class
from userpath_actions import DEMOS, OUTSIDE_TEMP

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RESULT_TIMEOUT = 240_000  # ms; a result that has not appeared by then fails the test (2 busy cores, cold models)
ERRORS = ".toast-body.error, .wrap span.error"  # Gradio's error toast, and an output's error state


class Server:
    """`txgallery serve` as a user starts it, in its own HOME and working directory."""

    def __init__(self, root: Path) -> None:
        self.home, self.cwd, self.no_dataset = root / "home", root / "work", root / "no-fashion-mnist"
        for folder in (self.home, self.cwd, self.no_dataset):
            folder.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TXGALLERY_", "GRADIO_", "HF_", "XDG_", "PYTEST"))}
        env.update(HOME=str(self.home), PYTHONFAULTHANDLER="1",  # a hung server is killed with SIGABRT: stacks
                   TXGALLERY_FASHION_MNIST_DIR=str(self.no_dataset))  # hides Debian's dataset (CI installs it)
        self.log = root / "server.log"
        command = [str(Path(sys.executable).parent / "txgallery"), "serve", "--port", str(self.port)]
        started = time.monotonic()
        self.process = subprocess.Popen(command, cwd=self.cwd, env=env, stdout=self.log.open("w"),
                                        stderr=subprocess.STDOUT)
        deadline = started + 180
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"txgallery serve exited:\n{self.tail()}"
            try:
                if httpx.get(self.url + "/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail(f"the landing page did not answer in 180 s:\n{self.stacks()}")
        self.startup_s = time.monotonic() - started
        print(f"\ntxgallery serve: landing page answered after {self.startup_s:.1f} s")

    def tail(self, lines: int = 80) -> str:
        """The last lines of the server's log."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stacks(self) -> str:
        """Every thread's stack (faulthandler on SIGABRT), then the log; the server is gone afterwards."""
        self.process.send_signal(signal.SIGABRT)
        self.process.wait(timeout=30)
        return self.tail(400)

    def stop(self) -> None:
        """Stop the server by its PID."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture(scope="module")
def server():
    root = Path(tempfile.mkdtemp(prefix="txgallery-userpath-", dir=OUTSIDE_TEMP))
    assert not str(root).startswith(tempfile.gettempdir())
    served = Server(root)
    yield served
    served.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture()
def page(browser, server):
    """A fresh page that records console errors; the test fails on any, or on an error shown on the page."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    opened.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    yield opened
    shown = opened.locator(ERRORS)
    shown_errors = [shown.nth(i).inner_text() for i in range(shown.count())]
    context.close()
    assert not shown_errors, f"error shown on the page: {shown_errors}\n{server.tail()}"
    assert not problems, problems


def _open(page: Page, server: Server, slug: str, button: str) -> None:
    page.goto(f"{server.url}/{slug}", wait_until="domcontentloaded", timeout=120_000)
    expect(page.get_by_role("button", name=button, exact=True).first).to_be_visible(timeout=120_000)


def _first_example(page: Page) -> None:
    """Click the page's first example: it fills the inputs and runs, as a user expects."""
    page.locator(".gallery-item, tr.tr-body").first.click()


def _fail_on_error_toast(page: Page, server: Server) -> None:
    shown = page.locator(ERRORS)
    if shown.count():
        pytest.fail(f"error on the page: {shown.first.inner_text()}\n{server.tail()}")


def _download(page: Page, server: Server) -> Path:
    """Click the first visible file link on the page and return the downloaded file."""
    link = page.locator("a[download]:visible").first
    expect(link).to_be_visible(timeout=RESULT_TIMEOUT)
    with page.expect_download(timeout=120_000) as download:
        link.click()
    target = server.cwd / download.value.suggested_filename
    download.value.save_as(target)
    return target


def test_landing_page_shows_every_demo_and_no_broken_card(page, server):
    page.goto(server.url + "/", wait_until="load", timeout=120_000)
    page.locator(".tx-card").first.wait_for(timeout=60_000)
    shown = set(page.locator(".tx-card").evaluate_all("cards => cards.map(c => c.dataset.demo)"))
    assert DEMOS <= shown, DEMOS - shown
    assert page.locator(".tx-broken").count() == 0, page.locator(".tx-broken").first.inner_text()


def _top_label_of_first_example(page: Page, server: Server, slug: str, label: str) -> str:
    """Click the page's first example; the top class its `gr.Label` shows."""
    _open(page, server, slug, "Classify")
    _first_example(page)
    return top_class(page, label, RESULT_TIMEOUT)


def test_sentiment(page, server):
    assert _top_label_of_first_example(page, server, "sentiment", "#sentiment-label-0") == "positive"
    page.get_by_role("tab", name="Batch").click()
    page.get_by_label("Texts, one per line").fill("Loved every minute of it.\nA dull, lifeless mess.")
    page.get_by_role("button", name="Classify all").click()
    rows = list(csv.DictReader(_download(page, server).open()))
    assert [row["label (minilm-rt-sentiment)"] for row in rows] == ["positive", "negative"]


def test_attention(page, server):
    _open(page, server, "attention", "Show attention")
    _first_example(page)
    head_view = page.locator("#attention-headview .txa-headview")
    expect(head_view).to_have_attribute("data-layer", "0", timeout=RESULT_TIMEOUT)
    assert "animal" in page.locator("#attention-headview svg.txa-svg").text_content()  # the first example's words
    page.get_by_role("tab", name="Export").click()
    page.get_by_role("button", name="Download figure").click()
    figure = _download(page, server)
    assert figure.suffix == ".png" and figure.read_bytes().startswith(b"\x89PNG")
    _fail_on_error_toast(page, server)


def test_generation(page, server):
    """The default model (SmolLM2, converted on first use from a cold cache) streams a completion."""
    _open(page, server, "generation", "Generate")
    _first_example(page)
    # a cold cache: the first load converts SmolLM2's GGUF file, and the page says so instead of a bare spinner
    expect(page.locator("#generation-notice")).to_contain_text("first time", timeout=60_000)
    stats = page.locator("#generation-stats")
    expect(stats).to_contain_text("finished", timeout=RESULT_TIMEOUT)
    assert page.locator("#generation-output .token-container").count() >= 2


def test_seq2seq(page, server):
    _open(page, server, "seq2seq", "Generate")
    _first_example(page)
    output = page.locator("#seq2seq-output textarea")
    expect(output).to_have_value("positive", timeout=RESULT_TIMEOUT)


def test_vit_shows_its_own_task_first_and_classifies_it(page, server):
    _open(page, server, "vit", "Classify")
    first = page.locator(".gallery-item").first
    expect(first.locator("img")).to_be_visible(timeout=60_000)
    assert "test" in (first.locator("img").get_attribute("src") or "")  # a shipped Fashion-MNIST test image
    first.click()
    # the first test image of class T-shirt/top
    expect(page.locator("#vit-top-class")).to_contain_text("T-shirt/top", timeout=RESULT_TIMEOUT)


def test_clip(page, server):
    # the first example is scikit-image's chelsea
    assert _top_label_of_first_example(page, server, "clip", "#clip-label") == "cat"


def test_efficiency_measures_and_its_zips_download(page, server):
    _open(page, server, "efficiency", "Build and measure")
    for technique in ("onnx", "onnx-int8"):
        page.get_by_label(technique, exact=True).uncheck()
    page.get_by_role("button", name="Build and measure").click()
    expect(page.get_by_text("int8 dynamic (PyTorch)").first).to_be_attached(timeout=RESULT_TIMEOUT)
    zipped = _download(page, server)
    assert zipfile.is_zipfile(zipped) and "config.json" in zipfile.ZipFile(zipped).namelist()


def test_finetune_trains_and_its_adapter_downloads(page, server):
    _open(page, server, "finetune", "Train")
    for elem_id, value in (("finetune-steps", "8"), ("finetune-batch", "4")):
        box = page.locator(f"#{elem_id} input[type=number]")
        box.fill(value)
        box.press("Enter")
    page.get_by_role("button", name="Train", exact=True).click()
    expect(page.locator("#finetune-progress")).to_contain_text("done", timeout=RESULT_TIMEOUT)
    page.get_by_role("tab", name="Try it, download, export").click()
    page.get_by_role("button", name="Base vs tuned").click()  # labels with probabilities, not raw JSON
    for side in ("#finetune-base", "#finetune-tuned"):
        assert top_class(page, side, RESULT_TIMEOUT) in {"positive", "negative"}
    page.get_by_role("button", name="Download the adapter").click()
    zipped = _download(page, server)
    assert zipfile.is_zipfile(zipped) and "finetune.json" in zipfile.ZipFile(zipped).namelist()
