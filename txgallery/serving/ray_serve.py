"""The whole gallery on Ray Serve: one UI ingress, one deployment per model service, reached through the serving seam.

    serve run txgallery.serving.ray_serve:app                                   # every installed demo, default options
    serve run txgallery.serving.ray_serve:build_app replicas=2 num_gpus=0.25    # the builder, with arguments
    serve deploy deploy/serve_config.yaml                               # on a cluster (deploy/README.md)
    serve deploy CONFIG   # GalleryIngress user_config `ui_shards: 2`, an app of `build_ui_shard` at /ui-1 (see its end)
    txgallery ray serve                                                 # a local Ray on 127.0.0.1

How it fits together:
- the builder builds the gallery once in the driver; every `connect(Cls, *args)` a demo makes is collected
  (`serving.collecting_services()`) and becomes one `ModelService` deployment named after it
  (`SentimentClassifier-embedded`), with its own replicas, autoscaling and `ray_actor_options` (fractional GPUs);
- `GalleryIngress` (FastAPI + `gr.mount_gradio_app`, ONE replica: Gradio keeps session state in memory) builds the
  same gallery again with a `RayServeBackend` installed, so the demos' proxies call DeploymentHandles instead of
  local instances — no demo changes;
- inside a model replica the instance runs on a `LocalBackend` (one model thread, as in `txgallery serve`).
  Batchable methods (a `batched_methods` attribute on the service class, or `user_config`) take a list
  and return a list of the same length; concurrent calls are concatenated by a `CallBatcher` into one forward pass
  and split again, each batch taking every call that waited while the previous one ran (what that gains:
  BENCHMARKS.md, "Serving" and "Capacity"). Generator methods stream through
  `handle.options(stream=True)`; callables passed as arguments (progress callbacks) are relayed back as events of a
  stream and run where the caller is (the UI replica).
- each model replica's health check (Serve's `check_health`, every 10 s) runs its service's `check_health`, a small
  real forward, on the model's thread: a model that raises or does not answer in `HEALTH_PROBE_TIMEOUT_S` makes the
  replica unhealthy, and Serve replaces it (`ServiceHealth`).

UI shards: one UI replica is the cluster's limit (BENCHMARKS.md, "Capacity"), and it cannot have two replicas, since
Serve's proxy sends each request to any replica while a Gradio session (its queue, its uploads) lives in one. So more
UI runs as more applications: `build_ui_shard` makes one holding only a `GalleryIngress`, on its own route prefix
`/ui-<shard>`, whose handles reach the main application's model deployments by name. With `ui_shards: N` in the main
application's ingress's `user_config` (`IngressConfig`, applied in place) that ingress (shard 0, at `/`)
answers a browser's GET of the landing page or of a page (`/<slug>?...`) with a redirect to the next shard's prefix in
turn, so new visitors spread over the shards and every later request of their sessions stays on one. Programs use `/`
or a shard's prefix directly (deploy/README.md, "UI shards").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import itertools
import logging
import queue
import re
import time
from collections import Counter, defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray import serve
from ray.exceptions import RayActorError, RayTaskError, TaskCancelledError

from txgallery.lib.threads import prefer_passive_openmp
from txgallery.limits import HEALTH_PROBE_TIMEOUT_S, SERVICE_CALL_MAX_S
from txgallery.serving.seam import (
    LocalBackend,
    ServiceKey,
    ServiceUnavailable,
    collecting_services,
    set_backend,
)

log = logging.getLogger(__name__)

INGRESS_NAME = "GalleryIngress"
MODELS_APP = "txgallery"  # the application name the shipped config gives `build_app`
# UI shard k (k ≥ 1) is served under this prefix + k; shard 0 is the main application, at `/`
SHARD_PREFIX = "/ui-"
# JSON: which replica of which deployment answered how many calls, and which services ran inside the UI replica
SERVED_ROUTE = "/txgallery/served"
# appended to the badge (`describe()`) of a service nobody declared when the app was built, e.g. a model typed into a page
IN_UI_REPLICA_NOTE = ("\n\n⚠️ **Runs inside the UI replica:** this model was not configured when the Ray Serve app was "
                      "built, so it has no deployment of its own (no GPU replica, no batching) and shares the UI's "
                      "CPU. An operator gives it one by configuring it (`models:` in the Serve config).")



class GalleryArgs(BaseModel):
    """Arguments of the application builder (`serve run ... key=value`, or `args:` in a Serve config)."""

    demos: list[str] = []  # only these demos (default: every installed one)
    models: list[str] = []  # as `txgallery serve --model`: "slug=ref[,ref]"
    config: str | None = None  # TOML settings file
    replicas: int = 1  # replicas per model deployment (a config's `deployments:` entry overrides it)
    num_cpus: float = 0.5  # per model replica (logical CPUs, for scheduling)
    num_gpus: float = 0.0  # per model replica; 0.25 puts four replicas on one GPU
    max_batch_size: int = 16  # calls joined into one forward pass by batchable methods
    batch_wait_timeout_s: float = 0.01  # how long the first call of a batch waits for company
    max_ongoing_requests: int = 64  # per model replica (must exceed max_batch_size, or batches never fill)
    ui_concurrency: int = 64  # events the UI replica runs at once; the model deployments queue and batch them
    ui_num_cpus: float = 0.25
    # a call whose replica died under it is retried on another replica, with growing pauses, for up to this long
    # (model methods here are pure functions); Serve's router may need a few seconds to learn the replica is gone
    retry_window_s: float = 30.0
    # per deployment, by class name or deployment name: Serve options such as num_replicas, autoscaling_config,
    # ray_actor_options, max_ongoing_requests, user_config (a config's `deployments:` section can do the same)
    deployments: dict[str, dict[str, Any]] = {}

    @field_validator("demos", "models", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # `serve run ... models=sentiment=embedded;attention=embedded` passes one string
        return [part for part in value.split(";") if part] if isinstance(value, str) else value


class IngressConfig(BaseModel):
    """The UI ingress's `user_config`, which Serve applies in place, without restarting a replica of the application
    (a change of the application's `args` would restart every deployment in it)."""

    model_config = ConfigDict(extra="forbid")
    # how many UI shards the operator runs, the main application's ingress (shard 0) included: with more than one, it
    # redirects browsers' page visits to `/ui-<k>/...` in turn (the applications of `build_ui_shard`)
    ui_shards: int = Field(1, ge=1)


class UiShardArgs(GalleryArgs):
    """Arguments of `build_ui_shard`: the main application's (demos, models, config: the same, so that the
    deployment names match), which application holds the model deployments, and this shard's number."""

    models_app: str = MODELS_APP
    shard: int = Field(1, ge=1)  # shard 0 is the main application's ingress
    # `serve deploy` builds the applications side by side: a shard may start before `models_app` has registered its
    # deployments, and waits for them this long before it fails with a message
    models_wait_s: float = 300.0


# Deployments get their service class as a `module:QualName` path, not as the class: unpickling a class imports its
# module (and torch) before the replica's `__init__` can set the OpenMP policy that torch reads once, at import.
def class_path(cls: type) -> str:
    """`module:QualName` of a class, importable in another process."""
    return f"{cls.__module__}:{cls.__qualname__}"


def import_class(path: str) -> type:
    """The class named by `module:QualName`."""
    module, _, name = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _arg_label(arg: Any) -> str:
    ref = getattr(arg, "ref", None)  # a store.ModelSource: its embedded name, directory name or hub id
    if isinstance(ref, str):
        return Path(ref).name if "/" in ref and Path(ref).is_absolute() else ref.replace("/", "--")
    return str(arg) if isinstance(arg, (str, int, float, bool)) else type(arg).__name__


def deployment_names(keys: list[ServiceKey]) -> dict[ServiceKey, str]:
    """A stable, readable deployment name per service, e.g. `SentimentClassifier-embedded`."""
    names: dict[ServiceKey, str] = {}
    for key in keys:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join([key.cls.__name__, *map(_arg_label, key.args)]))[:80]
        name, n = base, 2
        while name in names.values():
            name, n = f"{base}-{n}", n + 1
        names[key] = name
    return names


