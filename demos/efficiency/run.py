"""Efficiency lab: int8 quantization, ONNX export, pruning and distillation of a real classifier, measured.

Reads top to bottom: the lesson, the techniques as plain functions (each returns a `Variant`), measurement, the
distillation experiment, then `build()` that wires the UI. Run alone: `txgallery serve --demo efficiency`.
"""

from __future__ import annotations

import contextlib
import copy
import queue
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import gradio as gr
import pandas as pd
import torch
from matplotlib.figure import Figure

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
from txgallery.plugin import Demo, ModelSlot, PageContext
from txgallery.ui import deep_link, offer_download, user_errors, zipped

SLUG = "efficiency"
TASK = "text-classification"
EVAL_SIZE = 500  # held-out Rotten Tomatoes sentences each variant is scored on (never trained on)
LATENCY_RUNS = 20  # timed calls per batch size, after warm-up

LESSON = """
**Making a transformer cheaper to run**, each technique applied to the same real model and measured here, on the
machine the gallery runs on — accuracy on held-out sentences, latency at batch 1 and 32, size on disk, parameters.

- **Dynamic int8 quantization** stores the weights of the encoder's linear layers as 8-bit integers (one scale per
  output channel) and quantizes activations on the fly; the feed-forward down-projections stay fp32, because their
  inputs have outliers that one activation scale cannot hold. Worth it for CPU serving of encoder models: ~4× smaller linear weights, faster matrix products, and
  usually the same predictions. Little gain on GPUs, where fp16/bf16 is the usual step.
- **ONNX export** freezes the model into a graph that ONNX Runtime optimises (fused attention, fused layer norms);
  with its own int8 quantization it is often the fastest CPU option. Worth it for deployment; not for research code.
- **Pruning** zeroes the smallest weights. *Unstructured* pruning keeps the matrices dense, so it does **not** make
  a dense CPU kernel faster and the file compresses rather than shrinks — watch the accuracy fall as sparsity rises.
  *Structured* pruning removes whole rows (neurons); that could shrink the model once they are cut out, at a
  larger accuracy cost.
- **Knowledge distillation** trains a smaller *student* (here: the first layers of MiniLM) to match the teacher's
  softened probabilities rather than only the labels. The lab trains the same student twice, with and without the
  teacher, on the same data and steps, and says which did better.
- **`torch.compile`** traces the model into a graph and generates fused kernels for this machine (inductor). The
  weights and predictions stay the same; the first call pays for compilation (see *build_s*). Worth it for a
  long-running server with steady shapes, on GPUs above all; on a small CPU the gain is often small — measure.

**Try:** pruning at 0.3 vs 0.7 sparsity; structured vs unstructured; a 1-layer vs 4-layer student.
Every variant can be downloaded; a saved directory serves in the sentiment demo with
`txgallery serve --model sentiment=embedded,<directory>`.
"""


# --- the variants (plain functions) --------------------------------------------------------------------------------


@dataclass
class Variant:
    """One version of the model: something that answers `model(**batch).logits`, and where it was saved."""

    name: str
    model: object
    tokenizer: object
    saved: Path
    parameters: int


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


WEIGHT_SUFFIXES = {".safetensors", ".onnx", ".pt", ".bin"}


