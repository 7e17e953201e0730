"""Training jobs off the request path: a bounded queue, a concurrency limit, hard caps, Cancel and progress events.

    runner = JobRunner()
    job_id = runner.submit("lora on rotten tomatoes", lambda ctx: train(..., on_event=ctx.report,
                                                                          should_stop=ctx.should_stop))
    runner.status(job_id)   # a plain, picklable snapshot: state, step/total, ETA, losses, metrics, result
    runner.cancel(job_id)   # the job stops at its next step

A job is a function of a `JobContext`; it reports events (`step`, `total`, `loss`, optionally `metric`) and asks
`should_stop()` once per step, which answers with the reason to stop: Cancel, or a hard cap on steps, wall time or
memory. Jobs run on the runner's own threads (`max_concurrent` of them), so a web request only submits and polls.

Where a training run happens is this module's decision, never the demo's: a demo describes its run once as a
`TrainingJob` (a function of a `TrainingWorker`, and how to rebuild the result from the files it wrote) and calls
`run_training(job, context)` inside its job. In one process the run happens on the job's thread; when the gallery
runs on Ray it spreads over a Ray Train `TorchTrainer` (`run_ray_train`), whose progress and Cancel are relayed
through a small actor, so neither the demo nor the page can tell the difference.
"""

from __future__ import annotations

import itertools
import logging
import re
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from txgallery.limits import (
    MAX_FINETUNE_CONCURRENT,
    MAX_FINETUNE_MEMORY_MB,
    MAX_FINETUNE_QUEUED,
    MAX_FINETUNE_SECONDS,
    MAX_FINETUNE_STEPS,
    InputError,
)

log = logging.getLogger(__name__)

STATES = ("queued", "running", "done", "failed", "cancelled")
CANCELLING = "cancelling…"  # the message of a job asked to stop, until it reaches its next step


@dataclass(frozen=True)
class Caps:
    """Hard limits on one job; reaching one stops the job at its next step, with the reason in its message."""

    max_steps: int = MAX_FINETUNE_STEPS
    max_seconds: float = MAX_FINETUNE_SECONDS
    max_memory_mb: float = MAX_FINETUNE_MEMORY_MB


@dataclass
class JobStatus:
    """A snapshot of one job for the UI (plain data: it crosses threads and processes)."""

    job_id: str
    name: str
    owner: str
    state: str
    message: str = ""
    step: int = 0
    total: int = 0
    elapsed: float = 0.0
    eta: float | None = None
    queue_position: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    metrics: list[tuple[int, float]] = field(default_factory=list)
    result: Any = None

    @property
    def finished(self) -> bool:
        """Whether the job will change no more."""
        return self.state in ("done", "failed", "cancelled")


