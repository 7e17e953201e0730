"""Fine-tuning playground: train a real transformer live with frozen, freeze-N, full, LoRA, adapter or IA3 tuning.

Reads top to bottom: the lesson, the page's constants, its pure functions (the uploaded CSV, the form, what the page
shows), then the page: one function per tab, the events, and `build(ctx)`, which wires them. The service the page
reaches (training jobs, trained runs, predictions) is `service.py`; the methods and their one training loop are
`methods.py`. Run alone: `python demos/finetune/run.py` or `txgallery serve --demo finetune`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from matplotlib.figure import Figure
from txgallery_demos.finetune import methods as finetune
from txgallery_demos.finetune.service import FinetunePlayground

from txgallery import connect
from txgallery.lib.datasets import LabelledTexts
from txgallery.lib.text import clean_text
from txgallery.lib.uploads import find_column, header_names, read_csv_rows
from txgallery.limits import (
    MAX_CSV_CLASSES,
    MAX_CSV_ROWS,
    MAX_FINETUNE_RUNS_PER_SESSION,
    MAX_UPLOAD_BYTES,
    MIN_CSV_ROWS,
    InputError,
    truncate_text,
)
from txgallery.models.hub import ModelLoadError, ModelSource
from txgallery.plugin import Demo, ModelSlot, PageContext
from txgallery.serving.jobs import CANCELLING, JobStatus
from txgallery.ui import (
    announce_first_use,
    deep_link,
    first_use_note,
    model_badge,
    offer_download,
    user_errors,
)

SLUG = "finetune"
ENCODER_TASK = "feature-extraction"
DECODER_TASK = "text-generation"
DECODER_DEFAULT = "embedded:smollm2-135m"

LESSON = """
**Fine-tuning adapts a pretrained transformer to your task; the methods differ in *what* they let change.**

- **Frozen encoder + head:** the encoder's features stay as they are; only a small classification head learns.
  Cheapest, but the features were never tuned for your labels.
- **Freeze the first N layers:** early layers hold general features (words, syntax), later ones are more
  task-specific; training only the top layers saves memory and time.
- **Full fine-tuning:** every weight moves. Usually the most accurate, but each task needs a full model copy.
- **LoRA:** each chosen weight matrix W gets a low-rank update B·A (rank r), so only r·(d_in + d_out) numbers per
  matrix train: under 1% of the model, and the update can be merged back into W afterwards.
- **Bottleneck adapters:** a small down/up projection (with a non-linearity) after each feed-forward block,
  starting as the identity: 0.3–1% added parameters, but they stay extra layers at inference.
- **IA3:** one learned scale per key, value and feed-forward channel: the fewest parameters of all.

**Measured** (README, 400 steps × 16 sentences, 500 held-out): full 0.852, freeze-4 0.850, adapters 0.844, LoRA 0.830
(at lr 2e-3; the page starts it at 5e-3, which moves within 40 steps), frozen 0.676. The page's default of 40 steps
shows the start of that race: LoRA and adapters start as "no change" and need more steps than top-layer tuning before
they move.

