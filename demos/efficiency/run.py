"""Efficiency lab: int8 quantization, ONNX export, pruning and distillation of a real classifier, measured.

Reads top to bottom: the lesson, what the page shows (pure functions), then the page: one function per tab, the
events, and `build(ctx)`, which wires them. The techniques are plain functions in `variants.py`; the service that
runs them on the page's model is `service.py`. Run alone: `python demos/efficiency/run.py` or
`txgallery serve --demo efficiency`.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr
import pandas as pd
from matplotlib.figure import Figure
from txgallery_demos.efficiency.service import EfficiencyLab
from txgallery_demos.efficiency.variants import EVAL_SIZE, DistillationResult

from txgallery.limits import MAX_DISTIL_STEPS, MAX_STUDENT_LAYERS, InputError
from txgallery.models.hub import ModelLoadError, ModelSource
from txgallery.plugin import Demo, ModelSlot, PageContext
from txgallery.ui import deep_link, model_badge, offer_download, user_errors

SLUG = "efficiency"
TASK = "text-classification"
TECHNIQUES = ["int8", "onnx", "onnx-int8", "pruning", "compile"]
UI_QUEUE = "efficiency"  # the lab's three events share one queue

LESSON = """
**Making a transformer cheaper to run**, each technique applied to the same real model and measured here, on the
machine the gallery runs on — accuracy on held-out sentences, latency at batch 1 and 32, size on disk, parameters.

- **Dynamic int8 quantization** stores the weights of the encoder's linear layers as 8-bit integers (one scale per
  output channel) and quantizes activations on the fly; the feed-forward down-projections stay fp32, because their
  inputs have outliers that one activation scale cannot hold. Worth it for CPU serving of encoder models: ~4×
  smaller linear weights, faster matrix products, and usually the same predictions. Little gain on GPUs, where
  fp16/bf16 is the usual step.
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
Every variant can be downloaded (the *download* column names its zip); unzipped, it serves in the sentiment demo
when configured as its model (`--model sentiment=embedded,<directory>`, or `[demos.sentiment]` in `txgallery.toml`).
"""


# --- what the page shows (pure functions) ------------------------------------------------------------------------


def results_chart(frame: pd.DataFrame) -> Figure:
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


# the results table's headers as the page shows them: words and units (a narrow column wraps at spaces, not mid-word)
HEADERS = {"agreement_with_fp32": "agrees with fp32", "p50_batch1_ms": "p50 ms, batch 1",
           "p95_batch1_ms": "p95 ms, batch 1", "p50_batch32_ms": "p50 ms, batch 32", "p95_batch32_ms": "p95 ms, batch 32",
           "size_mb": "size MB", "parameters_m": "parameters M", "build_s": "build s",
           "speed-up b1": "speed-up, batch 1", "speed-up b32": "speed-up, batch 32"}


def results_for_page(frame: pd.DataFrame) -> pd.DataFrame:
    """The results table with readable headers, and each variant's download (`int8.zip`) where the lab's server-side
    directory was: the path means nothing on an attendee's laptop, the zip beside the table does."""
    download = frame["saved"].map(lambda saved: f"{Path(saved).name}.zip")
    return frame.drop(columns="saved").assign(download=download).rename(columns=HEADERS)


def distillation_text(result: DistillationResult) -> str:
    """The verdict, with the teacher's and the student's sizes and the student's download."""
    return (f"**{result.verdict}** Teacher (6 layers): {result.teacher_accuracy:.3f}. Student: "
            f"{result.layers} layers, {result.student_parameters_m:.1f}M parameters, {result.steps} "
            f"steps; held-out accuracy on {EVAL_SIZE} Rotten Tomatoes sentences. Download: "
            f"`{result.saved.name}.zip`.")


# --- the tabs (each returns the components it makes) --------------------------------------------------------------


@dataclass
class MeasureTab:
    """The Quantize, export, prune tab: the techniques, the pruning settings, the table, chart and downloads."""

    techniques: gr.CheckboxGroup
    sparsity: gr.Slider
    structured: gr.Checkbox
    run: gr.Button
    table: gr.Dataframe
    chart: gr.Plot
    downloads: gr.File