def size_on_disk(path: Path) -> int:
    """Bytes of the weight files under `path` (tokenizer and config files left out, they are the same for all)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES)


def fp32_variant(model, tokenizer, out_dir: Path) -> Variant:
    """The starting point, saved as it is (safetensors)."""
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Variant("fp32 (baseline)", model, tokenizer, out_dir, _count(model))


def int8_variant(model, tokenizer, out_dir: Path) -> Variant:
    """Dynamic int8 quantization with PyTorch (recipe and reasons in `txgallery.models.int8`)."""
    quantized = quantize_int8(model)
    save_int8(quantized, tokenizer, out_dir)
    return Variant("int8 dynamic (PyTorch)", quantized, tokenizer, out_dir, _count(model))


def onnx_variant(model, tokenizer, out_dir: Path) -> Variant:
    """Export to ONNX and run with ONNX Runtime."""
    export_classifier(model, tokenizer, out_dir)
    return Variant("ONNX fp32 (onnxruntime)", OnnxSequenceClassifier(out_dir), tokenizer, out_dir, _count(model))


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
    return Variant("torch.compile (inductor)", compiled, tokenizer, fp32_dir, _count(model))


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
    return Variant(f"pruned {sparsity:.0%} ({kind})", pruned, tokenizer, out_dir, _count(pruned))


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
def latency_ms(model, tokenizer, texts: list[str], batch_size: int, runs: int = LATENCY_RUNS) -> tuple[float, float]:
    """p50 and p95 of one forward at `batch_size` (tokenization excluded), after two warm-up calls."""
    batch = tokenizer((texts * batch_size)[:batch_size], padding=True, truncation=True, max_length=64,
                      return_tensors="pt")
    samples = []
    for i in range(runs + 2):
        start = time.perf_counter()
        model(**batch)
        if i >= 2:
            samples.append((time.perf_counter() - start) * 1e3)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.95 * len(samples)))]


def measure(variant: Variant, data: LabelledTexts, reference: list[int], build_s: float = 0.0) -> Measurement:
    """Accuracy, agreement with the fp32 predictions, latency at batch 1 and 32, size and parameters."""
    predicted = predictions(variant.model, variant.tokenizer, data.texts)
    b1 = latency_ms(variant.model, variant.tokenizer, data.texts[:1], 1)
    b32 = latency_ms(variant.model, variant.tokenizer, data.texts[:32], 32)
    return Measurement(
        variant=variant.name,
        accuracy=sum(p == y for p, y in zip(predicted, data.labels)) / len(data),
        agreement_with_fp32=sum(p == r for p, r in zip(predicted, reference)) / len(data),
        p50_batch1_ms=b1[0], p95_batch1_ms=b1[1], p50_batch32_ms=b32[0], p95_batch32_ms=b32[1],
        size_mb=size_on_disk(variant.saved) / 1e6, parameters_m=variant.parameters / 1e6, build_s=build_s,
        saved=str(variant.saved),
    )


def results_table(measurements: list[Measurement]) -> pd.DataFrame:
    """One row per variant, with speed-ups against the first (the fp32 baseline)."""
    frame = pd.DataFrame([m.__dict__ for m in measurements])
    base = measurements[0]
    frame["speed-up b1"] = base.p50_batch1_ms / frame["p50_batch1_ms"]
    frame["speed-up b32"] = base.p50_batch32_ms / frame["p50_batch32_ms"]
    return frame.round(3)


def results_chart(frame: pd.DataFrame):
    """Latency (batch 1 and 32) and accuracy per variant, side by side."""
    figure = Figure(figsize=(13, 3.8))  # not pyplot: its registry would keep every figure alive
    left, middle, right = figure.subplots(1, 3)
    names = frame["variant"]
    left.barh(names, frame["p50_batch1_ms"], color="#4a7ebb")
    left.set_title("p50 latency, batch 1 (ms)")
    middle.barh(names, frame["p50_batch32_ms"], color="#7a5195")
    middle.set_title("p50 latency, batch 32 (ms)")
    right.barh(names, frame["accuracy"], color="#2f9e44")
    right.set_xlim(0.5, 1.0)
    right.set_title(f"held-out accuracy ({EVAL_SIZE} sentences)")
    for axis in (left, middle, right):
        axis.invert_yaxis()  # first variant on top, as in the table
    for axis in (middle, right):
        axis.set_yticklabels([])
    figure.tight_layout()
    return figure


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
        parameters = _count(model)
        rows.append({"shape": name, "parameters (M)": parameters / 1e6, "fp32 weights (MB)": parameters * 4 / 1e6,
                     # few runs: the table is about orders of magnitude, and BERT-base at batch 32 is slow on a CPU
                     "p50 batch 1 (ms)": latency_ms(model, tokenizer, texts[:1], 1, runs=8)[0],
                     "p50 batch 32 (ms)": latency_ms(model, tokenizer, texts[:32], 32, runs=2)[0]})
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
        layers=int(layers), steps=int(steps), student_parameters_m=_count(student) / 1e6,
        teacher_accuracy=accuracy(teacher, tokenizer, test),
        with_teacher_accuracy=runs["with teacher"][2], without_teacher_accuracy=runs["without teacher"][2],
        losses_with_teacher=runs["with teacher"][1].losses, losses_without_teacher=runs["without teacher"][1].losses,
        saved=out_dir,
    )


# --- the lab service -------------------------------------------------------------------------------------------------


class EfficiencyLab:
    """Builds and measures variants of one classifier (each run uses every core; the page runs one at a time)."""

    def __init__(self, source: store.ModelSource) -> None:
        self.source = source
        self.loaded = store.get_store().load(source)

    def run(self, techniques: list[str], sparsity: float, structured: bool,
            progress: Callable[[float, str], None] | None = None) -> tuple[pd.DataFrame, list[Measurement]]:
        """Build the chosen variants, measure each beside the fp32 baseline, return the table."""
        if "pruning" in techniques:
            check_sparsity(sparsity)
        model, tokenizer = self.loaded.model, self.loaded.tokenizer
        if not isinstance(model, torch.nn.Module):
            raise InputError("The lab starts from a PyTorch model; this one is already an ONNX Runtime session.")
        data = rotten_tomatoes_splits().test.head(EVAL_SIZE)
        out = home() / "efficiency" / time.strftime("%Y%m%d-%H%M%S")
        steps: list[tuple[str, Callable[[], Variant]]] = [("fp32", lambda: fp32_variant(model, tokenizer, out / "fp32"))]
        if "int8" in techniques:
            steps.append(("int8", lambda: int8_variant(model, tokenizer, out / "int8")))
        if "onnx" in techniques or "onnx-int8" in techniques:
            steps.append(("onnx", lambda: onnx_variant(model, tokenizer, out / "onnx")))
        if "onnx-int8" in techniques:
            steps.append(("onnx-int8", lambda: onnx_int8_variant(out / "onnx", tokenizer, out / "onnx-int8",
                                                                 _count(model))))
        if "pruning" in techniques:
            steps.append(("pruned", lambda: pruned_variant(model, tokenizer, sparsity, structured, out / "pruned")))
        if "compile" in techniques:
            steps.append(("torch.compile", lambda: compiled_variant(model, tokenizer, out / "fp32", data.texts)))
        measurements: list[Measurement] = []
        reference: list[int] = []
        for i, (name, make) in enumerate(steps):
            if progress:
                progress(i / len(steps), f"building and measuring {name}")
            started = time.perf_counter()
            variant = make()
            build_s = time.perf_counter() - started
            if not reference:
                reference = predictions(variant.model, variant.tokenizer, data.texts)
            measurements.append(measure(variant, data, reference, build_s))
        return results_table(measurements), measurements

    def archive(self, saved: str) -> bytes:
        """A variant or student this lab saved, as zip bytes for the page's download (see `txgallery.ui.zipped`)."""
        directory = Path(saved).resolve()
        if not directory.is_relative_to((home() / "efficiency").resolve()) or not directory.is_dir():
            raise InputError("That model was not saved by this lab.")
        return zipped(directory)

    def model_sizes(self) -> pd.DataFrame:
        """The BERT-shapes table (see `model_sizes`)."""
        return model_sizes(self.loaded.tokenizer, rotten_tomatoes_splits().test.head(32).texts)

    def distil(self, layers: int, steps: int, temperature: float, alpha: float,
               on_step: Callable[[str, int, int, float], None] | None = None) -> DistillationResult:
        """Distil the lab's model into a smaller student (see `distil`)."""
        return distil(self.loaded.model, self.loaded.tokenizer, layers, steps, temperature, alpha, on_step=on_step)


