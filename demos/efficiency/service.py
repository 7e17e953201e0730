"""The efficiency lab's service: it builds and measures variants of one classifier, distils it, and hands back
what it saved. The page reaches it through `connect` (wherever it runs) and runs one job at a time on it.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from txgallery_demos.efficiency.variants import (
    EVAL_SIZE,
    DistillationResult,
    Measurement,
    Variant,
    check_sparsity,
    compiled_variant,
    distil,
    fp32_variant,
    int8_variant,
    measure,
    model_sizes,
    onnx_int8_variant,
    onnx_variant,
    parameter_count,
    pruned_variant,
    results_table,
)

from txgallery.lib.datasets import rotten_tomatoes_splits
from txgallery.limits import MAX_EFFICIENCY_RUNS_KEPT, InputError
from txgallery.models import store
from txgallery.paths import home
from txgallery.ui import zipped


RUN_FOLDER = re.compile(r"\d{8}-\d{6}-")  # a run's folder: its start time, then a unique suffix


def new_run_folder(root: Path, keep: int = MAX_EFFICIENCY_RUNS_KEPT) -> Path:
    """A fresh folder for a run's variants under `root`, after deleting all but the newest `keep - 1` earlier runs."""
    root.mkdir(parents=True, exist_ok=True)
    earlier = sorted(p for p in root.iterdir() if p.is_dir() and RUN_FOLDER.match(p.name))  # names sort by time
    for folder in earlier[:max(0, len(earlier) - (keep - 1))]:
        shutil.rmtree(folder, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=root))


class EfficiencyLab:
    """Builds and measures variants of one classifier (each run uses every core; the page runs one at a time)."""

    batched_methods: tuple[str, ...] = ()  # each call is a whole run: nothing to batch

    def __init__(self, source: store.ModelSource) -> None:
        self.source = source
        self.loaded = store.get_store().load(source)

    def check_health(self) -> None:
        """A small forward of the model: a replica's health check (`txgallery.serving.ray_serve.ServiceHealth`)."""
        store.check_forward(self.loaded)

    def run(self, techniques: list[str], sparsity: float, structured: bool,
            progress: Callable[[float, str], None] | None = None) -> tuple[pd.DataFrame, list[Measurement]]:
        """Build the chosen variants, measure each beside the fp32 baseline, return the table."""
        if "pruning" in techniques:
            check_sparsity(sparsity)
        model, tokenizer = self.loaded.model, self.loaded.tokenizer
        if not isinstance(model, torch.nn.Module):
            raise InputError("The lab starts from a PyTorch model; this one is already an ONNX Runtime session.")
        data = rotten_tomatoes_splits().test.head(EVAL_SIZE)
        out = new_run_folder(home() / "efficiency")
        steps: list[tuple[str, Callable[[], Variant]]] = [
            ("fp32", lambda: fp32_variant(model, tokenizer, out / "fp32"))]
        if "int8" in techniques:
            steps.append(("int8", lambda: int8_variant(model, tokenizer, out / "int8")))
        if "onnx" in techniques or "onnx-int8" in techniques:
            steps.append(("onnx", lambda: onnx_variant(model, tokenizer, out / "onnx")))
        if "onnx-int8" in techniques:
            steps.append(("onnx-int8", lambda: onnx_int8_variant(out / "onnx", tokenizer, out / "onnx-int8",
                                                                 parameter_count(model))))
        if "pruning" in techniques:
            steps.append(("pruned", lambda: pruned_variant(model, tokenizer, sparsity, structured, out / "pruned")))
        if "compile" in techniques:
            steps.append(("torch.compile", lambda: compiled_variant(model, tokenizer, out / "fp32", data.texts)))
        measurements: list[Measurement] = []
        reference: list[int] | None = None  # the fp32 baseline's predictions, once measured
        for i, (name, make) in enumerate(steps):
            if progress:
                progress(i / len(steps), f"building and measuring {name}")
            started = time.perf_counter()
            variant = make()
            measurement, predicted = measure(variant, data, reference, time.perf_counter() - started)
            reference = predicted if reference is None else reference
            measurements.append(measurement)
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