def batched_methods(cls: type) -> tuple[str, ...]:
    """The methods of `cls` that are batched when nothing else is configured."""
    return tuple(getattr(cls, "batched_methods", ()))


# --- one model service as a deployment --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackRef:
    """Stands for the caller's i-th callable argument, which cannot travel to another process."""

    index: int


_END = object()


class CallBatcher:
    """Joins concurrent calls of one batchable method into one call, each batch formed when the previous one is done.

    A batch takes every call waiting then (up to `max_batch_size` calls): those that arrived while the previous batch
    ran, so under load batches fill. A call that finds the service idle waits up to `wait_s` for company. Ray's
    `@serve.batch` (2.60) forms its next batch while the previous one still runs, from the calls that arrive within
    its wait of the first, so under load its batches stay small (BENCHMARKS.md, "Capacity").
    """

    def __init__(self, run: Callable[[list[list]], Awaitable[list]], max_batch_size: int, wait_s: float) -> None:
        self.run, self.max_batch_size, self.wait_s = run, max_batch_size, wait_s
        self.waiting: deque[tuple[list, asyncio.Future, float]] = deque()  # (items, caller's future, arrival)
        self.arrived = asyncio.Event()
        self.worker: asyncio.Task | None = None

    async def __call__(self, items: list) -> Any:
        """The result `run` gave for this call's items, once its batch has run."""
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((items, future, time.monotonic()))
        self.arrived.set()
        if self.worker is None or self.worker.done():
            self.worker = asyncio.ensure_future(self._work())
        return await future

    async def _work(self) -> None:
        while self.waiting:
            deadline = self.waiting[0][2] + self.wait_s  # from the first call's arrival, not from now
            while len(self.waiting) < self.max_batch_size and (left := deadline - time.monotonic()) > 0:
                self.arrived.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.arrived.wait(), left)
            taken = [self.waiting.popleft() for _ in range(min(max(1, self.max_batch_size), len(self.waiting)))]
            batch = [(items, future) for items, future, _ in taken if not future.done()]  # drop cancelled callers
            if not batch:
                continue
            try:
                results = await self.run([items for items, _ in batch])
            except BaseException as exc:  # every caller of the batch hears of it; a cancelled worker stops here
                for _, future in batch:
                    if future.done():
                        continue
                    if isinstance(exc, Exception):
                        future.set_exception(exc)
                    else:
                        future.cancel()
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)


