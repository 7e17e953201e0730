"""The efficiency lab's distillation, measured: the same student trained with the teacher and on labels alone.

    nice -n 10 .venv/bin/python bench/bench_distil.py [--layers 2] [--steps 200 600] [--temperature 2] [--alpha 0.7]

The teacher is the embedded sentiment model (MiniLM-L6 + the shipped LoRA adapter); the student is the first
`--layers` layers of the pretrained MiniLM with a fresh head. Both student runs see the same Rotten Tomatoes batches,
seed and steps (`distil` in demos/efficiency/variants.py, what the page's *Distil* tab runs); accuracy is on the lab's
held-out test sentences. Prints one Markdown row per step budget.
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
from txgallery_demos.efficiency.variants import EVAL_SIZE, distil  # noqa: E402

from txgallery.models import store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, nargs="+", default=[200, 600])
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.7)
    args = parser.parse_args()

    teacher = store.get_store().load(store.resolve("embedded", "text-classification"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}\n")
    print(f"| student | steps × batch 32 | teacher | with the teacher (T={args.temperature}, α={args.alpha}) | "
          f"labels only | gain | wall s |\n|---|---|---|---|---|---|---|")
    for steps in args.steps:
        started = time.perf_counter()
        result = distil(teacher.model, teacher.tokenizer, layers=args.layers, steps=steps,
                        temperature=args.temperature, alpha=args.alpha,
                        out_dir=Path(tempfile.mkdtemp(prefix="txgallery-distil-")))
        print(f"| {args.layers} layers, {result.student_parameters_m:.1f} M | {steps} | {result.teacher_accuracy:.3f} | "
              f"{result.with_teacher_accuracy:.3f} | {result.without_teacher_accuracy:.3f} | "
              f"{result.with_teacher_accuracy - result.without_teacher_accuracy:+.3f} | "
              f"{time.perf_counter() - started:.0f} |", flush=True)
    print(f"\naccuracy on the first {EVAL_SIZE} held-out Rotten Tomatoes test sentences")


if __name__ == "__main__":
    main()
