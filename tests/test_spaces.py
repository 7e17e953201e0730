"""Hugging Face Spaces: `@spaces.GPU` applied when the `spaces` package is present and a no-op when it is not, the
Space's app serving a real prediction through `SpacesBackend`, and `txgallery spaces build` assembling the folder."""

from __future__ import annotations

import sys
import types
import zipfile

import gradio
import pytest
import yaml

from txgallery import serving, settings
from txgallery.cli import main
from txgallery.spaces import SpacesBackend, build_space_app, gpu


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


@pytest.mark.slow
def test_space_app_predicts_through_spaces_gpu(zerogpu, monkeypatch):
    from txgallery import store
    from txgallery_demos.sentiment.run import SentimentClassifier

    previous = serving.get_backend()
    try:
        app = build_space_app(demos=["sentiment"], preload=True)
        assert isinstance(app, gradio.Blocks)
        backend = serving.get_backend()
        assert isinstance(backend, SpacesBackend)
        source = store.resolve_choice("sentiment", "text-classification")[0]
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
    assert "txgallery/spaces.py" in names and "txgallery_demos/sentiment/run.py" in names
    assert "sentiment = txgallery_demos.sentiment.run:demo" in entry_points
    assert any(n.startswith("txgallery/weights/minilm-rt-sentiment/") and n.endswith(".safetensors") for n in names)
    compile((out / "app.py").read_text(), "app.py", "exec")