class ServiceHealth:
    """A model service's health, as Serve's `check_health` asks for it: the service's own `check_health` (a small
    forward of its model) on the service's thread, where a stuck model would hold it.

    A probe queued behind a call still within `SERVICE_CALL_MAX_S` (an efficiency run takes minutes) stays queued and
    counts as healthy: the thread is busy, not stuck. A service whose model never loaded counts as healthy too: its
    pages say why on every call, and a new replica would not load it either.
    """

    def __init__(self, backend: LocalBackend, key: ServiceKey, timeout_s: float = HEALTH_PROBE_TIMEOUT_S,
                 busy_limit_s: float = SERVICE_CALL_MAX_S) -> None:
        self.backend, self.key, self.timeout_s, self.busy_limit_s = backend, key, timeout_s, busy_limit_s
        self.probe: concurrent.futures.Future | None = None  # the last probe, which may still be queued

    async def check(self) -> None:
        """Return if the service answers (or is busy within its limit); raise, saying why, if not."""
        if not self.backend.started(self.key) or not hasattr(self.key.cls, "check_health"):
            return
        if self.probe is None or self.probe.done():
            self.probe = self.backend.submit(self.key, "check_health")
        try:  # shielded: a probe still queued at the timeout stays queued, and the next check waits for it again
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self.probe)), self.timeout_s)
        except TimeoutError:
            busy = self.backend.busy_for(self.key) or 0.0
            if self.probe.running() and busy >= self.timeout_s / 2:  # one that began late (behind a call) gets a round
                raise RuntimeError(f"{self.key.name}: its model has not answered a small forward in "
                                   f"{busy:.0f} s") from None
            if busy > self.busy_limit_s:
                raise RuntimeError(f"{self.key.name}: its thread has been on one call for {busy:.0f} s, longer than "
                                   f"SERVICE_CALL_MAX_S ({self.busy_limit_s:.0f} s)") from None