**Try:** the same steps with each method, then the *Compare* tab; LoRA's rank 1 vs 32; a learning rate of 1 (the
run stops with a message when the loss becomes NaN); your own CSV (`text,label`); Shakespeare style tuning of the
SmolLM2 decoder, then *Try it* to compare the base and the tuned model on the same prompt.
"""

TASKS = {
    "Rotten Tomatoes sentiment": "rotten_tomatoes",
    "IMDB sentiment": "imdb",
    "Your CSV (text,label)": "csv",
    "Shakespeare style (SmolLM2 decoder)": "shakespeare",
}
LABEL_COLUMNS = ("label", "labels", "sentiment", "class", "target")
TEXT_COLUMNS = ("text", "sentence", "review", "content")
UI_QUEUE = "finetune-ui"  # the page's events share one queue: each is short, the training itself runs as a job


# --- the upload and the form (pure functions) -------------------------------------------------------------------------


def read_labelled_csv(path: str | Path) -> tuple[finetune.ClassificationData, str]:
    """A training set from an uploaded CSV with text and label columns; returns it and a notice (may be "").

    Labels are class names or integers; a fixed-seed fifth of the rows (at least 2) is held out for accuracy.
    """
    rows = read_csv_rows(path)
    columns = header_names(rows)
    text_column, label_column = find_column(rows, TEXT_COLUMNS), find_column(rows, LABEL_COLUMNS)
    if text_column is None or label_column is None:
        raise InputError(f"The CSV needs a text column ({', '.join(TEXT_COLUMNS)}) and a label column "
                         f"({', '.join(LABEL_COLUMNS)}); found: {', '.join(columns.values()) or 'none'}.")
    notice = ""
    if len(rows) > MAX_CSV_ROWS:
        notice = f"The CSV has {len(rows):,} rows; the first {MAX_CSV_ROWS:,} are used."
        rows = rows[:MAX_CSV_ROWS]
    texts, raw_labels = [], []
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        text, label = (row.get(text_column) or "").strip(), (row.get(label_column) or "").strip()
        if not text:
            continue
        if not label:
            raise InputError(f"Row {number} has a text but no label; every row needs one.")
        texts.append(truncate_text(text)[0])
        raw_labels.append(label)
    if len(texts) < MIN_CSV_ROWS:
        raise InputError(f"The CSV has {len(texts)} labelled rows; at least {MIN_CSV_ROWS} are needed to train and "
                         f"hold some out.")
    numeric = [label.lstrip("-").isdigit() for label in raw_labels]
    if any(numeric) and not all(numeric):
        bad = next(label for label, is_number in zip(raw_labels, numeric) if not is_number)
        raise InputError(f"Labels must be all integers or all class names; found the integer-less label {bad!r} "
                         f"among integer labels.")
    names = sorted(set(raw_labels), key=int if all(numeric) else str)
    if len(names) < 2:
        raise InputError(f"All rows have the label {names[0]!r}; a classifier needs at least 2 classes.")
    if all(numeric) and [int(n) for n in names] != list(range(len(names))):
        raise InputError(f"Integer labels must be 0, 1, … with none missing; found {', '.join(names[:10])}.")
    if len(names) > MAX_CSV_CLASSES:
        raise InputError(f"The CSV has {len(names)} distinct labels; at most {MAX_CSV_CLASSES} classes are allowed.")
    ids = [names.index(label) for label in raw_labels]
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    held = max(2, len(order) // 5)
    take = lambda part: LabelledTexts([texts[i] for i in part], [ids[i] for i in part])  # noqa: E731
    data = finetune.ClassificationData(take(order[held:]), take(order[:held]), labels=tuple(names),
                                       name=f"{path.name} ({len(texts)} rows)")
    return data, notice


def make_config(method: str, steps: float, learning_rate: float | None, batch_size: float, rank: float,
                alpha: float, dropout: float, targets: list[str] | None, freeze_layers: float,
                adapter_size: float, max_length: float = 64) -> finetune.FinetuneConfig:
    """A `FinetuneConfig` from the form's values (sliders give floats); the ranges are checked when it is built."""
    def whole(value: float | None, name: str) -> int:
        if value is None or float(value) != int(value):
            raise InputError(f"{name} must be a whole number; got {value}.")
        return int(value)

    if learning_rate is None:
        raise InputError("Please enter a learning rate.")
    return finetune.FinetuneConfig(
        method=method, steps=whole(steps, "Steps"), learning_rate=float(learning_rate),
        batch_size=whole(batch_size, "Batch size"), max_length=whole(max_length, "Tokens per example"),
        rank=whole(rank, "The LoRA rank"), alpha=float(alpha), dropout=float(dropout),
        target_modules=tuple(targets or ()), freeze_layers=whole(freeze_layers, "Frozen layers"),
        adapter_size=whole(adapter_size, "The adapter size"), eval_every=max(5, whole(steps, "Steps") // 6))


def method_choices(allowed: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """The method dropdown's (label, value) pairs, e.g. ("lora: low-rank updates B·A beside …", "lora")."""
    return [(f"{name}: {finetune.METHODS[name].split(':')[1].strip()}", name) for name in allowed]


# --- what the page shows (pure functions) ------------------------------------------------------------------------


# the form's own settings of a method, as `finetune.apply_method` reads them; frozen, full and IA3 read none
METHOD_SETTINGS = {"lora": "the rank, alpha, dropout and target modules", "freeze": "N, the number of frozen layers",
                   "adapter": "the bottleneck size m"}


def method_settings(method: str) -> tuple[str, bool, bool, bool]:
    """For `method`: a note on the settings it reads, and whether the LoRA, freeze-N and adapter settings show."""
    name = finetune.METHODS.get(method, method).split(":")[0]
    own = METHOD_SETTINGS.get(method)
    note = (f"**{name}** uses its own settings below: {own}." if own else
            f"**{name}** has no settings of its own: steps, learning rate and batch size are all it uses.")
    return note, method == "lora", method == "freeze", method == "adapter"


def progress_text(status: JobStatus) -> str:
    """A text progress bar with the step, loss, latest held-out metric and ETA."""
    if not status.finished and status.message == CANCELLING:  # until the run reaches its next step
        return f"⏹️ Cancelling at the next step (now at step {status.step} of {status.total})…"
    if status.state == "queued":
        return f"⏳ Waiting in the training queue (position {status.queue_position})…"
    if status.state == "running" and not status.step and not status.losses:
        return "⏳ Loading the model and the data before the first step…"
    share = status.step / status.total if status.total else 0.0
    bar = "█" * round(20 * share) + "░" * (20 - round(20 * share))
    parts = [f"`{bar}` {share:.0%} · step {status.step}/{status.total}"]
    if status.losses:
        parts.append(f"loss {status.losses[-1][1]:.3f}")
    if status.metrics:
        parts.append(f"held-out {status.metrics[-1][1]:.3f}")
    if status.state == "running" and status.eta is not None and status.step:
        parts.append(f"ETA {status.eta:.0f} s")
    icon = {"running": "🏃", "done": "✅", "failed": "⚠️", "cancelled": "⏹️"}.get(status.state, "")
    return f"{icon} **{status.state}** · " + " · ".join(parts) + (f"\n\n{status.message}" if status.message else "")


def curves_figure(status: JobStatus, metric_name: str = "held-out accuracy") -> Figure:
    """Training loss per step and the held-out metric at each measurement."""
    figure = Figure(figsize=(9, 3.2))  # not pyplot: its registry would keep every figure alive
    loss_axis, metric_axis = figure.subplots(1, 2)
    if status.losses:
        steps, losses = zip(*status.losses)
        loss_axis.plot(steps, losses, color="#4a7ebb", linewidth=1)
        window = max(1, len(losses) // 10)
        smooth = pd.Series(losses).rolling(window, min_periods=1).mean()
        loss_axis.plot(steps, smooth, color="#1b3d6d", linewidth=2, label=f"mean of {window}")
    loss_axis.set_title("training loss")
    loss_axis.set_xlabel("step")
    if status.metrics:
        steps, values = zip(*status.metrics)
        metric_axis.plot(steps, values, marker="o", color="#2f9e44")
    metric_axis.set_title(metric_name)
    metric_axis.set_xlabel("step")
    metric_axis.set_xlim(0, max(status.total, 1))
    figure.tight_layout()
    return figure


def comparison_table(records: list[finetune.RunRecord]) -> pd.DataFrame:
    """One row per run of the session."""
    return pd.DataFrame([{
        "run": r.run_id, "task": r.task, "method": r.method, r.metric_name: round(r.metric, 3),
        "trainable params": r.trainable, "share": f"{r.share:.3%}", "wall time (s)": round(r.seconds, 1),
        "saved (KB)": round(r.adapter_bytes / 1e3, 1), "steps": r.steps, "note": r.stopped,
    } for r in records])


def comparison_figure(records: list[finetune.RunRecord]) -> Figure:
    """Every run side by side: metric, trainable parameters (log scale), wall time and size on disk."""
    figure = Figure(figsize=(13, max(2.5, 0.45 * len(records) + 1.2)))
    axes = figure.subplots(1, 4)
    names = [f"{r.run_id} {r.method}" for r in records]
    panels = [([r.metric for r in records], "held-out metric", "#2f9e44"),
              ([r.trainable for r in records], "trainable parameters (log)", "#7a5195"),
              ([r.seconds for r in records], "wall time (s)", "#4a7ebb"),
              ([r.adapter_bytes / 1e6 for r in records], "saved weights (MB, log)", "#ef5675")]
    for i, (axis, (values, title, colour)) in enumerate(zip(axes, panels)):
        axis.barh(names, values, color=colour)
        axis.set_title(title)
        axis.invert_yaxis()
        if "log" in title:
            axis.set_xscale("log")
        if i:
            axis.set_yticklabels([])
    figure.tight_layout()
    return figure

# --- the tabs (each returns the components it makes) --------------------------------------------------------------


@dataclass
class TrainTab:
    """The Train tab: task, method and its own settings, the shared settings, Train/Cancel, progress and curves."""

    task: gr.Dropdown
    method: gr.Dropdown
    upload: gr.File
    steps: gr.Slider
    learning_rate: gr.Number
    batch_size: gr.Slider
    method_note: gr.Markdown
    lora_box: gr.Column
    rank: gr.Slider
    alpha: gr.Slider
    dropout: gr.Slider
    targets: gr.CheckboxGroup
    freeze_box: gr.Row
    freeze_layers: gr.Slider
    adapter_box: gr.Row
    adapter_size: gr.Slider
    start: gr.Button
    cancel: gr.Button
    progress: gr.Markdown
    curves: gr.Plot
    timer: gr.Timer

    def form(self) -> list[gr.components.Component]:
        """The settings a run is made of, in `make_config`'s order."""
        return [self.method, self.steps, self.learning_rate, self.batch_size, self.rank, self.alpha, self.dropout,
                self.targets, self.freeze_layers, self.adapter_size]


def train_tab() -> TrainTab:
    """Task and method, then only the chosen method's own settings (the others would do nothing)."""
    with gr.Row():
        task = gr.Dropdown(list(TASKS), value="Rotten Tomatoes sentiment", label="Task and data",
                           elem_id="finetune-task")
        method = gr.Dropdown(method_choices(list(finetune.METHODS)), value="lora", label="Method",
                             elem_id="finetune-method")
    upload = gr.File(label=f"CSV with text,label columns (≤ {MAX_UPLOAD_BYTES // 2**20} MB, "
                           f"≤ {MAX_CSV_ROWS:,} rows used)", file_types=[".csv"], visible=False)
    with gr.Row():
        steps = gr.Slider(1, 300, value=40, step=1, precision=0, label="Steps", elem_id="finetune-steps")
        learning_rate = gr.Number(value=finetune.DEFAULT_LEARNING_RATE["lora"], label="Learning rate")
        batch_size = gr.Slider(1, 64, value=16, step=1, precision=0, label="Batch size", elem_id="finetune-batch")
    note, show_lora, show_freeze, show_adapter = method_settings("lora")
    method_note = gr.Markdown(note, elem_id="finetune-method-settings")
    with gr.Column(visible=show_lora, elem_id="finetune-lora-settings") as lora_box:
        with gr.Row():
            rank = gr.Slider(1, 64, value=8, step=1, precision=0, label="LoRA rank r", elem_id="finetune-rank")
            alpha = gr.Slider(1, 64, value=16, step=1, precision=0, label="LoRA alpha", elem_id="finetune-alpha")
            dropout = gr.Slider(0, 0.5, value=0.1, step=0.05, label="LoRA dropout", elem_id="finetune-dropout")
        targets = gr.CheckboxGroup(label="LoRA target modules (this model's own names, in every layer)",
                                   elem_id="finetune-targets")
    with gr.Row(visible=show_freeze) as freeze_box:
        freeze_layers = gr.Slider(0, 6, value=4, step=1, precision=0, label="Freeze the first N layers",
                                  elem_id="finetune-freeze")
    with gr.Row(visible=show_adapter) as adapter_box:
        adapter_size = gr.Slider(1, 128, value=16, step=1, precision=0, label="Adapter bottleneck size m",
                                 elem_id="finetune-adapter")
    with gr.Row():
        start = gr.Button("Train", variant="primary")
        cancel = gr.Button("Cancel", variant="stop")
    return TrainTab(task, method, upload, steps, learning_rate, batch_size, method_note, lora_box, rank, alpha,
                    dropout, targets, freeze_box, freeze_layers, adapter_box, adapter_size, start, cancel,
                    progress=gr.Markdown(label="Progress", elem_id="finetune-progress"),
                    curves=gr.Plot(label="Live curves", elem_id="finetune-curves"),
                    timer=gr.Timer(1.0, active=False))


@dataclass
class CompareTab:
    """The Compare tab: every run of the session, as a chart and a table."""

    chart: gr.Plot
    table: gr.Dataframe


def compare_tab() -> CompareTab:
    """The chart and the table of the session's runs."""
    gr.Markdown("Every run of this session. Held-out metric: accuracy for classification, next-token "
                "accuracy for style tuning.")
    return CompareTab(chart=gr.Plot(label="Runs side by side"),
                      table=gr.Dataframe(label="Runs", wrap=True, elem_id="finetune-runs"))


@dataclass
class TryTab:
    """The Try it tab: a trained run, an input, base vs tuned, and the downloads."""

    run_choice: gr.Dropdown
    sample: gr.Textbox
    compare: gr.Button
    base_out: gr.Label
    tuned_out: gr.Label
    download: gr.Button
    export: gr.Button
    files: gr.File


def try_tab() -> TryTab:
    """Pick a run, compare the base and the tuned model on one input, download the adapter or a merged model."""
    run_choice = gr.Dropdown([], label="Trained run")
    sample = gr.Textbox(label="Input (a review, or the start of a speech for style tuning)", lines=3,
                        value="A gripping, beautifully acted film.")
    compare = gr.Button("Base vs tuned")
    with gr.Row():
        base_out = gr.Label(label="Base model (adapter disabled / untrained)", elem_id="finetune-base")
        tuned_out = gr.Label(label="Tuned model", elem_id="finetune-tuned")
    with gr.Row():
        download = gr.Button("Download the adapter")
        export = gr.Button("Merge and export")
    return TryTab(run_choice, sample, compare, base_out, tuned_out, download, export,
                  files=gr.File(label="Files", file_count="multiple"))


# --- the events ---------------------------------------------------------------------------------------------------


@dataclass
class Session:
    """What one browser session owns: its runs and its current job (cleaned up when the session ends)."""

    run_ids: list[str]
    job_ids: list[str]
    current_job: str = ""


class PlaygroundEvents:
    """The page's answers, on one playground service (None when the encoder cannot load: each answer then says why)."""

    def __init__(self, playground: Any, encoder: ModelSource | ModelLoadError, decoder: ModelSource | None) -> None:
        self.playground, self.encoder, self.decoder = playground, encoder, decoder

    def cleanup(self, session: Session | None) -> None:
        """Drop a finished browser session's runs and jobs."""
        if session and self.playground is not None:
            self.playground.forget(session.run_ids, session.job_ids)

    @user_errors
    def on_task(self, task_name: str, method_name: str = "lora"):
        """The upload box, the model's own LoRA targets and the methods this task allows."""
        decoding = TASKS[task_name] == "shakespeare"
        if decoding:
            announce_first_use(self.decoder)  # reading the decoder's module names loads it: say so while it converts
        names = self.playground.module_names(decoder=decoding) if self.playground is not None else []
        defaults = finetune.DEFAULT_LORA_TARGETS["llama" if decoding else "bert"]
        allowed = finetune.DECODER_METHODS if decoding else tuple(finetune.METHODS)
        return (gr.update(visible=TASKS[task_name] == "csv"), gr.update(choices=names, value=list(defaults)),
                gr.update(choices=method_choices(allowed), value=method_name if method_name in allowed else "lora"))

    def on_open(self, task_name: str):
        """Opening needs only the model's module names: setting the method here would undo one restored from a link."""
        return self.on_task(task_name)[:2]

    @staticmethod
    def on_method(name: str):
        """The method's default learning rate, its note, and only its own settings shown."""
        note, lora, freeze, adapter = method_settings(name)
        return (finetune.DEFAULT_LEARNING_RATE.get(name, 1e-3), note, gr.update(visible=lora),
                gr.update(visible=freeze), gr.update(visible=adapter))

    @user_errors
    def on_start(self, task: str, csv_file, method: str, steps: int, learning_rate: float, batch_size: int,
                 rank: int, alpha: int, dropout: float, targets: list[str], freeze_layers: int, adapter_size: int,
                 state: Session, request: gr.Request):
        """Queue a run; the page then polls its progress."""
        if self.playground is None:
            raise self.encoder
        config = make_config(method, steps, learning_rate, batch_size, rank, alpha, dropout, targets,
                             freeze_layers, adapter_size)
        kind, data, notice = TASKS[task], None, ""
        if kind == "csv":
            if not csv_file:
                raise InputError("Upload a CSV file with text and label columns first.")
            data, notice = read_labelled_csv(csv_file)
        job_id = self.playground.start(kind, config, owner=request.session_hash or "", data=data)
        state.current_job = job_id
        state.job_ids.append(job_id)
        first_use = first_use_note(self.decoder) if kind == "shakespeare" else None
        text = f"⏳ Queued {config.method} on {task}." + "".join(f" {n}" for n in (notice, first_use) if n)
        return state, text

    @user_errors
    def on_tick(self, state: Session):
        """The run's progress and curves; once it ends, the comparison and the runs to try."""
        if self.playground is None or not state.current_job:
            return gr.skip(), gr.skip(), gr.Timer(active=False), gr.skip(), gr.skip(), gr.skip(), state
        status = self.playground.status(state.current_job)
        metric_name = "next-token accuracy" if "Shakespeare" in status.name else "held-out accuracy"
        figure = curves_figure(status, metric_name) if status.losses else gr.skip()
        if not status.finished:
            return progress_text(status), figure, gr.skip(), gr.skip(), gr.skip(), gr.skip(), state
        if status.result is not None:  # finished, or cancelled/capped after some steps: keep what it learned
            state.run_ids.append(status.result.run_id)
            if len(state.run_ids) > MAX_FINETUNE_RUNS_PER_SESSION:  # keep memory bounded: drop the oldest
                self.playground.forget(state.run_ids[:1])
                state.run_ids = state.run_ids[1:]
        state.current_job = ""
        records = self.playground.records_for(state.run_ids)
        choices = [(f"{r.run_id}: {r.method} on {r.task}", r.run_id) for r in records]
        return (progress_text(status), figure, gr.Timer(active=False),
                comparison_figure(records) if records else None, comparison_table(records) if records else None,
                gr.update(choices=choices, value=choices[-1][1] if choices else None), state)

    @user_errors
    def on_cancel(self, state: Session):
        """Ask the session's run to stop at its next step."""
        if self.playground is None or not state.current_job:
            raise InputError("No training run is in progress.")
        self.playground.cancel(state.current_job)
        return "⏹️ Cancelling at the next step…"

    @user_errors
    def on_compare(self, run_id: str, text: str, state: Session):
        """The base and the tuned model on the same input."""
        _own_run(run_id, state)
        text, notice = clean_text(text, what="text")
        if notice:
            gr.Info(notice)
        prediction = self.playground.predict(run_id, text)
        return prediction.base, prediction.tuned

    @user_errors
    def on_download(self, run_id: str, state: Session):
        """What the run trained, zipped."""
        _own_run(run_id, state)
        return [offer_download(f"{run_id}-adapter.zip", self.playground.adapter_archive(run_id))]

    @user_errors
    def on_export(self, run_id: str, state: Session):
        """The base model with the training merged in, zipped."""
        _own_run(run_id, state)
        return [offer_download(f"{run_id}-merged.zip", self.playground.export_merged(run_id))]


def _own_run(run_id: str, state: Session) -> None:
    if not run_id or run_id not in state.run_ids:
        raise InputError("Train a run first, then pick it here.")


def follow_the_form(page: gr.Blocks, train: TrainTab, events: PlaygroundEvents) -> None:
    """The form's own events: a task change (targets, allowed methods), opening the page, a method change."""
    train.task.change(events.on_task, [train.task, train.method], [train.upload, train.targets, train.method],
                      api_name=False)
    page.load(events.on_open, train.task, [train.upload, train.targets], api_name=False)
    # UI only and instant; a task change that resets the method, and a restored link, fire it too
    train.method.change(events.on_method, train.method,
                        [train.learning_rate, train.method_note, train.lora_box, train.freeze_box, train.adapter_box],
                        api_name=False, queue=False, show_progress="hidden")


def poll_while_training(started: Any, train: TrainTab, compare: CompareTab, tried: TryTab, session: gr.State,
                        events: PlaygroundEvents) -> None:
    """After a start, the page's own timer polls the run (a private step, not part of the API)."""
    started.success(lambda: gr.Timer(active=True), None, train.timer, api_name=False, queue=False)
    train.timer.tick(events.on_tick, session,
                     [train.progress, train.curves, train.timer, compare.chart, compare.table, tried.run_choice,
                      session], api_name=False, concurrency_id=UI_QUEUE, show_progress="hidden")


# --- the page -----------------------------------------------------------------------------------------------------


def build(ctx: PageContext) -> gr.Blocks:
    """The playground page: train (live curves, Cancel), compare every run, try base vs tuned, download, export."""
    encoder, decoder = ctx.model("encoder"), ctx.model("decoder")
    decoder = None if isinstance(decoder, ModelLoadError) else decoder  # style tuning is then refused with a message
    playground = None if isinstance(encoder, ModelLoadError) else connect(FinetunePlayground, encoder, decoder)
    events = PlaygroundEvents(playground, encoder, decoder)
    with gr.Blocks(title="Fine-tuning playground") as page:
        session = gr.State(Session([], []), delete_callback=events.cleanup)  # Gradio gives each session a copy
        gr.Markdown(model_badge(encoder) + ("\n\nStyle tuning: " + model_badge(decoder) if decoder else ""))
        with gr.Tab("Train"):
            train = train_tab()
        with gr.Tab("Compare"):
            compare = compare_tab()
        with gr.Tab("Try it, download, export"):
            tried = try_tab()
        follow_the_form(page, train, events)
        started = train.start.click(events.on_start, [train.task, train.upload, *train.form(), session],
                                    [session, train.progress], api_name="finetune_start", concurrency_id=UI_QUEUE)
        poll_while_training(started, train, compare, tried, session, events)
        train.cancel.click(events.on_cancel, session, train.progress, api_name="finetune_cancel",
                           concurrency_id=UI_QUEUE)
        tried.compare.click(events.on_compare, [tried.run_choice, tried.sample, session],
                            [tried.base_out, tried.tuned_out], api_name="finetune_compare", concurrency_id=UI_QUEUE)
        tried.download.click(events.on_download, [tried.run_choice, session], tried.files,
                             api_name="finetune_download", concurrency_id=UI_QUEUE)
        tried.export.click(events.on_export, [tried.run_choice, session], tried.files, api_name="finetune_export",
                           concurrency_id=UI_QUEUE)
        # no run on opening a link: a training run is the operator's CPU time, started by a click
        deep_link(page, {"task": train.task, "method": train.method, "steps": train.steps,
                         "learning_rate": train.learning_rate, "batch": train.batch_size, "rank": train.rank,
                         "alpha": train.alpha, "dropout": train.dropout, "freeze": train.freeze_layers,
                         "adapter": train.adapter_size})
    return page


demo = Demo(
    slug=SLUG,
    order=70,
    title="Fine-tuning playground",
    description="Train a real transformer live with frozen, freeze-N, full, LoRA, adapter or IA3 tuning and compare "
                "what each one costs and buys.",
    build=build,
    tags=("fine-tuning", "LoRA", "adapters", "IA3", "peft", "Ray Train"),
    topic="Fine-tuning & transfer learning; efficient fine-tuning",
    lesson=LESSON,
    models=(ModelSlot(task=ENCODER_TASK, default="embedded", name="encoder"),
            ModelSlot(task=DECODER_TASK, default=DECODER_DEFAULT, name="decoder")),
)


if __name__ == "__main__":  # `python demos/finetune/run.py` serves this demo alone
    from txgallery.gallery import launch_one

    launch_one(demo)