def measure_tab() -> MeasureTab:
    """Choose techniques; each variant is measured beside the fp32 baseline."""
    techniques = gr.CheckboxGroup(TECHNIQUES, value=["int8", "onnx", "onnx-int8"],
                                  label="Techniques (each is measured beside the fp32 baseline; 'compile' is "
                                        "torch.compile, whose first compilation takes a minute or more)")
    with gr.Row(visible=False) as pruning_settings:  # shown only while pruning is chosen
        sparsity = gr.Slider(0, 0.95, value=0.5, step=0.05, label="Pruning sparsity (share of weights zeroed)")
        structured = gr.Checkbox(label="Structured pruning (whole rows)")
    techniques.change(lambda chosen: gr.update(visible="pruning" in (chosen or [])), techniques, pruning_settings,
                      api_name=False, queue=False, show_progress="hidden")  # UI only: no public endpoint
    return MeasureTab(techniques, sparsity, structured, run=gr.Button("Build and measure", variant="primary"),
                      table=gr.Dataframe(label="Measured on this machine", wrap=True,
                                         elem_classes=["tx-whole-words"]),  # headers wrap at spaces (gallery CSS)
                      chart=gr.Plot(label="Latency and accuracy"),
                      downloads=gr.File(label="Download variants (zip)", file_count="multiple"))


@dataclass
class DistilTab:
    """The Distil tab: the student's settings, the verdict, the loss curves and the student's download."""

    layers: gr.Slider
    steps: gr.Slider
    temperature: gr.Slider
    alpha: gr.Slider
    train: gr.Button
    verdict: gr.Markdown
    curves: gr.LinePlot
    student_file: gr.File


def distil_tab() -> DistilTab:
    """A student trained with and without the teacher, on the same data and steps."""
    with gr.Row():
        layers = gr.Slider(1, MAX_STUDENT_LAYERS, value=2, step=1, precision=0, label="Student layers (teacher: 6)")
        steps = gr.Slider(20, MAX_DISTIL_STEPS, value=200, step=20, precision=0, label="Training steps (each run)")
        temperature = gr.Slider(1, 8, value=2, step=0.5, label="Temperature")
        alpha = gr.Slider(0, 1, value=0.7, step=0.05, label="Weight of the teacher's loss (alpha)")
    return DistilTab(layers, steps, temperature, alpha,
                     train=gr.Button("Train the student with and without the teacher", variant="primary"),
                     verdict=gr.Markdown(label="Result"),
                     curves=gr.LinePlot(x="step", y="loss", color="run", label="Training loss"),
                     student_file=gr.File(label="Download the distilled student (zip)"))


@dataclass
class SizesTab:
    """The Model sizes tab: BERT shapes from tiny to base, measured on this machine."""

    measure: gr.Button
    sizes: gr.Dataframe


def sizes_tab() -> SizesTab:
    """The seed's model-sizes table, measured here."""
    gr.Markdown("The seed's *Model Sizes & Trade-offs*, measured on this machine: BERT shapes from tiny to "
                "base (random weights — size and speed belong to the shape; accuracy does not).")
    return SizesTab(measure=gr.Button("Measure the shapes"), sizes=gr.Dataframe(label="BERT shapes on this machine"))


# --- running one job at a time, off the request's thread -----------------------------------------------------------


_background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="txgallery-efficiency-ui")


@contextlib.contextmanager
def one_run_at_a_time(running: threading.Lock) -> Iterator[None]:
    """Hold `running` for one run, or tell a second visitor at once that a run is in progress.

    The check is the page's, before the call reaches the service: every serving backend runs one call at a time
    per service, so the service itself would only queue a second call (a wait of minutes with no word).
    """
    if not running.acquire(blocking=False):
        raise InputError("Another optimisation run is in progress on this model; try again when it has finished.")
    try:
        yield
    finally:
        running.release()


class BackgroundRun:
    """`call(report)` on a background thread, with what it reports read from the request's thread as it comes
    (Gradio's progress bar and streamed outputs are set from the request's own thread only)."""

    def __init__(self, call: Callable[[Callable[..., None]], Any]) -> None:
        self._reported: queue.Queue = queue.Queue()
        self._job = _background.submit(call, lambda *update: self._reported.put(update))

    def updates(self, every: float) -> Iterator[list[tuple]]:
        """Every `every` seconds until the call ends, the updates reported since the last time (perhaps none)."""
        while True:
            ended = self._job.done()  # read before draining, so that the last updates are not left behind
            if not ended:
                time.sleep(every)
            drained = []
            while not self._reported.empty():
                drained.append(self._reported.get())
            yield drained
            if ended:
                return

    def result(self) -> Any:
        """What the call returned (or its exception, raised here)."""
        return self._job.result()


# --- the events ---------------------------------------------------------------------------------------------------