@serve.deployment
class ModelService:
    """One service class (`module:Class` + its arguments) as a deployment; its methods are called by name."""

    def __init__(self, path: str, args: tuple) -> None:
        prefer_passive_openmp()  # before the service's module imports torch
        self.key = ServiceKey(import_class(path), tuple(args))
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.local = LocalBackend()
        self.batched = set(batched_methods(self.key.cls))
        self.max_batch_size, self.batch_wait_timeout_s = 16, 0.01
        self.batchers: dict[str, CallBatcher] = {}
        self.health = ServiceHealth(self.local, self.key)
        try:  # load the model now, so a replica counts as ready once it can answer
            self.local.start(self.key)
        except Exception as exc:  # a model that cannot load is reported per call (the page says why), not fatal
            log.warning("%s could not start: %s", self.key.name, exc)

    async def check_health(self) -> None:
        """Serve's health check: the service's own small forward answers (`ServiceHealth`)."""
        await self.health.check()

    def reconfigure(self, config: dict) -> None:
        """Apply `user_config`: `max_batch_size`, `batch_wait_timeout_s`, `batched_methods`."""
        self.max_batch_size = int(config.get("max_batch_size", self.max_batch_size))
        self.batch_wait_timeout_s = float(config.get("batch_wait_timeout_s", self.batch_wait_timeout_s))
        self.batched = set(config.get("batched_methods", self.batched))
        for batcher in self.batchers.values():
            batcher.max_batch_size, batcher.wait_s = self.max_batch_size, self.batch_wait_timeout_s

    async def _run(self, method: str, args: tuple, kwargs: dict) -> Any:
        # awaited on the service's own thread, with no pool thread waiting on it; shielded: a cancelled caller does
        # not drop a call already queued for the model (a batch's other callers share it)
        return await asyncio.shield(asyncio.wrap_future(self.local.submit(self.key, method, args, kwargs)))

    def _batcher(self, method: str) -> CallBatcher:
        if method not in self.batchers:
            async def run_batch(calls: list[list]) -> list[tuple[bool, Any]]:
                try:
                    results = await self._run(method, ([x for call in calls for x in call],), {})
                except Exception:  # one bad call must not fail its neighbours: run them one by one
                    return [await self._run_one(method, call) for call in calls]
                out, start = [], 0
                for call in calls:
                    out.append((True, results[start:start + len(call)]))
                    start += len(call)
                return out

            self.batchers[method] = CallBatcher(run_batch, self.max_batch_size, self.batch_wait_timeout_s)
        return self.batchers[method]

    async def _run_one(self, method: str, items: list) -> tuple[bool, Any]:
        try:
            return True, await self._run(method, (items,), {})
        except Exception as exc:
            return False, exc

    async def call(self, method: str, args: tuple, kwargs: dict) -> tuple[str, Any]:
        """`instance.method(*args, **kwargs)`, batched with concurrent calls when the method is batchable.

        Returns (replica id, result), so the caller can tell which replica answered.
        """
        if method in self.batched and len(args) == 1 and not kwargs and isinstance(args[0], list) and args[0]:
            ok, value = await self._batcher(method)(args[0])
            if not ok:
                raise value
            return self.replica, value
        return self.replica, await self._run(method, args, kwargs)

    async def stream(self, method: str, args: tuple, kwargs: dict):
        """Items of the generator `instance.method(...)` as they come; cancelling stops the generator."""
        items = self.local.stream(self.key, method, args, kwargs)
        reader = ThreadPoolExecutor(max_workers=1)  # next() and close() must not overlap
        loop = asyncio.get_running_loop()
        try:
            while (item := await loop.run_in_executor(reader, next, items, _END)) is not _END:
                yield item
        finally:
            reader.submit(items.close)
            reader.shutdown(wait=False)

    async def relay(self, method: str, args: tuple, kwargs: dict):
        """A call whose arguments include callbacks: yields ("callback", i, args, kwargs) events, then
        ("result", replica id, value)."""
        events: queue.Queue = queue.Queue()

        def restore(value: Any) -> Any:
            if isinstance(value, CallbackRef):
                return lambda *a, **k: events.put(("callback", value.index, a, k))
            return value

        job = asyncio.ensure_future(self._run(method, tuple(map(restore, args)),
                                              {k: restore(v) for k, v in kwargs.items()}))
        while True:
            finished = job.done()
            while not events.empty():
                yield events.get()
            if finished:
                break
            await asyncio.wait([job], timeout=0.1)
        yield ("result", self.replica, job.result())