def memory_mb() -> float:
    """Memory this process holds now: CUDA memory allocated when a GPU is in use, else resident set size."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.memory_allocated() / 2**20
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class JobContext:
    """What a running job sees: `report(event)` for progress and `should_stop()` for Cancel and the caps."""

    def __init__(self, status: JobStatus, caps: Caps, cancelled: threading.Event, lock: threading.Lock) -> None:
        self._status, self._caps, self._cancelled, self._lock = status, caps, cancelled, lock
        self._started = time.monotonic()
        self._memory_at_start = memory_mb()
        self.stop_reason = ""

    def report(self, event: dict) -> None:
        """Record one progress event: `step`, `total`, `loss`, optionally `metric` (held-out accuracy)."""
        with self._lock:
            status = self._status
            status.step, status.total = int(event["step"]), int(event.get("total", status.total))
            status.elapsed = time.monotonic() - self._started
            if "loss" in event:
                status.losses.append((status.step, float(event["loss"])))
            if "metric" in event:
                status.metrics.append((status.step, float(event["metric"])))
            per_step = status.elapsed / max(status.step, 1)
            status.eta = per_step * max(status.total - status.step, 0)
            status.message = CANCELLING if self._cancelled.is_set() else str(event.get("message", ""))

    def should_stop(self) -> str:
        """The reason to stop now ("" to go on): Cancel, or a cap on steps, time or memory."""
        if self._cancelled.is_set():
            self.stop_reason = "cancelled"
        elif self._status.step >= self._caps.max_steps:
            self.stop_reason = f"stopped at the cap of {self._caps.max_steps} steps"
        elif time.monotonic() - self._started > self._caps.max_seconds:
            self.stop_reason = f"stopped at the time cap of {self._caps.max_seconds:.0f} s"
        elif (grown := memory_mb() - self._memory_at_start) > self._caps.max_memory_mb:
            self.stop_reason = f"stopped: memory grew by {grown:.0f} MB, above the cap of {self._caps.max_memory_mb:.0f} MB"
        return self.stop_reason


@dataclass
class _Job:
    status: JobStatus
    fn: Callable[[JobContext], Any]
    cancelled: threading.Event = field(default_factory=threading.Event)


class JobRunner:
    """Runs jobs on `max_concurrent` threads; at most `max_queued` wait, and each owner has one job at a time."""

    def __init__(self, max_concurrent: int = MAX_FINETUNE_CONCURRENT, max_queued: int = MAX_FINETUNE_QUEUED,
                 caps: Caps = Caps()) -> None:
        self.caps = caps
        self.max_queued = max_queued
        self._pool = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="txgallery-job")
        self._jobs: dict[str, _Job] = {}
        self._order: list[str] = []  # submission order, for queue positions
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def _waiting(self) -> list[str]:
        return [j for j in self._order if self._jobs[j].status.state == "queued"]

    def submit(self, name: str, fn: Callable[[JobContext], Any], owner: str = "") -> str:
        """Queue `fn(ctx)`; returns the job id, or raises `InputError` when the queue is full or the owner is busy."""
        with self._lock:
            if owner and any(j.status.owner == owner and not j.status.finished for j in self._jobs.values()):
                raise InputError("You already have a training run in progress; wait for it or cancel it first.")
            waiting = len(self._waiting())
            if waiting >= self.max_queued:
                raise InputError(f"The training queue is full ({waiting} runs waiting); try again in a minute.")
            job_id = f"job-{next(self._ids)}"
            job = _Job(JobStatus(job_id=job_id, name=name, owner=owner, state="queued"), fn)
            self._jobs[job_id] = job
            self._order.append(job_id)
        self._pool.submit(self._run, job)
        return job_id

    def _run(self, job: _Job) -> None:
        with self._lock:
            if job.cancelled.is_set():  # cancelled while it waited
                job.status.state, job.status.message = "cancelled", "cancelled before it started"
                return
            job.status.state, job.status.message = "running", "starting…"
        context = JobContext(job.status, self.caps, job.cancelled, self._lock)
        try:
            result = job.fn(context)
            with self._lock:
                job.status.result = result
                if job.cancelled.is_set():
                    job.status.state, job.status.message = "cancelled", f"cancelled at step {job.status.step}"
                else:
                    job.status.state = "done"
                    job.status.message = context.stop_reason or "finished"
        except Exception as exc:  # the job's own message (InputError) or a bug: either way the queue moves on
            if not isinstance(exc, InputError):
                log.error("training job %s failed", job.status.job_id, exc_info=exc)
            with self._lock:
                job.status.state = "failed"
                job.status.message = str(exc) if isinstance(exc, InputError) else f"failed: {type(exc).__name__}: {exc}"

    def unfinished(self) -> int:
        """How many jobs are queued or running."""
        with self._lock:
            return sum(not job.status.finished for job in self._jobs.values())

    def status(self, job_id: str) -> JobStatus:
        """A copy of the job's current status."""
        with self._lock:
            if job_id not in self._jobs:
                raise InputError(f"There is no training job {job_id!r} (it may have been cleaned up).")
            status = self._jobs[job_id].status
            waiting = self._waiting()
            return JobStatus(**{**status.__dict__, "losses": list(status.losses), "metrics": list(status.metrics),
                                "queue_position": waiting.index(job_id) + 1 if job_id in waiting else 0})

    def cancel(self, job_id: str) -> bool:
        """Ask the job to stop at its next step (or never start); False when it had already finished."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status.finished:
                return False
            job.cancelled.set()
            job.status.message = CANCELLING
            return True

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.05) -> JobStatus:
        """Block until the job finishes (or `timeout` seconds pass); returns its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (status := self.status(job_id)).finished and (deadline is None or time.monotonic() < deadline):
            time.sleep(poll)
        return status

    def forget(self, job_id: str) -> None:
        """Cancel the job if it runs and drop its record (session cleanup)."""
        self.cancel(job_id)
        with self._lock:
            if job_id in self._jobs and self._jobs[job_id].status.finished:
                del self._jobs[job_id]
                self._order.remove(job_id)


