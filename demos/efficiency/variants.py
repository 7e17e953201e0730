"""The efficiency lab's techniques as plain functions: each builds a `Variant` of one classifier (int8, ONNX and
ONNX int8, pruning, `torch.compile`), `measure` scores it beside the fp32 baseline, and `distil` trains a smaller
student with and without the teacher. The lab's service (`service.py`) runs them; the page only shows the results.
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from txgallery.embedded.training import (
    LoraRecipe,
    accuracy,
    seed_everything,
    train_classifier,
)
from txgallery.lib.datasets import LabelledTexts, rotten_tomatoes_splits
from txgallery.limits import MAX_DISTIL_STEPS, MAX_STUDENT_LAYERS, InputError
from txgallery.models import store
from txgallery.models.int8 import quantize_int8, save_int8
from txgallery.models.onnx import (
    OnnxSequenceClassifier,
    export_classifier,
    quantize_onnx,
)
from txgallery.paths import home

EVAL_SIZE = 500  # held-out Rotten Tomatoes sentences each variant is scored on (never trained on)
LATENCY_RUNS = 20  # at most this many timed calls per batch size, after warm-up
LATENCY_MIN_RUNS = 5  # at least this many, however slow the variant
LATENCY_BUDGET_S = 2.0  # the page stops timing a batch size after this, so a slow variant does not hold it


# --- the variants (plain functions) --------------------------------------------------------------------------------


@dataclass
class Variant:
    """One version of the model: something that answers `model(**batch).logits`, and where it was saved."""

    name: str
    model: object
    tokenizer: object
    saved: Path
    parameters: int


def parameter_count(model: torch.nn.Module) -> int:
    """Parameters of `model`."""
    return sum(p.numel() for p in model.parameters())


WEIGHT_SUFFIXES = {".safetensors", ".onnx", ".pt", ".bin"}


def size_on_disk(path: Path) -> int:
    """Bytes of the weight files under `path` (tokenizer and config files left out, they are the same for all)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES)


def fp32_variant(model, tokenizer, out_dir: Path) -> Variant:
    """The starting point, saved as it is (safetensors)."""
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Variant("fp32 (baseline)", model, tokenizer, out_dir, parameter_count(model))


def int8_variant(model, tokenizer, out_dir: Path) -> Variant:
    """Dynamic int8 quantization with PyTorch (recipe and reasons in `txgallery.models.int8`)."""
    quantized = quantize_int8(model)
    save_int8(quantized, tokenizer, out_dir)
    return Variant("int8 dynamic (PyTorch)", quantized, tokenizer, out_dir, parameter_count(model))


def onnx_variant(model, tokenizer, out_dir: Path) -> Variant:
    """Export to ONNX and run with ONNX Runtime."""
    export_classifier(model, tokenizer, out_dir)
    return Variant("ONNX fp32 (onnxruntime)", OnnxSequenceClassifier(out_dir), tokenizer, out_dir,
                   parameter_count(model))


def onnx_int8_variant(onnx_dir: Path, tokenizer, out_dir: Path, parameters: int) -> Variant:
    """ONNX Runtime's dynamic int8 quantization of the exported model."""
    quantize_onnx(onnx_dir / "model.onnx", out_dir)
    return Variant("ONNX int8 (onnxruntime)", OnnxSequenceClassifier(out_dir), tokenizer, out_dir, parameters)


def compiled_variant(model, tokenizer, fp32_dir: Path, sample_texts: list[str]) -> Variant:
    """`torch.compile` (inductor) of the same fp32 model; compiled on a sample here, so the build time includes it.

    It has nothing new to save: its download is the fp32 directory, and the compiled graph lives in this process.
    """
    compiled = torch.compile(model, dynamic=True)  # dynamic: one graph for every batch size and sequence length
    predictions(compiled, tokenizer, sample_texts[:2], batch_size=2)
    predictions(compiled, tokenizer, sample_texts[:32], batch_size=32)
    return Variant("torch.compile (inductor)", compiled, tokenizer, fp32_dir, parameter_count(model))


def check_sparsity(sparsity: float) -> float:
    """Sparsity must be a fraction in [0, 1)."""
    if sparsity is None or not 0 <= float(sparsity) < 1:
        raise InputError(f"Sparsity must be at least 0 and below 1 (a fraction of weights to zero); got {sparsity}.")
    return float(sparsity)


def prunable_linears(model) -> list[torch.nn.Linear]:
    """The encoder's linear layers (the classification head is left whole)."""
    return [m for m in model.base_model.encoder.modules() if isinstance(m, torch.nn.Linear)]


def prune_model(model, sparsity: float, structured: bool = False):
    """A copy of `model` with the smallest-magnitude weights of every encoder linear layer set to zero.

    Unstructured: the `sparsity` share of individual weights with the smallest |w| (per layer).
    Structured: the `sparsity` share of whole output rows (neurons) with the smallest L2 norm.
    """
    import torch.nn.utils.prune as prune

    sparsity = check_sparsity(sparsity)
    pruned = copy.deepcopy(model)
    for linear in prunable_linears(pruned):
        if structured:
            prune.ln_structured(linear, "weight", amount=sparsity, n=2, dim=0)
        else:
            prune.l1_unstructured(linear, "weight", amount=sparsity)
        prune.remove(linear, "weight")  # make the zeros permanent
    return pruned


