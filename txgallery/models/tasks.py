"""The one task table: how each task's models load from a directory or a hub id, and the hint users see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from txgallery.models import clip, registry
from txgallery.models.hub import ModelSource
from txgallery.models.image_classifiers import load_image_classifier


@dataclass(frozen=True)
class Task:
    """How to load models for one task from a directory or hub id (like the task table of transformers pipelines).

    `loader` replaces the transformers Auto class for models that are not transformers models (timm, open_clip): it
    takes `(source, attentions)` and returns `(model, processor)`.
    """

    auto_class: str  # transformers Auto* class name
    hub_default: str  # a good hub checkpoint for the task, shown in messages
    loader: Callable[[ModelSource, bool], tuple[Any, Any]] | None = None


TASKS: dict[str, Task] = {
    "text-classification": Task("AutoModelForSequenceClassification", "distilbert/distilbert-base-uncased-finetuned-sst-2-english"),
    "feature-extraction": Task("AutoModel", "bert-base-uncased"),
    "text-generation": Task("AutoModelForCausalLM", "gpt2"),
    "text2text-generation": Task("AutoModelForSeq2SeqLM", "t5-small"),
    "image-classification": Task("AutoModelForImageClassification", "google/vit-base-patch16-224",
                                 loader=load_image_classifier),
    "zero-shot-image-classification": Task("", clip.HUB_DEFAULT, loader=clip.load_clip),
}


def default_hint(task: str, failed_ref: str = "") -> str:
    """What to use instead for `task`: the embedded default and, unless it is the model that failed, a hub id."""
    name = registry.embedded_default(task)
    embedded_part = f"the embedded default is 'embedded' ({name}), which works offline" if name else "no embedded model"
    hub_default = TASKS[task].hub_default
    if failed_ref.rsplit("/", 1)[-1] == hub_default.rsplit("/", 1)[-1]:  # the same model, maybe under its old id
        return f"For {task}, {embedded_part}."
    return f"For {task}, {embedded_part}; online, try a hub id such as '{hub_default}'."
