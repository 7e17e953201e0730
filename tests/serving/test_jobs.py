"""The training job runner: Cancel, the bounded queue, one job per owner, hard caps, failures, two users at once;
and where a training run happens (here, or over Ray Train workers), which is this layer's decision alone."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from txgallery_demos.finetune import methods as finetune

from txgallery.lib.datasets import rotten_tomatoes_splits
from txgallery.limits import InputError
from txgallery.serving.jobs import (
    Caps,
    JobRunner,
    TrainingJob,
    TrainingWorker,
    run_training,
)


def counting_job(steps: int = 100_000, pause: float = 0.005):
    """A job that reports a step at a time until it is told to stop; returns the steps it made."""

    def job(context) -> int:
        for step in range(1, steps + 1):
            if context.should_stop():
                return step - 1
            context.report({"step": step, "total": steps, "loss": 1.0 / step})
            time.sleep(pause)
        return steps

    return job


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_cancel_stops_a_running_job():
    runner = JobRunner(max_concurrent=1)
    job_id = runner.submit("count", counting_job())
    wait_for(lambda: runner.status(job_id).step >= 3)
    assert runner.cancel(job_id)
    status = runner.wait(job_id, timeout=30)
    assert status.state == "cancelled" and status.message.startswith("cancelled at step")
    assert 3 <= status.result < 100_000 and status.losses[-1][0] == status.result
    assert not runner.cancel(job_id)  # already finished


def test_cancel_stops_a_real_training_run(tiny_classifier_dir, tmp_path):
    splits = rotten_tomatoes_splits()
    data = finetune.ClassificationData(splits.train.head(32), splits.test.head(8))
    spec = finetune.RunSpec(str(tiny_classifier_dir), finetune.FinetuneConfig(method="lora", steps=1000, batch_size=4),
                            data, str(tmp_path / "run"))
    runner = JobRunner()
    job_id = runner.submit("lora", lambda ctx: finetune.run_local(spec, ctx.report, ctx.should_stop))
    wait_for(lambda: runner.status(job_id).step >= 2)
    runner.cancel(job_id)
    status = runner.wait(job_id, timeout=60)
    assert status.state == "cancelled"
    assert status.result.result.stopped == "cancelled" and status.result.result.steps < 1000
    assert (tmp_path / "run" / "adapter_model.safetensors").exists()  # what it learned so far is kept


def test_queue_is_bounded_and_reports_positions():
    runner = JobRunner(max_concurrent=1, max_queued=2)
    release = threading.Event()
    first = runner.submit("blocker", lambda ctx: release.wait(30))
    wait_for(lambda: runner.status(first).state == "running")
    second, third = runner.submit("a", counting_job(1)), runner.submit("b", counting_job(1))
    assert runner.status(second).queue_position == 1 and runner.status(third).queue_position == 2
    with pytest.raises(InputError, match="queue is full"):
        runner.submit("c", counting_job(1))
    assert runner.cancel(third)  # a queued job cancelled never starts
    release.set()
    assert runner.wait(second, timeout=30).state == "done"
    assert runner.wait(third, timeout=30).state == "cancelled"


def test_two_users_train_one_after_the_other_and_each_one_at_a_time():
    runner = JobRunner(max_concurrent=1, max_queued=4)
    alice = runner.submit("alice", counting_job(20), owner="alice")
    bob = runner.submit("bob", counting_job(20), owner="bob")
    with pytest.raises(InputError, match="already have a training run"):
        runner.submit("alice again", counting_job(1), owner="alice")
    assert runner.wait(alice, timeout=30).result == 20
    assert runner.wait(bob, timeout=30).result == 20
    runner.submit("alice again", counting_job(1), owner="alice")  # allowed once her first run finished


@pytest.mark.parametrize("caps, message", [
    (Caps(max_steps=5), "cap of 5 steps"),
    (Caps(max_seconds=0.2), "time cap of 0 s"),
    (Caps(max_memory_mb=-1), "memory grew"),  # any growth at all is above a negative cap
])
def test_hard_caps_stop_a_job(caps, message):
    runner = JobRunner(caps=caps)
    status = runner.wait(runner.submit("count", counting_job(steps=2000, pause=0.01)), timeout=60)
    assert status.state == "done" and message in status.message and status.result < 2000


def test_failures_are_messages_and_the_queue_moves_on():
    runner = JobRunner(max_concurrent=1)

    def bad_input(context):
        raise InputError("The learning rate 1e9 is too high.")

    def bug(context):
        raise ZeroDivisionError("division by zero")

    first, second = runner.submit("bad", bad_input), runner.submit("bug", bug)
    third = runner.submit("fine", counting_job(3))
    assert runner.wait(first, timeout=30).message == "The learning rate 1e9 is too high."
    failed = runner.wait(second, timeout=30)
    assert failed.state == "failed" and "ZeroDivisionError" in failed.message
    assert runner.wait(third, timeout=30).result == 3


def test_eta_and_forget():
    runner = JobRunner()
    job_id = runner.submit("count", counting_job(40, pause=0.01))
    wait_for(lambda: runner.status(job_id).step >= 10)
    status = runner.status(job_id)
    assert status.eta is not None and status.eta > 0
    runner.wait(job_id, timeout=30)
    runner.forget(job_id)
    with pytest.raises(InputError, match="no training job"):
        runner.status(job_id)


def test_a_job_asked_to_stop_says_so_until_it_stops():
    """A step reported after Cancel (the run has not reached its stop check yet) keeps the 'cancelling' message, so the
    page does not flip back to "running"."""
    from txgallery.serving.jobs import CANCELLING

    runner = JobRunner(max_concurrent=1)
    reported, go_on = threading.Event(), threading.Event()

    def one_more_step(ctx):
        ctx.report({"step": 1, "total": 3})
        reported.set()
        go_on.wait(30)  # Cancel arrives here, mid-step
        ctx.report({"step": 2, "total": 3, "message": "training"})
        statuses.append(runner.status(job_id))
        return ctx.should_stop()

    statuses: list = []
    job_id = runner.submit("steps", one_more_step)
    reported.wait(30)
    assert runner.cancel(job_id) and runner.status(job_id).message == CANCELLING
    go_on.set()
    finished = runner.wait(job_id, timeout=30)
    assert statuses[0].message == CANCELLING and statuses[0].step == 2
    assert finished.state == "cancelled"


# --- where a training run happens: the serving layer decides, the demo only describes the run ----------------------


class Recorder:
    """Stands in for a `JobContext`: keeps the events, asks to stop after `stop_after` of them."""

    def __init__(self, stop_after: int = 1_000) -> None:
        self.events: list[dict] = []
        self.stop_after = stop_after

    def report(self, event: dict) -> None:
        self.events.append(event)

    def should_stop(self) -> str:
        return "cancelled" if len(self.events) >= self.stop_after else ""


def _count_to_three(worker: TrainingWorker) -> tuple[int, int, Path, str]:
    for step in (1, 2, 3):
        if reason := worker.should_stop():
            return worker.rank, worker.world, worker.out_dir, reason
        worker.report({"step": step, "total": 3})
    return worker.rank, worker.world, worker.out_dir, ""


def test_without_ray_a_training_job_runs_here_as_the_only_worker(tmp_path):
    job = TrainingJob(train=_count_to_three, out_dir=str(tmp_path), reload=lambda directory: "reloaded")
    context = Recorder(stop_after=2)
    assert run_training(job, context) == (0, 1, tmp_path, "cancelled")  # Cancel reached the worker
    assert [e["step"] for e in context.events] == [1, 2]


def test_on_ray_a_training_job_goes_to_ray_train(tmp_path, monkeypatch):
    import txgallery.serving.jobs as jobs

    chosen = []
    monkeypatch.setattr(jobs, "ray_is_running", lambda: True)
    monkeypatch.setattr(jobs, "train_on_ray", lambda job, workers, context: chosen.append((job, workers, context)))
    job = TrainingJob(train=_count_to_three, out_dir=str(tmp_path), reload=lambda directory: None, workers=3)
    context = Recorder()
    run_training(job, context)
    assert chosen == [(job, 3, context)] and context.events == []  # nothing ran here


class _WorkerWrapper(Exception):
    """Like Ray Train's error: the workers' own exceptions inside, by rank, and their tracebacks as text."""

    def __init__(self, text: str, worker_failures: dict) -> None:
        super().__init__(text)
        self.worker_failures = worker_failures


def test_a_workers_message_for_the_user_comes_back_as_itself():
    from txgallery_demos.finetune.methods import TrainingDiverged

    from txgallery.serving.jobs import _worker_input_error

    diverged = TrainingDiverged("The loss became nan at step 3.")
    assert _worker_input_error(_WorkerWrapper("failed", {0: diverged})) is diverged
    # only the traceback's text survived: the most specific class named there is rebuilt
    text = "Traceback …\ntxgallery_demos.finetune.methods.TrainingDiverged: The loss became inf."
    rebuilt = _worker_input_error(RuntimeError(text))
    assert type(rebuilt) is TrainingDiverged and str(rebuilt) == "The loss became inf."
    assert _worker_input_error(RuntimeError("ZeroDivisionError: division by zero")) is None
