"""Encoder–decoder latency: the gallery's path vs raw transformers `generate` on the same model, in one run.

    .venv/bin/python bench/bench_seq2seq.py [--model embedded] [--rounds 40] [--max-new-tokens 16]

Measured in this process, interleaved round by round so that the machine's noise hits every path alike:
  raw        `model.generate(...)` of the same model, greedy (and beam search), on this thread (the baseline)
  gallery    `TextToText.generate` through the serving seam (`connect`): the service thread, generation, and the one
             teacher-forced pass that reads the cross- and encoder attention for the heatmaps
and prints p50/p95 and the ratio gallery / raw at p50. The attention pass is extra work the page shows; the ratio
says what it costs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the server does (txgallery.lib.threads.prefer_passive_openmp)

import torch  # noqa: E402
from timing import interleaved, percentiles  # noqa: E402
from txgallery_demos.seq2seq.run import TASK  # noqa: E402
from txgallery_demos.seq2seq.service import GenerationSettings, TextToText  # noqa: E402

from txgallery.models import store  # noqa: E402
from txgallery.serving.seam import connect  # noqa: E402

TEXTS = [
    "sst2 sentence: a gripping , beautifully acted film that stays with you long after the credits .",
    "sst2 sentence: the plot is a mess and the jokes fall flat ; i checked my watch twice .",
    "fill: one of the <extra_id_0> films of the year , and one of the funniest .",
    "fill: the performances are <extra_id_0> but the script lets everyone down .",
]


def main() -> None:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()

    source = store.resolve(args.model, TASK)
    loaded = store.get_store().load(source, attentions=True)
    model, tokenizer = loaded.model, loaded.tokenizer
    service = connect(TextToText, source)
    rows = []
    for beams in (1, 4):
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens, num_beams=beams)

        @torch.inference_mode()
        def raw(i: int) -> None:
            batch = tokenizer([TEXTS[i % len(TEXTS)]], return_tensors="pt").to(loaded.device)
            model.generate(**batch, max_new_tokens=settings.max_new_tokens, num_beams=beams, do_sample=False)

        def gallery(i: int) -> None:
            service.generate(TEXTS[i % len(TEXTS)], settings)

        samples = interleaved({"raw generate": raw, "gallery (service + attention pass)": gallery}, args.rounds,
                              warmup=3)
        base = statistics.median(samples["raw generate"])
        for name, values in samples.items():
            p50, p95 = percentiles(values)
            rows.append(f"| {'greedy' if beams == 1 else f'beam {beams}'} | {name} | {p50:.1f} | {p95:.1f} | "
                        f"{statistics.median(values) / base:.2f}× |")
    print(f"model: {source.label}; device {loaded.device}; torch threads {torch.get_num_threads()}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.rounds} rounds, "
          f"max {args.max_new_tokens} new tokens, {len(TEXTS)} inputs in turn\n")
    print("| decoding | path | p50 ms | p95 ms | p50 / raw |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