class EchoService:
    """A model-free service: the floor of a call through a deployment (benchmarks, checks of the serving path)."""

    batched_methods = ("echo",)

    def echo(self, items: list) -> list:
        """The items, unchanged (batchable)."""
        return list(items)

    def check_health(self) -> None:
        """Answers: there is no model to run."""

    def countdown(self, n: int) -> Iterator[int]:
        """n, n-1, …, 1, one at a time (streamed)."""
        for i in range(n, 0, -1):
            yield i

    def work(self, steps: int, progress=None) -> int:
        """Reports each step to `progress(step, steps)` (a callback relayed to the caller) and returns `steps`."""
        for step in range(1, steps + 1):
            if progress:
                progress(step, steps)
        return steps


# --- the backend the UI replica calls through -------------------------------------------------------------------------


def _cause(exc: RayTaskError) -> BaseException:
    """The exception the service raised (an `InputError` stays an `InputError`, so the UI shows its message)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, Exception) else exc


# How a call whose replica died surfaces: as an actor error, or as a cancellation of the request (nobody here cancels a
# plain call). asyncio's CancelledError is a BaseException: let out of the seam, it would cancel the Gradio event's
# task instead of failing the call with a message.
_REPLICA_GONE = (RayActorError, TaskCancelledError, asyncio.CancelledError, concurrent.futures.CancelledError)


def _replica_gone(exc: BaseException) -> bool:
    return isinstance(_cause(exc) if isinstance(exc, RayTaskError) else exc, _REPLICA_GONE)


class _ReplicaRetry:
    """Pauses between attempts at one call whose replica died, and gives up with a message after the window."""

    FIRST_PAUSE_S, MAX_PAUSE_S = 0.1, 2.0

    def __init__(self, backend: RayServeBackend, key: ServiceKey, method: str) -> None:
        self.backend, self.key, self.method = backend, key, method
        self.pause, self.deadline = self.FIRST_PAUSE_S, None

    def after(self, exc: BaseException) -> None:
        """Wait before the next attempt, or raise `ServiceUnavailable` when the window is spent."""
        name = self.backend.names[self.key]
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + self.backend.retry_window_s
            self.backend.retried += 1
        if now + self.pause > self.deadline:
            raise ServiceUnavailable(f"The model service {name} is unavailable: its replicas stopped during this call "
                                     f"and retries for {self.backend.retry_window_s:.0f} s found none that answered. "
                                     "Try again in a moment.") from None
        log.warning("a replica of %s died during a call to %s (%s); retrying in %.1f s",
                    name, self.method, type(exc).__name__, self.pause)
        time.sleep(self.pause)
        self.pause = min(self.pause * 2, self.MAX_PAUSE_S)


class RayServeBackend:
    """The serving seam over Ray Serve: each service declared at build time is a deployment reached by its handle."""

    def __init__(self, handles: dict[ServiceKey, Any], names: dict[ServiceKey, str],
                 retry_window_s: float = 30.0) -> None:
        self.handles, self.names, self.retry_window_s = handles, names, retry_window_s
        self.local = LocalBackend()  # services nobody declared at build time (logged once each)
        self.served: dict[str, Counter] = defaultdict(Counter)  # deployment -> replica id -> calls answered
        self.retried = 0  # calls repeated because their replica died while serving them
        self._warned: set[ServiceKey] = set()

    def _handle(self, key: ServiceKey):
        handle = self.handles.get(key)
        if handle is None and key not in self._warned:
            self._warned.add(key)
            log.warning("%s was not declared when the app was built; it runs inside the UI replica", key.name)
        return handle

    def call(self, key: ServiceKey, method: str, args: tuple, kwargs: dict) -> Any:
        """`instance.method(...)` on a replica of the service's deployment; the result comes back here."""
        handle = self._handle(key)
        if handle is None:
            value = self.local.call(key, method, args, kwargs)
            if method == "describe" and isinstance(value, str):  # the page's model badge: say where this one runs
                value += IN_UI_REPLICA_NOTE
            return value
        if any(callable(v) for v in (*args, *kwargs.values())):
            return self._relay(key, handle, method, args, kwargs)
        retry = _ReplicaRetry(self, key, method)
        while True:
            try:
                replica, value = handle.call.remote(method, args, kwargs).result()
                break
            except (RayTaskError, *_REPLICA_GONE) as exc:
                if not _replica_gone(exc):
                    raise _cause(exc) from None
                retry.after(exc)
        self.served[self.names[key]][replica] += 1
        return value

    def stream(self, key: ServiceKey, method: str, args: tuple, kwargs: dict) -> Iterator[Any]:
        """Items of a generator method as the replica produces them; closing the iterator cancels it there.

        A replica that dies before the first item is retried like a call; after it, the stream ends with a message
        (its items so far have been shown, and starting over would repeat them).
        """
        handle = self._handle(key)
        if handle is None:
            yield from self.local.stream(key, method, args, kwargs)
            return
        retry, started = _ReplicaRetry(self, key, method), False
        while True:
            responses = handle.options(stream=True).stream.remote(method, args, kwargs)
            try:
                for item in responses:
                    started = True
                    yield item
                return
            except (RayTaskError, *_REPLICA_GONE) as exc:
                if not _replica_gone(exc):
                    raise _cause(exc) from None
                if started:
                    raise ServiceUnavailable(f"The model service {self.names[key]} stopped in the middle of this "
                                             "answer. Try again.") from None
                retry.after(exc)
            finally:
                responses.cancel()

    def _relay(self, key: ServiceKey, handle, method: str, args: tuple, kwargs: dict) -> Any:
        callbacks: list = []

        def park(value: Any) -> Any:
            if callable(value):
                callbacks.append(value)
                return CallbackRef(len(callbacks) - 1)
            return value

        # a replica that dies is retried like a call: the method starts over and reports its progress again
        parked_args, parked_kwargs = tuple(map(park, args)), {k: park(v) for k, v in kwargs.items()}
        retry = _ReplicaRetry(self, key, method)
        while True:
            events = handle.options(stream=True).relay.remote(method, parked_args, parked_kwargs)
            try:
                for event in events:
                    if event[0] == "callback":
                        callbacks[event[1]](*event[2], **event[3])
                    else:
                        self.served[self.names[key]][event[1]] += 1
                        return event[2]
                raise RuntimeError(f"{key.name}.{method} ended without a result")
            except (RayTaskError, *_REPLICA_GONE) as exc:
                if not _replica_gone(exc):
                    raise _cause(exc) from None
                retry.after(exc)

    def served_by(self) -> dict[str, dict[str, int]]:
        """Calls answered per deployment and replica since this UI replica started."""
        return {name: dict(counts) for name, counts in self.served.items()}

    def in_ui_replica(self) -> list[str]:
        """Services called that had no deployment (a demo connected them after build time): they ran here."""
        return sorted(key.name for key in self._warned)