# --- where a training run happens ------------------------------------------------------------------------------------


def _no_report(event: dict) -> None:
    return None


def _go_on() -> str:
    return ""


def _as_it_is(model: Any) -> Any:
    return model


@dataclass
class TrainingWorker:
    """What a training function sees on one worker: its rank among `world`, progress and stop relays, where to write.

    In one process there is a single worker (rank 0 of 1); on Ray Train every worker takes a share of each batch and
    `prepare` wraps the model for data-parallel training (DistributedDataParallel).
    """

    out_dir: Path  # rank 0 writes what it trained here
    rank: int = 0
    world: int = 1
    report: Callable[[dict], None] = _no_report  # progress events (the first worker's reach the page)
    should_stop: Callable[[], str] = _go_on  # Cancel and the caps: the reason to stop, "" to go on
    prepare: Callable[[Any], Any] = _as_it_is


@dataclass(frozen=True)
class TrainingJob:
    """One training run, written once for every runtime.

    `train(worker)` runs on every worker and rank 0 writes what it trained to `worker.out_dir`; in one process its
    return value is the result. Where the run happened elsewhere, those files arrive in `out_dir` and
    `reload(out_dir)` rebuilds the result from them.
    """

    train: Callable[[TrainingWorker], Any]  # travels to the workers: a module-level function or a partial of one
    out_dir: str
    reload: Callable[[Path], Any]
    workers: int = 2  # Ray Train workers, when the gallery runs on Ray


def run_training(job: TrainingJob, context: JobContext | None = None) -> Any:
    """Run `job` where the gallery runs: over Ray Train workers when this process is on Ray, else on this thread."""
    if ray_is_running():
        return train_on_ray(job, job.workers, context)
    return train_here(job, context.report if context else None, context.should_stop if context else None)


def train_here(job: TrainingJob, report: Callable[[dict], None] | None = None,
               should_stop: Callable[[], str] | None = None) -> Any:
    """Run `job` in this process as its only worker; returns what `job.train` returns."""
    return job.train(TrainingWorker(Path(job.out_dir), report=report or _no_report, should_stop=should_stop or _go_on))


def train_on_ray(job: TrainingJob, num_workers: int, context: JobContext | None = None) -> Any:
    """Run `job` on `num_workers` Ray Train workers, bring rank 0's files to `job.out_dir` and `job.reload` them.

    A worker's `InputError` (a message for the user, e.g. a loss that became NaN) is raised here as itself.
    """
    try:
        outcome = run_ray_train(_ray_worker_loop, {"train": job.train}, num_workers, context)
    except Exception as exc:  # Ray wraps the worker's own exception
        user_error = _worker_input_error(exc)
        if user_error is not None:
            raise user_error from None
        raise
    out_dir = Path(job.out_dir)
    with outcome.checkpoint.as_directory() as directory:
        shutil.copytree(directory, out_dir, dirs_exist_ok=True)
    return job.reload(out_dir)


