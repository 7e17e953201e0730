"""Training steps/s of the playground path vs a plain PyTorch loop: same model, batch and data, one process.

    nice -n 10 .venv/bin/python bench/bench_finetune.py [--steps 20] [--batch 16] [--method lora] [--rounds 2]

The playground path is what the page runs: a `JobRunner` job on its own thread calling `finetune.train` with
progress events, the Cancel/cap check every step (`JobContext.should_stop`, which reads the process's memory) and a
linear schedule. The baseline is the shortest honest loop: tokenize, forward, backward, AdamW step. Both build the
model with `finetune.build` (same seed, same trainable parameters) and take the same batches
(`finetune.batch_indices`). Rounds alternate (baseline, playground, baseline, …) so that load drifts hit both; the
first step of each run (allocations) is left out of the rate.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `txgallery serve` runs

import torch  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402
from txgallery_demos.finetune import methods as finetune

from txgallery.lib.datasets import rotten_tomatoes_splits  # noqa: E402
from txgallery.models import store  # noqa: E402
from txgallery.serving.jobs import JobRunner  # noqa: E402


def plain_loop(base: str, config: finetune.FinetuneConfig, data: finetune.ClassificationData) -> float:
    """Steps per second of a bare PyTorch loop (after the first step)."""
    model, config, _ = finetune.build(base, config)
    tokenizer = AutoTokenizer.from_pretrained(base)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    model.train()
    stamps = []
    for indices in finetune.batch_indices(len(data.train), config.batch_size, config.steps, config.seed):
        batch = tokenizer([data.train.texts[i] for i in indices], padding=True, truncation=True,
                          max_length=config.max_length, return_tensors="pt")
        loss = model(**batch, labels=torch.tensor([data.train.labels[i] for i in indices])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        stamps.append(time.perf_counter())
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def playground(base: str, config: finetune.FinetuneConfig, data: finetune.ClassificationData, out: str) -> float:
    """Steps per second of the playground's job path (after the first step)."""
    stamps: list[float] = []

    def job(context):
        def on_event(event: dict) -> None:
            stamps.append(time.perf_counter())
            context.report(event)

        return finetune.run_local(finetune.RunSpec(base, config, data, out), on_event, context.should_stop)

    runner = JobRunner()
    status = runner.wait(runner.submit("bench", job))
    assert status.state == "done", status.message
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--method", default="lora")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    base = finetune.model_directory(store.resolve("embedded:minilm-l6", "feature-extraction"))
    splits = rotten_tomatoes_splits()
    # one held-out sentence: the playground's closing evaluation must not count against it
    data = finetune.ClassificationData(splits.train.head(2000), splits.test.head(1))
    config = finetune.FinetuneConfig(method=args.method, steps=args.steps, batch_size=args.batch, max_length=64,
                                     eval_every=args.steps + 1)
    print(f"# {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads; MiniLM-L6 {args.method}, batch {args.batch}, {args.steps} steps per run, {args.rounds} rounds")
    plain, ours = [], []
    with tempfile.TemporaryDirectory() as out:
        for round_ in range(args.rounds):
            plain.append(plain_loop(base, config, data))
            ours.append(playground(base, config, data, f"{out}/{round_}"))
            print(f"round {round_ + 1}: plain {plain[-1]:.3f} steps/s, playground {ours[-1]:.3f} steps/s", flush=True)
    ratio = statistics.median(ours) / statistics.median(plain)
    print(f"median: plain loop {statistics.median(plain):.3f} steps/s, playground {statistics.median(ours):.3f} "
          f"steps/s; playground / plain = {ratio:.3f} (overhead {1 - ratio:+.1%})")


if __name__ == "__main__":
    main()