# --- the UI ingress and the application builder -----------------------------------------------------------------------


def _configure(args: GalleryArgs) -> None:
    from txgallery import settings

    settings.configure(settings.load_settings(args.models or None, args.config))


def model_handles(names: list[str], app_name: str, wait_s: float) -> dict[str, Any]:
    """Handles of another application's deployments by name, once it has registered them all (waiting up to wait_s)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return {name: serve.get_deployment_handle(name, app_name=app_name) for name in names}
        except KeyError as exc:  # Serve's word for a deployment it does not know (yet)
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{exc.args[0]} (waited {wait_s:g} s for the application {app_name!r}): deploy "
                                   "it, and give this UI shard its demos, models and config (the deployment names "
                                   "are made from them)") from None
            time.sleep(1)


class SpreadVisitors:
    """ASGI middleware of UI shard 0: a browser's GET of the landing page or of a page goes to the shards in turn.

    Turn k = 0 serves it here; turn k ≥ 1 answers 307 to the same path and query under `/ui-<k>`. Nothing else is
    redirected: Gradio's own requests (`/gradio_api/...`, `/config`, assets) and programs' calls stay where they are
    sent, so a session's requests all reach the shard that served its page.
    """

    def __init__(self, app: Callable, pages: set[str], shards: Callable[[], int]) -> None:
        self.app, self.shards = app, shards  # read at each visit: the operator may change it in place
        self.paths = {"/"} | {f"/{slug}" for slug in pages} | {f"/{slug}/" for slug in pages}
        self.turns = itertools.count()

    def _page_visit(self, scope: dict) -> str | None:
        """The page path a browser asked for (without the application's root path), or None."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        root, path = scope.get("root_path", ""), scope["path"]
        path = path[len(root):] if root and path.startswith(root) else path
        accept = dict(scope.get("headers", ())).get(b"accept", b"")
        return path if path in self.paths and b"text/html" in accept else None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        path, shards = self._page_visit(scope), self.shards()
        shard = next(self.turns) % shards if path is not None and shards > 1 else 0
        if not shard:
            await self.app(scope, receive, send)
            return
        location = f"{scope.get('root_path', '')}{SHARD_PREFIX}{shard}{path}"
        if scope.get("query_string"):
            location += "?" + scope["query_string"].decode("latin-1")
        await send({"type": "http.response.start", "status": 307,
                    "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0"),
                                (b"cache-control", b"no-store")]})  # the next visit takes the next turn
        await send({"type": "http.response.body", "body": b""})


