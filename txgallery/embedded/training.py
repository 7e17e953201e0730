"""Fine-tune a sequence classifier with LoRA: the project's own training code for its embedded sentiment model.

`WarmupAdamW` (AdamW on the trainable parameters, linear warm-up then decay, one `step(loss)` per batch), `accuracy`
and `seed_everything` are the pieces every fine-tuning loop here shares: this recipe, distillation in the efficiency
lab and the fine-tuning playground's methods.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from txgallery.lib.datasets import LabelledTexts
from txgallery.models.store import model_construction


@dataclass
class LoraRecipe:
    """Every knob of a LoRA fine-tune; the defaults re-train the shipped sentiment adapter."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["query", "key", "value", "attention.output.dense"])
    epochs: int = 3
    learning_rate: float = 1e-3
    batch_size: int = 32
    max_length: int = 64
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    seed: int = 0
    max_steps: int | None = None


@dataclass
class TrainingReport:
    """What a training run did, for metrics.json and the UI."""

    recipe: dict
    steps: int
    losses: list[float]
    validation_accuracy: float | None
    trainable_parameters: int
    total_parameters: int
    seconds: float


def seed_everything(seed: int) -> None:
    """Make a CPU run repeatable: same seed, same data order, same result."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class WarmupAdamW:
    """AdamW on a model's trainable parameters with a linear warm-up and decay; `step(loss)` once per batch."""

    def __init__(self, model: torch.nn.Module, learning_rate: float, total_steps: int, warmup_ratio: float = 0.06,
                 weight_decay: float = 0.01, clip_norm: float | None = None) -> None:
        from transformers import get_linear_schedule_with_warmup

        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.parameters, lr=learning_rate, weight_decay=weight_decay)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, math.ceil(warmup_ratio * total_steps),
                                                         total_steps)
        self.clip_norm = clip_norm

    @property
    def trainable(self) -> int:
        """Parameters the optimizer updates."""
        return sum(p.numel() for p in self.parameters)

    def step(self, loss: torch.Tensor) -> None:
        """Back-propagate `loss`, clip the gradients' norm (when set), update, advance the schedule, clear."""
        loss.backward()
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)


def make_lora_classifier(base_dir: str | Path, recipe: LoraRecipe, num_labels: int = 2):
    """Load `base_dir` as a sequence classifier and wrap it with a fresh LoRA adapter."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    seed_everything(recipe.seed)
    with model_construction():
        model = AutoModelForSequenceClassification.from_pretrained(
            str(base_dir), num_labels=num_labels, id2label={0: "negative", 1: "positive"},
            label2id={"negative": 0, "positive": 1},
        )
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS, r=recipe.rank, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout,
        target_modules=list(recipe.target_modules),
    )
    return get_peft_model(model, config)


@torch.no_grad()
@torch.inference_mode()  # no autograd graph: scoring a trainable (LoRA) model would otherwise record one per batch
def accuracy(model, tokenizer, data: LabelledTexts, max_length: int = 64, batch_size: int = 64) -> float:
    """Share of `data` that `model` labels correctly."""
    model.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        batch = tokenizer(data.texts[start : start + batch_size], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt").to(model.device)
        predictions = model(**batch).logits.argmax(-1).cpu()
        correct += int((predictions == torch.tensor(data.labels[start : start + batch_size])).sum())
    return correct / max(len(data), 1)


def train_classifier(
    model,
    tokenizer,
    train: LabelledTexts,
    recipe: LoraRecipe,
    validation: LabelledTexts | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    teacher=None,
    temperature: float = 2.0,
    alpha: float = 0.5,
) -> TrainingReport:
    """Train `model` (only its trainable parameters) on `train` with AdamW and a linear warm-up/decay schedule.

    With a `teacher`, the loss is knowledge distillation (Hinton et al. 2015): `alpha` × T² × KL between the
    temperature-softened teacher and student distributions, plus (1 − `alpha`) × cross-entropy on the labels.
    """
    seed_everything(recipe.seed)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(recipe.seed)
    pairs = list(zip(train.texts, train.labels))
    loader = DataLoader(pairs, batch_size=recipe.batch_size, shuffle=True, generator=generator,
                        collate_fn=lambda batch: ([t for t, _ in batch], torch.tensor([y for _, y in batch])))
    total_steps = recipe.epochs * len(loader)
    if recipe.max_steps is not None:
        total_steps = min(total_steps, recipe.max_steps)
    optimizer = WarmupAdamW(model, recipe.learning_rate, total_steps, recipe.warmup_ratio, recipe.weight_decay)

    losses: list[float] = []
    step = 0
    model.train()
    if teacher is not None:
        teacher.eval()
    while step < total_steps:
        for texts, labels in loader:
            if step >= total_steps or (should_stop is not None and should_stop()):
                total_steps = step
                break
            batch = tokenizer(texts, padding=True, truncation=True, max_length=recipe.max_length,
                              return_tensors="pt").to(model.device)
            outputs = model(**batch, labels=labels.to(model.device))
            loss = outputs.loss
            if teacher is not None:
                with torch.no_grad():
                    soft_targets = (teacher(**batch).logits / temperature).log_softmax(-1)
                kd = torch.nn.functional.kl_div((outputs.logits / temperature).log_softmax(-1), soft_targets,
                                                reduction="batchmean", log_target=True)
                loss = alpha * temperature**2 * kd + (1 - alpha) * loss
            optimizer.step(loss)
            step += 1
            losses.append(float(loss))
            if on_step is not None:
                on_step(step, total_steps, losses[-1])

    validation_accuracy = accuracy(model, tokenizer, validation, recipe.max_length) if validation else None
    return TrainingReport(
        recipe=asdict(recipe), steps=step, losses=losses, validation_accuracy=validation_accuracy,
        trainable_parameters=optimizer.trainable,
        total_parameters=sum(p.numel() for p in model.parameters()),
        seconds=time.perf_counter() - started,
    )


def save_report(report: TrainingReport, path: Path, **extra) -> None:
    """Write the report (minus the per-step losses, which are long) as JSON beside the weights."""
    data = {k: v for k, v in asdict(report).items() if k != "losses"}
    data["first_loss"], data["last_loss"] = (report.losses[0], report.losses[-1]) if report.losses else (None, None)
    data.update(extra)
    path.write_text(json.dumps(data, indent=2) + "\n")
