"""Efficiency lab figures: every variant of the embedded sentiment model against fp32, in one run.

    .venv/bin/python bench/bench_efficiency.py [--sparsity 0.5]

Prints (1) accuracy on 500 held-out Rotten Tomatoes sentences, agreement with fp32, latency p50/p95 at batch 1 and
32, weight size and parameters for fp32, PyTorch dynamic int8, ONNX Runtime fp32 and int8, magnitude pruning and
torch.compile (with the time each variant took to build: quantize, export, compile);
with speed-ups against fp32 measured in the same process; and (2) the "model sizes" table: BERT shapes from tiny to
base (random weights: parameters, size and latency are properties of the shape, accuracy is not) beside the
embedded 6-layer MiniLM.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `txgallery serve` runs

import torch  # noqa: E402
from txgallery_demos.efficiency.variants import (  # noqa: E402
    EVAL_SIZE,
    compiled_variant,
    fp32_variant,
    int8_variant,
    measure,
    model_sizes,
    onnx_int8_variant,
    onnx_variant,
    predictions,
    pruned_variant,
    results_table,
)

from txgallery.lib.datasets import rotten_tomatoes_splits  # noqa: E402
from txgallery.models import store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sparsity", type=float, default=0.5)
    args = parser.parse_args()

    base = store.get_store().load(store.resolve("embedded", "text-classification"))
    model, tokenizer = base.model, base.tokenizer
    data = rotten_tomatoes_splits().test.head(EVAL_SIZE)
    out = Path(tempfile.mkdtemp(prefix="txgallery-bench-"))
    builders = [lambda: fp32_variant(model, tokenizer, out / "fp32"),
                lambda: int8_variant(model, tokenizer, out / "int8"),
                lambda: onnx_variant(model, tokenizer, out / "onnx"),
                lambda: onnx_int8_variant(out / "onnx", tokenizer, out / "onnx-int8", sum(p.numel() for p in model.parameters())),
                lambda: pruned_variant(model, tokenizer, args.sparsity, False, out / "pruned"),
                lambda: pruned_variant(model, tokenizer, args.sparsity, True, out / "pruned-structured"),
                lambda: compiled_variant(model, tokenizer, out / "fp32", data.texts)]
    reference = predictions(model, tokenizer, data.texts)
    measurements = []
    for build in builders:
        started = time.perf_counter()
        variant = build()
        # the bench times every run (no time budget), unlike the page
        measurements.append(measure(variant, data, reference, time.perf_counter() - started, latency_budget_s=None)[0])
    frame = results_table(measurements)

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), python {platform.python_version()}\n")
    print("| variant | accuracy | agrees with fp32 | p50/p95 b1 ms | p50/p95 b32 ms | weights MB | params M | "
          "build s | speed-up b1 | speed-up b32 |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in frame.to_dict("records"):
        print(f"| {r['variant']} | {r['accuracy']:.3f} | {r['agreement_with_fp32']:.3f} | {r['p50_batch1_ms']:.1f} / "
              f"{r['p95_batch1_ms']:.1f} | {r['p50_batch32_ms']:.0f} / {r['p95_batch32_ms']:.0f} | {r['size_mb']:.1f} | "
              f"{r['parameters_m']:.1f} | {r['build_s']:.1f} | {r['speed-up b1']:.2f}× | {r['speed-up b32']:.2f}× |")

    print("\n| model shape | params M | fp32 MB | p50 b1 ms | p50 b32 ms |\n|---|---|---|---|---|")
    for row in model_sizes(tokenizer, data.texts).itertuples(index=False):
        print("| " + " | ".join(str(value) for value in row) + " |")
    fp32 = frame.iloc[0]
    print(f"| embedded MiniLM-L6 (6L/384), accuracy {fp32.accuracy:.3f} | {fp32.parameters_m:.1f} | "
          f"{fp32.size_mb:.0f} | {fp32.p50_batch1_ms:.1f} | {fp32.p50_batch32_ms:.0f} |")


if __name__ == "__main__":
    main()