@serve.deployment(name=INGRESS_NAME, num_replicas=1)
@serve.ingress()
class GalleryIngress:
    """The gallery UI: FastAPI with the Gradio app mounted at `/`; one replica, since sessions live in its memory."""

    def __init__(self, args: dict, routes: list[tuple[str, tuple, str]], handles: dict[str, Any] | None) -> None:
        from txgallery.plugin import discover_demos

        self.args = UiShardArgs.model_validate(args)  # the main application passes no shard fields: shard 0
        self.shard = self.args.shard if handles is None else 0
        self.ui_shards = IngressConfig().ui_shards  # until Serve calls `reconfigure` with the user_config
        _configure(self.args)
        keys = {ServiceKey(import_class(path), tuple(service_args)): name for path, service_args, name in routes}
        if handles is None:  # a UI shard: the model deployments are the main application's, reached by name
            handles = model_handles(list(keys.values()), self.args.models_app, self.args.models_wait_s)
        self.backend = RayServeBackend({key: handles[name] for key, name in keys.items()}, keys,
                                       self.args.retry_window_s)
        set_backend(self.backend)
        self.entries = discover_demos(only=self.args.demos or None)

    def reconfigure(self, config: dict) -> None:
        """Apply `user_config` (`IngressConfig`): the number of UI shards that shard 0 spreads visitors over."""
        self.ui_shards = IngressConfig.model_validate(config).ui_shards

    async def __serve_build_asgi_app__(self):
        import gradio as gr
        from fastapi import FastAPI

        from txgallery.gallery import (
            CSS,
            build_gallery,
            keep_sessions_light,
            page_head,
            queue,
        )
        from txgallery.limits import MAX_SESSIONS, MAX_UPLOAD_SIZE

        app = FastAPI()

        @app.get(SERVED_ROUTE)
        def served() -> dict:
            return {"replicas": self.backend.served_by(), "retried": self.backend.retried,
                    "in_ui_replica": self.backend.in_ui_replica(), "shard": self.shard}

        if self.shard == 0:
            app.add_middleware(SpreadVisitors, pages={entry.slug for entry in self.entries},
                               shards=lambda: self.ui_shards)

        # Off the replica's event loop: a page may call its service while it is built (a component whose value is a
        # function is filled once then), and a handle's blocking `.result()` refuses to run on an event loop
        # ("Sync methods should not be called from within an asyncio event loop"): the page became an error page.
        blocks = await asyncio.to_thread(build_gallery, self.entries)
        # the model deployments queue and batch; the UI only has to let the calls through
        queue(blocks, self.args.ui_concurrency)
        blocks.state_session_capacity = MAX_SESSIONS  # mount_gradio_app reads it from the Blocks (launch takes it)
        app = gr.mount_gradio_app(app, blocks, path="", max_file_size=MAX_UPLOAD_SIZE, css=CSS, head=page_head(),
                                  show_error=True, ssr_mode=False)
        keep_sessions_light(blocks)
        return app


