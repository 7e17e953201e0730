"""Training jobs off the request path: a bounded queue, a concurrency limit, hard caps, Cancel and progress events.

    runner = JobRunner()
    job_id = runner.submit("lora on rotten tomatoes", lambda ctx: train(..., on_event=ctx.report,
                                                                          should_stop=ctx.should_stop))
    runner.status(job_id)   # a plain, picklable snapshot: state, step/total, ETA, losses, metrics, result
    runner.cancel(job_id)   # the job stops at its next step

A job is a function of a `JobContext`; it reports events (`step`, `total`, `loss`, optionally `metric`) and asks
`should_stop()` once per step, which answers with the reason to stop: Cancel, or a hard cap on steps, wall time or
memory. Jobs run on the runner's own threads (`max_concurrent` of them), so a web request only submits and polls.
When the gallery runs on Ray, a job can spread its training over a Ray Train `TorchTrainer` (`run_ray_train`); its
progress and Cancel are relayed through a small actor, so the page cannot tell the difference.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