# --- the UI ----------------------------------------------------------------------------------------------------------


_background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="txgallery-efficiency-ui")


@contextlib.contextmanager
def one_run_at_a_time(running: threading.Lock) -> Iterator[None]:
    """Hold `running` for one run, or tell a second visitor at once that a run is in progress (the service would
    only queue the call: a wait of minutes with no word)."""
    if not running.acquire(blocking=False):
        raise InputError("Another optimisation run is in progress on this model; try again when it has finished.")
    try:
        yield
    finally:
        running.release()


def build(ctx: PageContext) -> gr.Blocks:
    """The lab page: build-and-measure, and distillation."""
    from txgallery.serving.seam import connect

    source = ctx.model()
    lab = None if isinstance(source, store.ModelLoadError) else connect(EfficiencyLab, source)
    running = threading.Lock()  # the page's lab runs one job at a time; each uses every core
    with gr.Blocks(title="Efficiency lab") as page:  # the gallery's page header already names the model
        with gr.Tab("Quantize, export, prune"):
            techniques = gr.CheckboxGroup(["int8", "onnx", "onnx-int8", "pruning", "compile"],
                                          value=["int8", "onnx", "onnx-int8"],
                                          label="Techniques (each is measured beside the fp32 baseline; 'compile' is "
                                                "torch.compile, whose first compilation takes a minute or more)")
            with gr.Row():
                sparsity = gr.Slider(0, 0.95, value=0.5, step=0.05, label="Pruning sparsity (share of weights zeroed)")
                structured = gr.Checkbox(label="Structured pruning (whole rows)")
            run = gr.Button("Build and measure", variant="primary")
            table = gr.Dataframe(label="Measured on this machine", wrap=True)
            chart = gr.Plot(label="Latency and accuracy")
            downloads = gr.File(label="Download variants (zip)", file_count="multiple")
        with gr.Tab("Distil"):
            with gr.Row():
                layers = gr.Slider(1, MAX_STUDENT_LAYERS, value=2, step=1, label="Student layers (teacher: 6)")
                steps = gr.Slider(20, MAX_DISTIL_STEPS, value=200, step=20, label="Training steps (each run)")
                temperature = gr.Slider(1, 8, value=2, step=0.5, label="Temperature")
                alpha = gr.Slider(0, 1, value=0.7, step=0.05, label="Weight of the teacher's loss (alpha)")
            train = gr.Button("Train the student with and without the teacher", variant="primary")
            verdict = gr.Markdown(label="Result")
            curves = gr.LinePlot(x="step", y="loss", color="run", label="Training loss")
            student_file = gr.File(label="Download the distilled student (zip)")
        with gr.Tab("Model sizes"):
            gr.Markdown("The seed's *Model Sizes & Trade-offs*, measured on this machine: BERT shapes from tiny to "
                        "base (random weights — size and speed belong to the shape; accuracy does not).")
            measure_sizes = gr.Button("Measure the shapes")
            sizes = gr.Dataframe(label="BERT shapes on this machine")

        @user_errors
        def build_and_measure(techniques: list[str], sparsity: float, structured: bool, progress=gr.Progress()):
            if lab is None:
                raise source
            with one_run_at_a_time(running):
                progress(0, desc="building and measuring the variants…")
                updates: queue.Queue = queue.Queue()
                job = _background.submit(lab.run, list(techniques or []), sparsity, structured,
                                         progress=lambda share, what: updates.put((share, what)))
                while not job.done():  # gr.Progress is updated from this (the request's) thread only
                    time.sleep(0.3)
                    while not updates.empty():
                        share, what = updates.get()
                        progress(share, desc=what)
                frame, measurements = job.result()
                files = [offer_download(f"{Path(m.saved).name}.zip", lab.archive(m.saved)) for m in measurements]
            return frame, results_chart(frame), files

        @user_errors
        def train_student(student_layers: int, steps: int, temperature: float, alpha: float):
            if lab is None:
                raise source
            with one_run_at_a_time(running):
                updates: queue.Queue = queue.Queue()
                job = _background.submit(lab.distil, student_layers, steps, temperature, alpha,
                                         on_step=lambda *update: updates.put(update))
                rows: list[dict] = []
                while not (job.done() and updates.empty()):  # stream the loss curves while both students train
                    time.sleep(0.5)
                    while not updates.empty():
                        run_name, step, total, loss = updates.get()
                        rows.append({"step": step, "loss": loss, "run": run_name})
                    if rows:
                        yield (f"Training the student {rows[-1]['run']}: step {rows[-1]['step']}/"
                               f"{steps:.0f}…", pd.DataFrame(rows), None)
                result = job.result()
                text = (f"**{result.verdict}** Teacher (6 layers): {result.teacher_accuracy:.3f}. Student: "
                        f"{result.layers} layers, {result.student_parameters_m:.1f}M parameters, {result.steps} "
                        f"steps; held-out accuracy on {EVAL_SIZE} Rotten Tomatoes sentences. Saved to "
                        f"`{result.saved}`.")
                student = offer_download(f"{result.saved.name}.zip", lab.archive(str(result.saved)))
            yield text, pd.DataFrame(rows), student

        @user_errors
        def measure_shapes():
            if lab is None:
                raise source
            with one_run_at_a_time(running):
                return lab.model_sizes()

        # Two events may run at once so that a second visitor hears "another run is in progress" at once (the page
        # runs one job at a time) instead of waiting in the queue behind a run of several minutes.
        measure_sizes.click(measure_shapes, None, sizes, api_name="efficiency_sizes", concurrency_id="efficiency",
                            concurrency_limit=2)
        run.click(build_and_measure, [techniques, sparsity, structured], [table, chart, downloads],
                  api_name="efficiency_measure", concurrency_id="efficiency", concurrency_limit=2)
        train.click(train_student, [layers, steps, temperature, alpha], [verdict, curves, student_file],
                    api_name="efficiency_distil", concurrency_id="efficiency", concurrency_limit=2)
        # no run on opening a link: a build uses every core for a minute
        deep_link(page, {"techniques": techniques, "sparsity": sparsity, "structured": structured,
                         "student_layers": layers, "steps": steps, "temperature": temperature, "alpha": alpha})
    return page


demo = Demo(
    slug=SLUG,
    order=80,
    title="Efficiency lab",
    description="Quantize, export to ONNX, prune and distil a real classifier, and measure what each one buys.",
    build=build,
    tags=("int8", "ONNX", "pruning", "distillation", "latency"),
    topic="Optimization techniques: quantization, distillation, pruning, ONNX",
    lesson=LESSON,
    models=(ModelSlot(task=TASK, default="embedded", hub_example="distilbert-base-uncased-finetuned-sst-2-english"),),
)


if __name__ == "__main__":  # `python demos/efficiency/run.py` serves this demo alone
    from txgallery.gallery import launch_one

    launch_one(demo)