def measured_sparsity(model, structured: bool = False) -> float:
    """Share of zero weights (or of all-zero rows, for structured) over the encoder's linear layers."""
    zero = total = 0
    for linear in prunable_linears(model):
        weight = linear.weight.detach()
        if structured:
            zero += int((weight.abs().sum(dim=1) == 0).sum())
            total += weight.shape[0]
        else:
            zero += int((weight == 0).sum())
            total += weight.numel()
    return zero / total


def pruned_variant(model, tokenizer, sparsity: float, structured: bool, out_dir: Path) -> Variant:
    """Prune, then save as a regular model directory (it serves in the sentiment demo)."""
    pruned = prune_model(model, sparsity, structured)
    pruned.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    kind = "structured rows" if structured else "unstructured"
    return Variant(f"pruned {sparsity:.0%} ({kind})", pruned, tokenizer, out_dir, parameter_count(pruned))


# --- measurement ---------------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    """What the lab reports for one variant."""

    variant: str
    accuracy: float
    agreement_with_fp32: float
    p50_batch1_ms: float
    p95_batch1_ms: float
    p50_batch32_ms: float
    p95_batch32_ms: float
    size_mb: float
    parameters_m: float
    build_s: float  # time to make the variant: save, quantize, export or compile
    saved: str


@torch.inference_mode()
def predictions(model, tokenizer, texts: list[str], max_length: int = 64, batch_size: int = 64) -> list[int]:
    """Predicted label ids for `texts`."""
    out: list[int] = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt")
        out += model(**batch).logits.argmax(-1).tolist()
    return out


@torch.inference_mode()
def latency_ms(model, tokenizer, texts: list[str], batch_size: int, runs: int = LATENCY_RUNS, warmup: int = 2,
               budget_s: float | None = LATENCY_BUDGET_S) -> tuple[float, float]:
    """p50 and p95 of one forward at `batch_size` (tokenization excluded), after `warmup` calls: `runs` timed calls,
    or fewer (never under LATENCY_MIN_RUNS) once they have taken `budget_s` (None: all `runs`)."""
    batch = tokenizer((texts * batch_size)[:batch_size], padding=True, truncation=True, max_length=64,
                      return_tensors="pt")
    for _ in range(warmup):
        model(**batch)
    samples: list[float] = []
    while len(samples) < runs:
        start = time.perf_counter()
        model(**batch)
        samples.append((time.perf_counter() - start) * 1e3)
        if budget_s is not None and len(samples) >= min(runs, LATENCY_MIN_RUNS) and sum(samples) > budget_s * 1e3:
            break
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.95 * len(samples)))]


def measure(variant: Variant, data: LabelledTexts, reference: list[int] | None = None, build_s: float = 0.0,
            latency_budget_s: float | None = LATENCY_BUDGET_S) -> tuple[Measurement, list[int]]:
    """Accuracy, agreement with the fp32 predictions (`reference`; None: this is the baseline), latency at batch 1
    and 32, size and parameters; and the variant's predictions, the reference for the next ones."""
    predicted = predictions(variant.model, variant.tokenizer, data.texts)
    reference = predicted if reference is None else reference
    b1 = latency_ms(variant.model, variant.tokenizer, data.texts[:1], 1, budget_s=latency_budget_s)
    b32 = latency_ms(variant.model, variant.tokenizer, data.texts[:32], 32, budget_s=latency_budget_s)
    return Measurement(
        variant=variant.name,
        accuracy=sum(p == y for p, y in zip(predicted, data.labels)) / len(data),
        agreement_with_fp32=sum(p == r for p, r in zip(predicted, reference)) / len(data),
        p50_batch1_ms=b1[0], p95_batch1_ms=b1[1], p50_batch32_ms=b32[0], p95_batch32_ms=b32[1],
        size_mb=size_on_disk(variant.saved) / 1e6, parameters_m=variant.parameters / 1e6, build_s=build_s,
        saved=str(variant.saved),
    ), predicted


def results_table(measurements: list[Measurement]) -> pd.DataFrame:
    """One row per variant, with speed-ups against the first (the fp32 baseline)."""
    frame = pd.DataFrame([m.__dict__ for m in measurements])
    base = measurements[0]
    frame["speed-up b1"] = base.p50_batch1_ms / frame["p50_batch1_ms"]
    frame["speed-up b32"] = base.p50_batch32_ms / frame["p50_batch32_ms"]
    return frame.round(3)



# --- model sizes ----------------------------------------------------------------------------------------------------

BERT_SHAPES = {  # (layers, hidden, heads): the shapes of Google's BERT miniatures and BERT-base
    "tiny (2L/128)": (2, 128, 2),
    "mini (4L/256)": (4, 256, 4),
    "small (4L/512)": (4, 512, 8),
    "medium (8L/512)": (8, 512, 8),
    "base (12L/768)": (12, 768, 12),
}