def _service_names(args: GalleryArgs) -> dict[ServiceKey, str]:
    """The deployment name of every service the chosen demos connect to, found by building the gallery once."""
    from txgallery import settings
    from txgallery.gallery import build_gallery
    from txgallery.plugin import discover_demos

    previous = settings.current()
    _configure(args)
    try:
        with collecting_services() as keys:
            build_gallery(discover_demos(only=args.demos or None))  # builds every page: no model is loaded
    finally:
        settings.configure(previous)  # the settings travel to the UI replica as args; this process keeps its own
    return deployment_names(keys)


def _routes(names: dict[ServiceKey, str]) -> list[tuple[str, tuple, str]]:
    return [(class_path(key.cls), key.args, name) for key, name in names.items()]


def _ingress(args: GalleryArgs):
    options = dict(ray_actor_options={"num_cpus": args.ui_num_cpus}, max_ongoing_requests=4 * args.ui_concurrency)
    return GalleryIngress.options(**{**options, **args.deployments.get(INGRESS_NAME, {})})


def build_app(args: dict | GalleryArgs | None = None):
    """The Serve application: one `ModelService` deployment per service the demos connect to, under one UI ingress."""
    args = GalleryArgs.model_validate(args or {}) if not isinstance(args, GalleryArgs) else args
    names = _service_names(args)
    handles = {}
    for key, name in names.items():
        options = dict(num_replicas=args.replicas, max_ongoing_requests=args.max_ongoing_requests,
                       ray_actor_options={"num_cpus": args.num_cpus, "num_gpus": args.num_gpus},
                       user_config={"max_batch_size": args.max_batch_size,
                                    "batch_wait_timeout_s": args.batch_wait_timeout_s,
                                    "batched_methods": list(batched_methods(key.cls))})
        for override in (args.deployments.get(key.cls.__name__, {}), args.deployments.get(name, {})):
            options.update(override)
        if "autoscaling_config" in options:  # Serve refuses both
            options.pop("num_replicas", None)
        handles[name] = ModelService.options(name=name, **options).bind(class_path(key.cls), key.args)
    return _ingress(args).bind(args.model_dump(), _routes(names), handles)


def build_ui_shard(args: dict | UiShardArgs | None = None):
    """One more UI shard: an application of one `GalleryIngress` that calls the model deployments of `models_app`.

    Give it the main application's `demos`, `models` and `config` (the deployment names follow from them) and serve
    it under the route prefix `/ui-<shard>`, which the main application's redirects point to.
    """
    args = UiShardArgs.model_validate(args or {}) if not isinstance(args, UiShardArgs) else args
    return _ingress(args).bind(args.model_dump(), _routes(_service_names(args)), None)


def __getattr__(name: str):
    # `serve run txgallery.serving.ray_serve:app` builds with the defaults, only when asked (importing stays cheap)
    if name == "app":
        return build_app()
    raise AttributeError(name)
