"""The same training function on Ray Train: a `TorchTrainer` with 2 CPU workers matches the local run.

It runs on conftest's shared local Ray (`local_ray`: 2 CPUs on 127.0.0.1, token authentication disabled explicitly),
inside the loopback-only network namespace the suite runs in.
"""

from __future__ import annotations

import pytest
import torch
from txgallery_demos.finetune import methods as finetune

from txgallery.lib.datasets import rotten_tomatoes_splits
from txgallery.serving.jobs import ray_is_running, train_on_ray

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("local_ray")]


class Collector:
    """Stands in for a `JobContext`: keeps the relayed events, never asks to stop."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def report(self, event: dict) -> None:
        self.events.append(event)

    def should_stop(self) -> str:
        return ""


def test_two_ray_train_workers_match_the_local_run(tiny_classifier_dir, tmp_path):
    splits = rotten_tomatoes_splits()
    data = finetune.ClassificationData(splits.train.head(64), splits.test.head(32))
    # no dropout anywhere: then two workers on half-batches with averaged gradients are the local run, up to rounding
    config = finetune.FinetuneConfig(method="lora", steps=4, batch_size=8, max_length=24, dropout=0.0,
                                     model_dropout=0.0, learning_rate=0.02, eval_every=2)
    local = finetune.run_local(finetune.RunSpec(str(tiny_classifier_dir), config, data, str(tmp_path / "local")))
    assert ray_is_running()
    collector = Collector()
    spec = finetune.RunSpec(str(tiny_classifier_dir), config, data, str(tmp_path / "ray"))
    distributed = train_on_ray(finetune.training_job(spec, 2), 2, collector)

    assert distributed.result.steps == local.result.steps == 4
    assert distributed.result.losses == pytest.approx(local.result.losses, rel=1e-4)
    assert distributed.result.metric == pytest.approx(local.result.metric, abs=1e-9)
    assert distributed.count == local.count
    assert [e["step"] for e in collector.events] == [1, 2, 3, 4]  # progress reached the driver
    batch = local.tokenizer(["a lovely film", "dreadful", "fine"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(distributed.model(**batch).logits, local.model(**batch).logits, atol=1e-4)
        assert not torch.allclose(local.model(**batch).logits, finetune.build(str(tiny_classifier_dir), config)[0]
                                  .eval()(**batch).logits, atol=1e-3)  # training changed something
