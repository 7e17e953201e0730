"""The serving seam: demo code calls its model service through `connect()` and never knows where it runs.

    classifier = connect(SentimentClassifier, store.resolve("embedded", "text-classification"))
    results = classifier.predict(["great film"])      # a plain method call, wherever the instance lives

`LocalBackend` (the default, used by `txgallery serve`) keeps one instance per (class, arguments) in this process
and runs its methods on one long-lived thread of its own: the model loads once, calls to it are serialised (a model
is not safe to use from many threads at once, e.g. attribution needs gradients), and torch keeps one OpenMP pool per
model instead of one per Gradio worker thread. With OpenMP's default spinning policy, idle pools of other threads
starve the active one on a small machine, hence also `txgallery.lib.threads.prefer_passive_openmp()` (BENCHMARKS.md,
"Threads").
A Ray Serve backend plugs in with `set_backend()` (`txgallery/serving/ray_serve.py`: the same classes, one deployment each).

Streaming: a service method that is a generator function is streamed. The caller gets an iterator; the generator
itself runs on the service's thread and hands each item over as it is produced. Closing the caller's iterator
(`.close()`, or dropping it, e.g. when a Gradio Stop button cancels the event) stops the generator at its next
`yield`, so a Stop really stops the computation.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

log = logging.getLogger(__name__)


class ServiceUnavailable(RuntimeError):
    """A model service could not answer (e.g. its replicas stopped); the message is meant for the user."""


@dataclass(frozen=True)
class ServiceKey:
    """Identifies one service instance: its class and constructor arguments."""

    cls: type
    args: tuple

    @property
    def name(self) -> str:
        """A stable readable name, e.g. `SentimentClassifier(embedded)`."""
        return f"{self.cls.__name__}({', '.join(map(str, self.args))})"


class Backend(Protocol):
    """Where service instances live and how their methods are called."""

    def call(self, key: ServiceKey, method: str, args: tuple, kwargs: dict) -> Any: ...

    def stream(self, key: ServiceKey, method: str, args: tuple, kwargs: dict) -> Iterator[Any]: ...


def is_streaming(cls: type, method: str) -> bool:
    """Whether `cls.method` is a generator function (its calls are streamed)."""
    return inspect.isgeneratorfunction(getattr(cls, method, None))


_DONE = object()


class LocalBackend:
    """Services in this process, each created lazily and run on its own long-lived thread."""

    def __init__(self) -> None:
        self._instances: dict[ServiceKey, Any] = {}
        self._threads: dict[ServiceKey, ThreadPoolExecutor] = {}
        self._busy_since: dict[ServiceKey, float] = {}  # when the service's thread began its current task
        self._guard = threading.Lock()

    def _executor(self, key: ServiceKey) -> ThreadPoolExecutor:
        with self._guard:
            if key not in self._threads:
                self._threads[key] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"txgallery-{key.cls.__name__}")
            return self._threads[key]

    def _instance(self, key: ServiceKey) -> Any:
        # runs on the service's own thread, so construction (model loading) happens once and in order
        if key not in self._instances:
            self._instances[key] = key.cls(*key.args)
        return self._instances[key]

    def _on_thread(self, key: ServiceKey, task: Callable[[], Any]) -> Future:
        def timed() -> Any:
            self._busy_since[key] = time.monotonic()
            try:
                return task()
            finally:
                del self._busy_since[key]

        return self._executor(key).submit(timed)

    def start(self, key: ServiceKey) -> None:
        """Create the instance now (loading its model) instead of at the first call."""
        self._on_thread(key, lambda: self._instance(key)).result()

    def started(self, key: ServiceKey) -> bool:
        """Whether the service's instance exists (its model loaded)."""
        return key in self._instances

    def busy_for(self, key: ServiceKey) -> float | None:
        """Seconds the service's thread has spent on its current task; None when it is idle."""
        since = self._busy_since.get(key)
        return None if since is None else time.monotonic() - since

    def submit(self, key: ServiceKey, method: str, args: tuple = (), kwargs: dict | None = None) -> Future:
        """Queue `instance.method(*args, **kwargs)` on the service's thread; its future."""
        return self._on_thread(key, lambda: getattr(self._instance(key), method)(*args, **(kwargs or {})))

    def call(self, key: ServiceKey, method: str, args: tuple, kwargs: dict) -> Any:
        """Run `instance.method(*args, **kwargs)` on the service's thread and wait for the result."""
        return self.submit(key, method, args, kwargs).result()

    def stream(self, key: ServiceKey, method: str, args: tuple, kwargs: dict) -> Iterator[Any]:
        """Run the generator `instance.method(...)` on the service's thread, yielding its items here as they come."""
        items: queue.Queue = queue.Queue(maxsize=1)  # the producer waits for the consumer: no runaway generation
        stop = threading.Event()

        def offer(kind: str, value: Any) -> bool:
            # a bounded put that gives up once the caller has gone, so the service thread is never stuck
            while not stop.is_set():
                try:
                    items.put((kind, value), timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                generator = getattr(self._instance(key), method)(*args, **kwargs)
                try:
                    for item in generator:
                        if not offer("item", item):
                            break
                finally:
                    generator.close()
            except BaseException as exc:  # handed to the caller, who re-raises it
                offer("error", exc)
            else:
                offer("done", _DONE)

        self._on_thread(key, produce)
        try:
            while True:
                kind, value = items.get()
                if kind == "done":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            stop.set()  # the producer notices within 0.1 s and closes the generator

    def shutdown(self) -> None:
        """Stop every service thread (instances are dropped)."""
        with self._guard:
            for executor in self._threads.values():
                executor.shutdown(wait=False, cancel_futures=True)
            self._threads.clear()
            self._instances.clear()


class ServiceProxy:
    """Stands in for a service instance: attribute access returns a function that calls through the backend."""

    def __init__(self, key: ServiceKey) -> None:
        self._key = key

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)

        if is_streaming(self._key.cls, method):
            def call(*args: Any, **kwargs: Any) -> Any:
                return get_backend().stream(self._key, method, args, kwargs)
        else:
            def call(*args: Any, **kwargs: Any) -> Any:
                return get_backend().call(self._key, method, args, kwargs)

        call.__name__ = method
        return call

    def __repr__(self) -> str:
        return f"<service {self._key.name} via {type(get_backend()).__name__}>"


_backend: Backend = LocalBackend()


def get_backend() -> Backend:
    """The backend services are called through in this process."""
    return _backend


def set_backend(backend: Backend) -> None:
    """Swap the backend (e.g. to Ray Serve handles); demos need no change."""
    global _backend
    _backend = backend


_collectors: list[list[ServiceKey]] = []


def connect(cls: type, *args: Any) -> Any:
    """A handle on the service `cls(*args)`; its methods are called like the instance's own."""
    key = ServiceKey(cls, tuple(args))
    for collected in _collectors:
        if key not in collected:
            collected.append(key)
    return ServiceProxy(key)


@contextlib.contextmanager
def collecting_services() -> Iterator[list[ServiceKey]]:
    """Collect the services `connect()` is asked for inside the block, in order (what a Ray Serve app deploys)."""
    collected: list[ServiceKey] = []
    _collectors.append(collected)
    try:
        yield collected
    finally:
        _collectors.remove(collected)