def _ray_worker_loop(loop_config: dict) -> None:
    """What each Ray Train worker runs: the job's `train` at its rank; rank 0's files become the checkpoint."""
    import ray.train
    import ray.train.torch

    progress: RayProgress = loop_config["progress"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    with tempfile.TemporaryDirectory() as directory:
        loop_config["train"](TrainingWorker(Path(directory), rank=rank, world=world, report=progress.report,
                                            should_stop=progress.should_stop,
                                            prepare=ray.train.torch.prepare_model))
        checkpoint = ray.train.Checkpoint.from_directory(directory) if rank == 0 else None
        ray.train.report({"world": world}, checkpoint=checkpoint)  # every worker reports, or the others wait


def _input_error_classes(cls: type = InputError) -> list[type]:
    return [cls] + [sub for child in cls.__subclasses__() for sub in _input_error_classes(child)]


def _worker_input_error(exc: BaseException) -> InputError | None:
    """The `InputError` a worker raised, found inside Ray's wrappers (or rebuilt from their text); None if none."""
    seen, pending = set(), [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, InputError):
            return current
        pending += [current.__cause__, current.__context__, getattr(current, "_base_exc", None),
                    *getattr(current, "worker_failures", {}).values()]
    # most specific first, so that a subclass's name is not read as its parent's
    for cls in sorted(_input_error_classes(), key=lambda c: -len(c.__mro__)):
        found = re.search(rf"\b{cls.__name__}: (.*)", str(exc))
        if found:
            return cls(found.group(1))
    return None


# --- Ray Train -------------------------------------------------------------------------------------------------------


def ray_is_running() -> bool:
    """Whether this process is connected to Ray (the gallery runs on Ray)."""
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized()


_sink_class = None


def _progress_sink():
    """A tiny Ray actor holding events from the first worker and the driver's stop request (created lazily)."""
    global _sink_class
    if _sink_class is None:
        import ray

        @ray.remote(num_cpus=0)
        class ProgressSink:
            def __init__(self) -> None:
                self.events: list[dict] = []
                self.reason = ""

            def put(self, event: dict) -> None:
                self.events.append(event)

            def drain(self) -> list[dict]:
                events, self.events = self.events, []
                return events

            def stop(self, reason: str) -> None:
                self.reason = reason

            def stop_reason(self) -> str:
                return self.reason

        _sink_class = ProgressSink
    return _sink_class


class RayProgress:
    """The worker-side end of the relay: `report` and `should_stop` like a `JobContext`'s (picklable)."""

    def __init__(self, sink) -> None:
        self.sink = sink

    def report(self, event: dict) -> None:
        """Send one event to the driver (does not wait)."""
        self.sink.put.remote(event)

    def should_stop(self) -> str:
        """The driver's reason to stop ("" to go on)."""
        import ray

        return ray.get(self.sink.stop_reason.remote())


def run_ray_train(train_loop: Callable[[dict], None], loop_config: dict, num_workers: int,
                  context: JobContext | None = None, storage_path: str | None = None, name: str = "finetune"):
    """Run `train_loop(loop_config)` on `num_workers` Ray Train workers (GPUs when present); returns the `Result`.

    The loop finds a `RayProgress` under `loop_config["progress"]`; events it reports reach `context`, and the
    context's stop reasons (Cancel, caps) reach it, every half second.
    """
    import torch
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from txgallery.paths import home

    sink = _progress_sink().remote()
    trainer = TorchTrainer(
        train_loop, train_loop_config={**loop_config, "progress": RayProgress(sink)},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=torch.cuda.is_available()),
        run_config=RunConfig(name=f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{next(_ray_runs)}",
                             storage_path=storage_path or str(home() / "ray-train")),
    )
    finished = threading.Event()

    def relay() -> None:  # driver side: events in, stop requests out
        import ray

        while not finished.wait(0.5):
            for event in ray.get(sink.drain.remote()):
                if context is not None:
                    context.report(event)
            if context is not None and (reason := context.should_stop()):
                sink.stop.remote(reason)

    relay_thread = threading.Thread(target=relay, name="txgallery-ray-relay", daemon=True)
    relay_thread.start()
    try:
        return trainer.fit()
    finally:
        finished.set()
        relay_thread.join()
        if context is not None:
            import ray

            for event in ray.get(sink.drain.remote()):
                context.report(event)


_ray_runs = itertools.count(1)
