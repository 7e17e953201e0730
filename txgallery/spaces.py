"""Hugging Face Spaces: ZeroGPU's `@spaces.GPU` around every model call where the `spaces` package is present (a
no-op elsewhere), the Space's app, and `txgallery spaces build OUT`, which assembles a ready-to-push Space folder.

On ZeroGPU a GPU is attached only while a function decorated with `@spaces.GPU` runs, so model calls cannot stay on
the long-lived service threads of `LocalBackend`: `SpacesBackend` runs each call inline, through the decorator.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from txgallery.serving import ServiceKey, collecting_services, prefer_passive_openmp, set_backend

log = logging.getLogger(__name__)

GPU_SECONDS = 60  # ZeroGPU's budget per call; longer calls are cut off by the Space
SPACE_TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "spaces"  # in a source checkout


def gpu(fn: Callable | None = None, *, duration: int = GPU_SECONDS) -> Callable:
    """`@spaces.GPU(duration=...)` when the `spaces` package is importable (on a Space), otherwise `fn` unchanged."""
    if fn is None:
        return functools.partial(gpu, duration=duration)
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=duration)(fn)


def _call(instance: Any, method: str, args: tuple, kwargs: dict) -> Any:
    return getattr(instance, method)(*args, **kwargs)


def _stream(instance: Any, method: str, args: tuple, kwargs: dict) -> Iterator[Any]:
    yield from getattr(instance, method)(*args, **kwargs)


class SpacesBackend:
    """Services in this process, each call run inline (one at a time per service) through `gpu()`.

    "One at a time" holds for each step of a stream too, but never across its `yield`: a page that reads a stream
    calls other methods of the same service between items (the generation page asks `describe()` when the stream
    finishes), so a lock held for the stream's whole life would make the page wait for itself forever.
    """

    def __init__(self, duration: int = GPU_SECONDS) -> None:
        self._instances: dict[ServiceKey, Any] = {}
        # Re-entrant: a stream dropped without close() is closed by the garbage collector, which may run on a thread
        # that is inside a step of the same service; a plain lock would deadlock there.
        self._locks: dict[ServiceKey, threading.RLock] = {}
        self._guard = threading.Lock()
        self._call = gpu(_call, duration=duration)
        self._stream = gpu(_stream, duration=duration)

    def _instance(self, key: ServiceKey) -> tuple[Any, threading.RLock]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.RLock())
        with lock:  # construction (model loading) happens once, outside the GPU function, as ZeroGPU expects
            if key not in self._instances:
                self._instances[key] = key.cls(*key.args)
        return self._instances[key], lock

    def preload(self, keys: list[ServiceKey]) -> list[str]:
        """Create every service now (loading its model); returns one message per service that failed."""
        failures = []
        for key in keys:
            try:
                self._instance(key)
            except Exception as exc:  # the page says why when the model is used; the Space keeps running
                failures.append(f"{key.name}: {exc}")
                log.warning("could not preload %s: %s", key.name, exc)
        return failures

    def call(self, key: ServiceKey, method: str, args: tuple, kwargs: dict) -> Any:
        """`instance.method(...)` through `@spaces.GPU`."""
        instance, lock = self._instance(key)
        with lock:  # a model is not safe to use from many threads at once
            return self._call(instance, method, args, kwargs)

    def stream(self, key: ServiceKey, method: str, args: tuple, kwargs: dict) -> Iterator[Any]:
        """Items of a generator method, produced through `@spaces.GPU`; closing the iterator stops it.

        The service's lock is taken for each step (producing one item, or closing) and released before the item
        is handed over. Gradio may ask for successive items from different threads, so no step leaves it held.
        """
        instance, lock = self._instance(key)
        with lock:
            items = self._stream(instance, method, args, kwargs)
        try:
            while True:
                with lock:
                    try:
                        item = next(items)
                    except StopIteration:
                        return
                yield item
        finally:
            with lock:  # next() and close() of the same generator never overlap
                items.close()


def build_space_app(demos: list[str] | None = None, preload: bool | None = None):
    """The gallery as a Space runs it: `SpacesBackend`, settings from `txgallery.toml`/env, models preloaded."""
    prefer_passive_openmp()
    from txgallery import settings
    from txgallery.gallery import build_gallery
    from txgallery.plugin import discover_demos

    settings.configure(settings.load_settings())
    backend = SpacesBackend()
    set_backend(backend)
    with collecting_services() as keys:
        app = build_gallery(discover_demos(only=demos or None), title="txgallery")
    if preload if preload is not None else os.environ.get("TXGALLERY_PRELOAD", "1") == "1":
        backend.preload(keys)
    return app


def build_space(out: Path, wheel: Path | None = None) -> Path:
    """Assemble a ready-to-push Space folder: app, README with front matter, requirements, config, txgallery wheel."""
    import gradio

    out = Path(out)
    if not SPACE_TEMPLATE.is_dir():
        raise FileNotFoundError(f"{SPACE_TEMPLATE} is missing: `txgallery spaces build` runs from a source checkout")
    out.mkdir(parents=True, exist_ok=True)
    wheels = out / "wheels"
    wheels.mkdir(exist_ok=True)
    if wheel is None:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(wheels), str(SPACE_TEMPLATE.parents[1])], check=True)
        wheel = next(wheels.glob("txgallery-*.whl"))
    else:
        wheel = Path(shutil.copy2(wheel, wheels))
    for name in ("app.py", "txgallery.toml"):
        shutil.copy2(SPACE_TEMPLATE / name, out / name)
    readme = (SPACE_TEMPLATE / "README.md").read_text()
    (out / "README.md").write_text(readme.replace("{gradio_version}", gradio.__version__))
    requirements = (SPACE_TEMPLATE / "requirements.txt").read_text()
    (out / "requirements.txt").write_text(requirements.replace("{wheel}", f"./wheels/{wheel.name}"))
    return out