class LabEvents:
    """The page's answers, on one lab service (None when the model cannot load: each answer then says why)."""

    def __init__(self, lab: Any, source: ModelSource | ModelLoadError) -> None:
        self.lab, self.source = lab, source
        self.running = threading.Lock()  # the page's lab runs one job at a time; each uses every core

    def _lab(self) -> Any:
        if self.lab is None:
            raise self.source
        return self.lab

    @user_errors
    def build_and_measure(self, techniques: list[str], sparsity: float, structured: bool, progress=gr.Progress()):
        """Build the chosen variants and measure each beside the fp32 baseline."""
        lab = self._lab()
        with one_run_at_a_time(self.running):
            progress(0, desc="building and measuring the variants…")
            run = BackgroundRun(lambda report: lab.run(list(techniques or []), sparsity, structured, progress=report))
            for updates in run.updates(every=0.3):
                for share, what in updates:
                    progress(share, desc=what)
            frame, measurements = run.result()
            files = [offer_download(f"{Path(m.saved).name}.zip", lab.archive(m.saved)) for m in measurements]
        return results_for_page(frame), results_chart(frame), files

    @user_errors
    def train_student(self, student_layers: int, steps: int, temperature: float, alpha: float):
        """Train the student with and without the teacher, streaming both loss curves."""
        lab = self._lab()
        with one_run_at_a_time(self.running):
            run = BackgroundRun(lambda report: lab.distil(student_layers, steps, temperature, alpha, on_step=report))
            rows: list[dict] = []
            for updates in run.updates(every=0.5):
                rows += [{"step": step, "loss": loss, "run": name} for name, step, _, loss in updates]
                if rows:
                    yield (f"Training the student {rows[-1]['run']}: step {rows[-1]['step']}/{steps:.0f}…",
                           pd.DataFrame(rows), None)
            result = run.result()
            student = offer_download(f"{result.saved.name}.zip", lab.archive(str(result.saved)))
        yield distillation_text(result), pd.DataFrame(rows), student

    @user_errors
    def measure_shapes(self):
        """The BERT-shapes table."""
        lab = self._lab()
        with one_run_at_a_time(self.running):
            return lab.model_sizes()


def answer_at_once_when_busy(event: Callable, fn: Callable, inputs: Any, outputs: Any, api_name: str) -> None:
    """Wire one of the lab's events so that a second visitor hears "another run is in progress" at once: two events
    may run together, the second is refused by `one_run_at_a_time` instead of waiting behind a run of minutes."""
    event(fn, inputs, outputs, api_name=api_name, concurrency_id=UI_QUEUE, concurrency_limit=2)


# --- the page -----------------------------------------------------------------------------------------------------


def build(ctx: PageContext) -> gr.Blocks:
    """The lab page: build-and-measure, distillation, and the BERT shapes."""
    _, source, lab = ctx.services(EfficiencyLab)[0]
    events = LabEvents(lab, source)
    with gr.Blocks(title="Efficiency lab") as page:
        gr.Markdown(model_badge(source))  # which model every variant starts from, and why: on the page, not in a panel
        with gr.Tab("Quantize, export, prune"):
            measured = measure_tab()
        with gr.Tab("Distil"):
            distilled = distil_tab()
        with gr.Tab("Model sizes"):
            shapes = sizes_tab()
        answer_at_once_when_busy(shapes.measure.click, events.measure_shapes, None, shapes.sizes, "efficiency_sizes")
        answer_at_once_when_busy(measured.run.click, events.build_and_measure,
                                 [measured.techniques, measured.sparsity, measured.structured],
                                 [measured.table, measured.chart, measured.downloads], "efficiency_measure")
        answer_at_once_when_busy(distilled.train.click, events.train_student,
                                 [distilled.layers, distilled.steps, distilled.temperature, distilled.alpha],
                                 [distilled.verdict, distilled.curves, distilled.student_file], "efficiency_distil")
        # no run on opening a link: a build uses every core for a minute
        deep_link(page, {"techniques": measured.techniques, "sparsity": measured.sparsity,
                         "structured": measured.structured, "student_layers": distilled.layers,
                         "steps": distilled.steps, "temperature": distilled.temperature, "alpha": distilled.alpha})
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
    models=(ModelSlot(task=TASK, default="embedded", hub_example="distilbert/distilbert-base-uncased-finetuned-sst-2-english"),),
)


if __name__ == "__main__":  # `python demos/efficiency/run.py` serves this demo alone
    from txgallery.gallery import launch_one

    launch_one(demo)
