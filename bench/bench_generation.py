"""Generation speed: the gallery's streaming path vs raw `transformers` `generate` with KV cache, in one run.

    .venv/bin/python bench/bench_generation.py [--tokens 128] [--rounds 3] [--model embedded]

Same model (default: the embedded SmolLM2-135M-Instruct), same prompt, greedy, same number of new tokens, measured
in this process and interleaved round by round:
  raw        `model.generate(do_sample=False, max_new_tokens=N)` with its KV cache (the baseline)
  gallery    `connect(TextGenerator, source).generate(...)`, consumed to the end: the demo's own decoding loop (KV cache,
             per-step candidates before/after filtering, text assembly) on the service thread, streamed through the
             serving seam one token at a time
and prints tokens/s of each (median over rounds), their ratio (target ≥ 0.95), and the gallery's time to first token
(target < 300 ms after a short prompt). It also checks that both paths produced the same tokens.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the server does (txgallery.lib.threads.prefer_passive_openmp)

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from txgallery_demos.generation.decoding import SamplingSettings, eos_ids  # noqa: E402
from txgallery_demos.generation.run import TASK  # noqa: E402
from txgallery_demos.generation.service import TextGenerator  # noqa: E402

from txgallery.models import store  # noqa: E402
from txgallery.serving.seam import connect  # noqa: E402

PROMPT = "Once upon a time, there was a little"


def main() -> int:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="embedded")
    args = parser.parse_args()

    source = store.resolve(args.model, TASK)
    loaded = store.get_store().load(source)
    model, tokenizer = loaded.model, loaded.tokenizer
    service = connect(TextGenerator, source)
    settings = SamplingSettings(max_new_tokens=args.tokens)
    ids = torch.tensor([tokenizer(PROMPT)["input_ids"]], device=loaded.device)
    stop_ids = sorted(eos_ids(model, tokenizer))  # both paths stop at the same end-of-sequence tokens

    def raw() -> tuple[float, list[int]]:
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=args.tokens, eos_token_id=stop_ids,
                                 pad_token_id=tokenizer.eos_token_id)
        return time.perf_counter() - started, out[0, ids.shape[-1]:].tolist()

    def gallery() -> tuple[float, list[int], float]:
        started = time.perf_counter()
        tokens, first = [], None
        for update in service.generate(PROMPT, settings):
            if update.steps and first is None:
                first = time.perf_counter() - started
            tokens += [s.token_id for s in update.steps]
        return time.perf_counter() - started, tokens, first

    raw(), gallery()  # warm-up: first calls build caches and the service thread
    raw_times, gallery_times, firsts, same, produced = [], [], [], True, 0
    for _ in range(args.rounds):
        seconds, raw_tokens = raw()
        raw_times.append(seconds)
        seconds, gallery_tokens, first = gallery()
        gallery_times.append(seconds)
        firsts.append(first)
        same, produced = same and raw_tokens == gallery_tokens, len(gallery_tokens)

    raw_rate = produced / statistics.median(raw_times)
    gallery_rate = produced / statistics.median(gallery_times)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, device {loaded.device}")
    print(f"model: {source.label}; prompt {ids.shape[-1]} tokens; {produced} new tokens (max {args.tokens}), greedy; "
          f"{args.rounds} rounds, interleaved")
    print("| path | tokens/s (median) | all rounds (s) |\n|---|---|---|")
    print(f"| raw `generate` (KV cache) | {raw_rate:.1f} | {', '.join(f'{t:.2f}' for t in raw_times)} |")
    print(f"| gallery stream (own loop + per-step view, via serving seam) | {gallery_rate:.1f} | "
          f"{', '.join(f'{t:.2f}' for t in gallery_times)} |")
    paired = [r / g for r, g in zip(raw_times, gallery_times)]  # each round ran both paths back to back
    print(f"ratio gallery / raw: {gallery_rate / raw_rate:.3f} of the median times; median of the per-round ratios "
          f"{statistics.median(paired):.3f} ({', '.join(f'{x:.2f}' for x in paired)}) (target ≥ 0.95)")
    print(f"gallery time to first token: median {statistics.median(firsts) * 1000:.0f} ms "
          f"({', '.join(f'{f * 1000:.0f}' for f in firsts)}) (target < 300 ms)")
    print(f"same tokens on both paths: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