def model_sizes(tokenizer, texts: list[str]) -> pd.DataFrame:
    """Parameters, fp32 weight size and latency of each BERT shape, measured here with random weights.

    Size and speed are properties of the shape; accuracy is not, so it is left to the models trained in this lab.
    """
    from transformers import BertConfig, BertForSequenceClassification

    rows = []
    for name, (layers, hidden, heads) in BERT_SHAPES.items():
        config = BertConfig(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                            intermediate_size=4 * hidden, num_labels=2)
        model = BertForSequenceClassification(config).eval()
        parameters = parameter_count(model)
        rows.append({"shape": name, "parameters (M)": parameters / 1e6, "fp32 weights (MB)": parameters * 4 / 1e6,
                     # few runs: the table is about orders of magnitude, and BERT-base at batch 32 is slow on a CPU
                     "p50 batch 1 (ms)": latency_ms(model, tokenizer, texts[:1], 1, runs=8)[0],
                     "p50 batch 32 (ms)": latency_ms(model, tokenizer, texts[:32], 32, runs=2, warmup=1)[0]})
    return pd.DataFrame(rows).round(1)


# --- distillation --------------------------------------------------------------------------------------------------


@dataclass
class DistillationResult:
    """The same student trained with and without the teacher, on the same data, steps and seed."""

    layers: int
    steps: int
    student_parameters_m: float
    teacher_accuracy: float
    with_teacher_accuracy: float
    without_teacher_accuracy: float
    losses_with_teacher: list[float]
    losses_without_teacher: list[float]
    saved: Path

    @property
    def verdict(self) -> str:
        """An honest sentence about who won."""
        gap = self.with_teacher_accuracy - self.without_teacher_accuracy
        if gap > 0:
            return (f"The distilled student beats the same student trained on labels alone by {gap:+.3f} "
                    f"({self.with_teacher_accuracy:.3f} vs {self.without_teacher_accuracy:.3f}).")
        return (f"Here the teacher did not help: with it {self.with_teacher_accuracy:.3f}, without it "
                f"{self.without_teacher_accuracy:.3f} ({gap:+.3f}). More steps, a higher temperature or more data "
                "usually change that.")


def make_student(layers: int):
    """The first `layers` layers of the pretrained MiniLM encoder with a fresh classification head."""
    from transformers import AutoModelForSequenceClassification

    from txgallery.embedded.minilm import minilm_l6

    if not 1 <= int(layers) <= MAX_STUDENT_LAYERS:
        raise InputError(f"The student may have 1 to {MAX_STUDENT_LAYERS} layers (the teacher has 6); got {layers}.")
    with store.model_construction():
        return AutoModelForSequenceClassification.from_pretrained(
            str(minilm_l6()), num_hidden_layers=int(layers), num_labels=2,
            id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})


def distil(teacher, tokenizer, layers: int = 2, steps: int = 200, temperature: float = 2.0, alpha: float = 0.7,
           train: LabelledTexts | None = None, test: LabelledTexts | None = None, out_dir: Path | None = None,
           on_step: Callable[[str, int, int, float], None] | None = None) -> DistillationResult:
    """Train a `layers`-layer student twice — with the teacher's soft targets and with labels only — and compare."""
    if not 1 <= int(steps) <= MAX_DISTIL_STEPS:
        raise InputError(f"Training steps must be between 1 and {MAX_DISTIL_STEPS}; got {steps}.")
    if not 0 < float(temperature) <= 20:
        raise InputError(f"The temperature must be above 0 and at most 20; got {temperature}.")
    splits = rotten_tomatoes_splits()
    train = train or splits.train
    test = test or splits.test.head(EVAL_SIZE)
    recipe = LoraRecipe(max_steps=int(steps), epochs=100, learning_rate=5e-4, batch_size=32, warmup_ratio=0.1)
    runs = {}
    for mode in ("with teacher", "without teacher"):
        seed_everything(recipe.seed)
        student = make_student(layers)
        report = train_classifier(student, tokenizer, train, recipe,
                                  teacher=teacher if mode == "with teacher" else None,
                                  temperature=float(temperature), alpha=float(alpha),
                                  on_step=(lambda s, t, loss, m=mode: on_step(m, s, t, loss)) if on_step else None)
        runs[mode] = (student, report, accuracy(student, tokenizer, test))
    student, _, _ = runs["with teacher"]
    out_dir = out_dir or home() / "efficiency" / f"student-{layers}l"
    student.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return DistillationResult(
        layers=int(layers), steps=int(steps), student_parameters_m=parameter_count(student) / 1e6,
        teacher_accuracy=accuracy(teacher, tokenizer, test),
        with_teacher_accuracy=runs["with teacher"][2], without_teacher_accuracy=runs["without teacher"][2],
        losses_with_teacher=runs["with teacher"][1].losses, losses_without_teacher=runs["without teacher"][1].losses,
        saved=out_dir,
    )
