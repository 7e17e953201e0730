"""Fine-tuning playground: train a real transformer live with frozen, freeze-N, full, LoRA, adapter or IA3 tuning.

Reads top to bottom: the lesson, data and settings as plain functions (testable without Gradio), the charts, the
playground service (which queues training jobs, keeps the trained runs and answers predictions), then `build()`
that wires the UI. Run alone: `txgallery serve --demo finetune` or `python -m txgallery_demos.finetune`.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd
import torch
from matplotlib.figure import Figure
from txgallery_demos.finetune import methods as finetune

from txgallery.lib.datasets import (
    LabelledTexts,
    load_movie_reviews,
    rotten_tomatoes_splits,
)
from txgallery.lib.uploads import find_column, header_names, read_csv_rows
from txgallery.limits import (
    MAX_CSV_CLASSES,
    MAX_CSV_ROWS,
    MAX_FINETUNE_RUNS_KEPT,
    MAX_FINETUNE_RUNS_PER_SESSION,
    MAX_UPLOAD_BYTES,
    MIN_CSV_ROWS,
    InputError,
    truncate_text,
)
from txgallery.models import store
from txgallery.plugin import Demo, ModelSlot, PageContext
from txgallery.serving.jobs import CANCELLING, JobRunner, JobStatus, ray_is_running
from txgallery.serving.seam import connect
from txgallery.ui import (
    announce_first_use,
    deep_link,
    first_use_note,
    model_badge,
    offer_download,
    user_errors,
    zipped,
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

**Measured** (README, 400 steps × 16 sentences, 500 held-out): full 0.852, freeze-4 0.850, adapters 0.844, LoRA 0.830,
frozen 0.676. The page's default of 40 steps shows the start of that race: LoRA and adapters start as "no change"
and need more steps than top-layer tuning before they move.

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
TRAIN_SIZE = 2000  # training examples drawn from a corpus (a run sees steps × batch of them)
EVAL_SIZE = 200  # held-out examples measured during a run (kept small: each measurement is on the request budget)
LABEL_COLUMNS = ("label", "labels", "sentiment", "class", "target")
TEXT_COLUMNS = ("text", "sentence", "review", "content")


# --- data (pure functions) --------------------------------------------------------------------------------------------


def corpus_data(task: str, train_size: int = TRAIN_SIZE, eval_size: int = EVAL_SIZE):
    """Training and held-out data for a built-in task (fixed seeds: the held-out part is never trained on)."""
    if task == "rotten_tomatoes":
        splits = rotten_tomatoes_splits()
        return finetune.ClassificationData(splits.train.head(train_size), splits.test.head(eval_size),
                                           name="Rotten Tomatoes (movie-reviews)")
    if task == "imdb":
        corpus = load_movie_reviews("imdb")
        order = list(range(len(corpus)))
        random.Random(0).shuffle(order)
        take = lambda ids: LabelledTexts([corpus.texts[i] for i in ids], [corpus.labels[i] for i in ids])  # noqa: E731
        return finetune.ClassificationData(take(order[eval_size: eval_size + train_size]), take(order[:eval_size]),
                                           name="IMDB (movie-reviews)")
    if task == "shakespeare":
        return finetune.shakespeare_data(train_size, eval_size=64)
    raise InputError(f"Unknown task {task!r}.")


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


# --- what the page shows (pure functions) --------------------------------------------------------------------------


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


# --- the playground service ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """The base and the tuned model on the same input: label probabilities, or generated text for a decoder."""

    base: dict[str, float] | str
    tuned: dict[str, float] | str


class FinetunePlayground:
    """Queues training jobs, keeps each session's trained runs, and answers predictions and exports for them."""

    def __init__(self, encoder: store.ModelSource, decoder: store.ModelSource | None = None, workers: int = 2) -> None:
        self.encoder, self.decoder, self.workers = encoder, decoder, workers
        self.runner = JobRunner()
        self.runs: dict[str, finetune.TrainedRun] = {}
        self.records: dict[str, finetune.RunRecord] = {}
        self._job_runs: dict[str, str] = {}  # job id -> run id
        self._lock = threading.Lock()
        self._counter = 0
        self.out_root = Path(tempfile.mkdtemp(prefix="txgallery-finetune-"))

    def module_names(self, decoder: bool = False) -> list[str]:
        """The linear layers inside one block of the base model, by their real names (LoRA's possible targets)."""
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

        source = self.decoder if decoder else self.encoder
        if source is None:
            return []
        directory = finetune.model_directory(source)
        config = AutoConfig.from_pretrained(directory, trust_remote_code=False)
        with store.model_construction(), torch.device("meta"):  # the structure without the weights: instant
            model = (AutoModelForCausalLM if decoder else AutoModel).from_config(config)
        return finetune.layer_module_names(model)

    def start(self, task: str, config: finetune.FinetuneConfig, owner: str,
              data: finetune.ClassificationData | None = None) -> str:
        """Queue a run of `config` on `task` (or on uploaded `data`); returns the job id at once."""
        decoder = task == "shakespeare"
        source = self.decoder if decoder else self.encoder
        if source is None:
            raise InputError("No decoder is configured for style tuning.")
        data = data if data is not None else corpus_data(task)
        with self._lock:
            self._counter += 1
            run_id = f"run{self._counter}"
        labels = getattr(data, "labels", ())
        spec = finetune.RunSpec(base=finetune.model_directory(source), config=config, data=data,
                                out_dir=str(self.out_root / run_id), labels=labels)
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForSequenceClassification,
        )

        shape = AutoConfig.from_pretrained(spec.base, trust_remote_code=False)
        # check the settings against the model's shapes before queueing (no weights)
        with store.model_construction(), torch.device("meta"):
            probe = (AutoModelForCausalLM.from_config(shape) if decoder
                     else AutoModelForSequenceClassification.from_config(shape))
        finetune.check_config(config, probe, decoder)

        def job(context) -> finetune.RunRecord:
            if ray_is_running():  # the gallery runs on Ray: spread the run over Ray Train workers
                trained = finetune.run_on_ray(spec, self.workers, context)
            else:
                trained = finetune.run_local(spec, on_event=context.report, should_stop=context.should_stop)
            record = finetune.RunRecord(
                run_id=run_id, task=data.name, method=config.method, metric=trained.result.metric,
                metric_name=trained.result.metric_name, trainable=trained.count.trainable, share=trained.count.share,
                seconds=trained.result.seconds, adapter_bytes=trained.adapter_bytes, steps=trained.result.steps,
                stopped=trained.result.stopped, settings={"lr": trained.config.lr, "batch": config.batch_size})
            with self._lock:
                self.runs[run_id], self.records[run_id] = trained, record
                # a session dropped by Gradio (MAX_SESSIONS) never gets its delete callback: bound the total too
                oldest = list(self.runs)[:max(0, len(self.runs) - MAX_FINETUNE_RUNS_KEPT)]
            self.forget(oldest)
            return record

        job_id = self.runner.submit(f"{config.method} on {data.name}", job, owner=owner)
        with self._lock:
            self._job_runs[job_id] = run_id
        return job_id

    def status(self, job_id: str) -> JobStatus:
        """The job's progress (its `result` is the run's `RunRecord` once done)."""
        return self.runner.status(job_id)

    def cancel(self, job_id: str) -> bool:
        """Stop the job at its next step."""
        return self.runner.cancel(job_id)

    def records_for(self, run_ids: list[str]) -> list[finetune.RunRecord]:
        """The finished runs among `run_ids`, in order."""
        with self._lock:
            return [self.records[r] for r in run_ids if r in self.records]

    def _run(self, run_id: str) -> finetune.TrainedRun:
        with self._lock:
            if run_id not in self.runs:
                raise InputError(f"There is no trained run {run_id!r}; train one first.")
            return self.runs[run_id]

    @torch.inference_mode()
    def predict(self, run_id: str, text: str, max_new_tokens: int = 40) -> Prediction:
        """The base model and the tuned one on the same input (peft's `disable_adapter()` for LoRA and IA3)."""
        run = self._run(run_id)
        model, tokenizer = run.model, run.tokenizer
        encoded = tokenizer([text], truncation=True, max_length=256, return_tensors="pt").to(model.device)
        decoder = run.result.metric_name.startswith("next-token")
        if decoder:
            encoded.pop("token_type_ids", None)  # BERT-style tokenizers add them; decoders take none

        def answer():
            if decoder:
                output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                        pad_token_id=tokenizer.pad_token_id)
                return tokenizer.decode(output[0, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
            probabilities = model(**encoded).logits.softmax(-1)[0]
            return {model.config.id2label[i]: float(p) for i, p in enumerate(probabilities)}

        with finetune.base_weights(model, run.initial):
            base = answer()
        return Prediction(base=base, tuned=answer())

    def adapter_archive(self, run_id: str) -> bytes:
        """What the run trained (the adapter, or the trained tensors) with `finetune.json`, as zip bytes."""
        return zipped(self._run(run_id).out_dir)

    def export_merged(self, run_id: str) -> bytes:
        """A plain model directory with the training merged in (loadable by the sentiment demo), as zip bytes."""
        run = self._run(run_id)
        return zipped(finetune.merge_and_export(run.model, run.tokenizer, Path(str(run.out_dir) + "-merged")))

    def forget(self, run_ids: list[str], job_ids: list[str] = ()) -> None:
        """Drop a session's runs and their files (called when the browser session ends)."""
        for job_id in job_ids:
            self.runner.forget(job_id)
        with self._lock:
            for run_id in run_ids:
                self.runs.pop(run_id, None)
                self.records.pop(run_id, None)
                for suffix in ("", "-merged"):
                    shutil.rmtree(str(self.out_root / run_id) + suffix, ignore_errors=True)


# --- the UI ---------------------------------------------------------------------------------------------------------


@dataclass
class Session:
    """What one browser session owns: its runs and its current job (cleaned up when the session ends)."""

    run_ids: list[str]
    job_ids: list[str]
    current_job: str = ""


def _sources(ctx: PageContext) -> tuple[store.ModelSource | store.ModelLoadError, store.ModelSource | None]:
    decoder = ctx.model("decoder")
    return ctx.model("encoder"), None if isinstance(decoder, store.ModelLoadError) else decoder


def build(ctx: PageContext) -> gr.Blocks:
    """The playground page: train (live curves, Cancel), compare every run, try base vs tuned, download, export."""
    encoder, decoder = _sources(ctx)
    playground = None if isinstance(encoder, store.ModelLoadError) else connect(FinetunePlayground, encoder, decoder)
    methods = [(f"{name}: {text.split(':')[1].strip()}", name) for name, text in finetune.METHODS.items()]

    def cleanup(session: Session | None) -> None:
        if session and playground is not None:
            playground.forget(session.run_ids, session.job_ids)

    with gr.Blocks(title="Fine-tuning playground") as page:
        session = gr.State(Session([], []), delete_callback=cleanup)  # Gradio gives each session a copy
        gr.Markdown(model_badge(encoder) + ("\n\nStyle tuning: " + model_badge(decoder) if decoder else ""))
        with gr.Tab("Train"):
            with gr.Row():
                task = gr.Dropdown(list(TASKS), value="Rotten Tomatoes sentiment", label="Task and data",
                                   elem_id="finetune-task")
                method = gr.Dropdown(methods, value="lora", label="Method", elem_id="finetune-method")
            upload = gr.File(label=f"CSV with text,label columns (≤ {MAX_UPLOAD_BYTES // 2**20} MB, "
                                   f"≤ {MAX_CSV_ROWS:,} rows used)", file_types=[".csv"], visible=False)
            with gr.Row():
                steps = gr.Slider(1, 300, value=40, step=1, label="Steps", elem_id="finetune-steps")
                learning_rate = gr.Number(value=finetune.DEFAULT_LEARNING_RATE["lora"], label="Learning rate")
                batch_size = gr.Slider(1, 64, value=16, step=1, label="Batch size", elem_id="finetune-batch")
            # only the chosen method's own settings show: the others would do nothing
            note, show_lora, show_freeze, show_adapter = method_settings("lora")
            method_note = gr.Markdown(note, elem_id="finetune-method-settings")
            with gr.Column(visible=show_lora, elem_id="finetune-lora-settings") as lora_box:
                with gr.Row():
                    rank = gr.Slider(1, 64, value=8, step=1, label="LoRA rank r", elem_id="finetune-rank")
                    alpha = gr.Slider(1, 64, value=16, step=1, label="LoRA alpha", elem_id="finetune-alpha")
                    dropout = gr.Slider(0, 0.5, value=0.1, step=0.05, label="LoRA dropout", elem_id="finetune-dropout")
                targets = gr.CheckboxGroup(label="LoRA target modules (this model's own names, in every layer)",
                                           elem_id="finetune-targets")
            with gr.Row(visible=show_freeze) as freeze_box:
                freeze_layers = gr.Slider(0, 6, value=4, step=1, label="Freeze the first N layers",
                                          elem_id="finetune-freeze")
            with gr.Row(visible=show_adapter) as adapter_box:
                adapter_size = gr.Slider(1, 128, value=16, step=1, label="Adapter bottleneck size m",
                                         elem_id="finetune-adapter")
            with gr.Row():
                start = gr.Button("Train", variant="primary")
                cancel = gr.Button("Cancel", variant="stop")
            progress = gr.Markdown(label="Progress", elem_id="finetune-progress")
            curves = gr.Plot(label="Live curves", elem_id="finetune-curves")
            timer = gr.Timer(1.0, active=False)
        with gr.Tab("Compare"):
            gr.Markdown("Every run of this session. Held-out metric: accuracy for classification, next-token "
                        "accuracy for style tuning.")
            chart = gr.Plot(label="Runs side by side")
            table = gr.Dataframe(label="Runs", wrap=True, elem_id="finetune-runs")
        with gr.Tab("Try it, download, export"):
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
            files = gr.File(label="Files", file_count="multiple")

        @user_errors
        def on_task(task_name: str, method_name: str = "lora"):
            decoding = TASKS[task_name] == "shakespeare"
            if decoding:
                announce_first_use(decoder)  # reading the decoder's module names loads it: say so while it converts
            names = playground.module_names(decoder=decoding) if playground is not None else []
            defaults = finetune.DEFAULT_LORA_TARGETS["llama" if decoding else "bert"]
            allowed = finetune.DECODER_METHODS if decoding else tuple(finetune.METHODS)
            choices = [(f"{name}: {finetune.METHODS[name].split(':')[1].strip()}", name) for name in allowed]
            return (gr.update(visible=TASKS[task_name] == "csv"), gr.update(choices=names, value=list(defaults)),
                    gr.update(choices=choices, value=method_name if method_name in allowed else "lora"))

        def on_method(name: str):
            note, lora, freeze, adapter = method_settings(name)
            return (finetune.DEFAULT_LEARNING_RATE.get(name, 1e-3), note, gr.update(visible=lora),
                    gr.update(visible=freeze), gr.update(visible=adapter))

        @user_errors
        def on_start(task: str, csv_file, method: str, steps: int, learning_rate: float, batch_size: int, rank: int,
                     alpha: int, dropout: float, targets: list[str], freeze_layers: int, adapter_size: int,
                     state: Session, request: gr.Request):
            if playground is None:
                raise encoder
            config = make_config(method, steps, learning_rate, batch_size, rank, alpha, dropout, targets,
                                 freeze_layers, adapter_size)
            kind, data, notice = TASKS[task], None, ""
            if kind == "csv":
                if not csv_file:
                    raise InputError("Upload a CSV file with text and label columns first.")
                data, notice = read_labelled_csv(csv_file)
            job_id = playground.start(kind, config, owner=request.session_hash or "", data=data)
            state.current_job = job_id
            state.job_ids.append(job_id)
            first_use = first_use_note(decoder) if kind == "shakespeare" else None
            text = f"⏳ Queued {config.method} on {task}." + "".join(f" {n}" for n in (notice, first_use) if n)
            return state, text

        @user_errors
        def on_tick(state: Session):
            if playground is None or not state.current_job:
                return gr.skip(), gr.skip(), gr.Timer(active=False), gr.skip(), gr.skip(), gr.skip(), state
            status = playground.status(state.current_job)
            metric_name = "next-token accuracy" if "Shakespeare" in status.name else "held-out accuracy"
            figure = curves_figure(status, metric_name) if status.losses else gr.skip()
            if not status.finished:
                return progress_text(status), figure, gr.skip(), gr.skip(), gr.skip(), gr.skip(), state
            if status.result is not None:  # finished, or cancelled/capped after some steps: keep what it learned
                state.run_ids.append(status.result.run_id)
                if len(state.run_ids) > MAX_FINETUNE_RUNS_PER_SESSION:  # keep memory bounded: drop the oldest
                    playground.forget(state.run_ids[:1])
                    state.run_ids = state.run_ids[1:]
            state.current_job = ""
            records = playground.records_for(state.run_ids)
            choices = [(f"{r.run_id}: {r.method} on {r.task}", r.run_id) for r in records]
            return (progress_text(status), figure, gr.Timer(active=False),
                    comparison_figure(records) if records else None, comparison_table(records) if records else None,
                    gr.update(choices=choices, value=choices[-1][1] if choices else None), state)

        @user_errors
        def on_cancel(state: Session):
            if playground is None or not state.current_job:
                raise InputError("No training run is in progress.")
            playground.cancel(state.current_job)
            return "⏹️ Cancelling at the next step…"

        @user_errors
        def on_compare(run_id: str, text: str, state: Session):
            if not run_id or run_id not in state.run_ids:
                raise InputError("Train a run first, then pick it here.")
            if not (text or "").strip():
                raise InputError("Please enter some text: the input is empty.")
            prediction = playground.predict(run_id, truncate_text(text.strip())[0])
            return prediction.base, prediction.tuned

        @user_errors
        def on_download(run_id: str, state: Session):
            if not run_id or run_id not in state.run_ids:
                raise InputError("Train a run first, then pick it here.")
            return [offer_download(f"{run_id}-adapter.zip", playground.adapter_archive(run_id))]

        @user_errors
        def on_export(run_id: str, state: Session):
            if not run_id or run_id not in state.run_ids:
                raise InputError("Train a run first, then pick it here.")
            return [offer_download(f"{run_id}-merged.zip", playground.export_merged(run_id))]

        task.change(on_task, [task, method], [upload, targets, method], api_name=False)
        # opening needs only the model's module names: setting the method here would undo one restored from a link
        page.load(lambda name: on_task(name)[:2], task, [upload, targets], api_name=False)
        # UI only and instant; a task change that resets the method, and a restored link, fire it too
        method.change(on_method, method, [learning_rate, method_note, lora_box, freeze_box, adapter_box],
                      api_name=False, queue=False, show_progress="hidden")
        start.click(on_start, [task, upload, method, steps, learning_rate, batch_size, rank, alpha, dropout, targets,
                               freeze_layers, adapter_size, session], [session, progress],
                    api_name="finetune_start", concurrency_id="finetune-ui").success(
            lambda: gr.Timer(active=True), None, timer, api_name=False, queue=False)  # the page's polling, not the API's
        timer.tick(on_tick, session, [progress, curves, timer, chart, table, run_choice, session],
                   api_name=False, concurrency_id="finetune-ui", show_progress="hidden")
        cancel.click(on_cancel, session, progress, api_name="finetune_cancel", concurrency_id="finetune-ui")
        compare.click(on_compare, [run_choice, sample, session], [base_out, tuned_out], api_name="finetune_compare",
                      concurrency_id="finetune-ui")
        download.click(on_download, [run_choice, session], files, api_name="finetune_download",
                       concurrency_id="finetune-ui")
        export.click(on_export, [run_choice, session], files, api_name="finetune_export", concurrency_id="finetune-ui")
        # no run on opening a link: a training run is the operator's CPU time, started by a click
        deep_link(page, {"task": task, "method": method, "steps": steps, "learning_rate": learning_rate,
                         "batch": batch_size, "rank": rank, "alpha": alpha, "dropout": dropout,
                         "freeze": freeze_layers, "adapter": adapter_size})
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
