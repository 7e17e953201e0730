"""Attention explorer: time to compute and render every view, and payload sizes, vs bertviz on the same input.

    .venv/bin/python bench/bench_attention.py [--repeats 3] [--lengths 32 128]

On the embedded MiniLM-L6 (6 layers × 12 heads), for inputs of 32 and 128 tokens, in one process:
  forward    one forward pass with attentions (shared by both; measured once per length)
  txgallery  head view HTML (one layer, all heads) + model view HTML (72 PNG thumbnails) + heatmap (plotly JSON) +
             step by step (recomputation from the weights + Q·Kᵀ/scale/mask/softmax and Q/K/V figures, plotly JSON) +
             head statistics table — everything the page shows after one "Show attention"
  bertviz    `head_view` + `model_view` HTML generation (`html_action="return"`) on the same attention tensors
The ratio txgallery / bertviz is printed for time and for payload (the bytes the browser receives: HTML and plotly
JSON as Gradio sends them). bertviz draws in the browser from JSON of every layer's attention; txgallery sends one
layer's lines, small thumbnails and plotly figures; the browser's own drawing time is not part of either figure.
bertviz is a benchmark-only dependency: `pip install --no-deps bertviz ipython`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from txgallery_demos.attention.run import (  # noqa: E402
    AttentionExplorer,
    head_view,
    heatmap_figure,
    statistics_table,
)

from txgallery.lib import attention as att  # noqa: E402
from txgallery.lib import attention_views as views  # noqa: E402
from txgallery.models import store  # noqa: E402

BASE = ("Attention lets every token look at every other token, weigh how relevant each one is, and mix their values "
        "into a new representation; stacked layers of many heads build up syntax and meaning step by step. ")


def text_of(tokens: int, tokenizer) -> str:
    """A text that tokenizes to exactly `tokens` tokens (special tokens included)."""
    words = (BASE * 20).split()
    ids = tokenizer(" ".join(words))["input_ids"][1:-1][: tokens - 2]
    return tokenizer.decode(ids)


def ours(explorer: AttentionExplorer, text: str) -> tuple[float, int]:
    """Every view of the page for one text; returns (seconds, payload bytes). The forward is cached beforehand."""
    start = time.perf_counter()
    result = explorer.analyse(text)
    payload = len(head_view(result, 0, []).encode())
    payload += len(views.model_view_html(result.attentions, selected=(0, 0)).encode())
    payload += len(heatmap_figure(result, 0, 0).to_json().encode())
    steps = explorer.steps(text, "", 0, 0)
    payload += len(views.interactive_steps(steps, result.tokens).to_json().encode())
    payload += len(views.interactive_vectors(steps, result.tokens).to_json().encode())
    payload += len(statistics_table(result).to_json().encode())
    return time.perf_counter() - start, payload


def theirs(attentions: tuple, tokens: list[str]) -> tuple[float, int]:
    """bertviz's head view and model view HTML for the same attention; returns (seconds, payload bytes)."""
    from bertviz import head_view as bv_head_view
    from bertviz import model_view as bv_model_view

    start = time.perf_counter()
    head = bv_head_view(attentions, tokens, html_action="return").data
    model = bv_model_view(attentions, tokens, html_action="return").data
    return time.perf_counter() - start, len(head.encode()) + len(model.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128])
    args = parser.parse_args()
    explorer = AttentionExplorer(store.resolve("embedded", "feature-extraction"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; model {explorer.source.ref}")
    print(f"{'tokens':>6} {'forward s':>10} {'txgallery s':>12} {'bertviz s':>10} {'time ratio':>10} "
          f"{'txgallery KB':>13} {'bertviz KB':>11} {'payload ratio':>13}")
    for length in args.lengths:
        text = text_of(length, explorer.tokenizer)
        start = time.perf_counter()
        explorer._last = None  # a fresh forward, timed on its own
        result = explorer.analyse(text)
        forward = time.perf_counter() - start
        assert len(result.tokens) == length, (len(result.tokens), length)
        attentions = tuple(torch.from_numpy(result.attentions[i][None]) for i in range(result.layers))
        mine, bert = [], []
        for _ in range(args.repeats):  # interleaved, so both see the same machine load
            mine.append(ours(explorer, text))
            bert.append(theirs(attentions, result.tokens))
        ours_s, bert_s = statistics.median(t for t, _ in mine), statistics.median(t for t, _ in bert)
        ours_b, bert_b = mine[0][1], bert[0][1]
        print(f"{length:>6} {forward:>10.3f} {ours_s:>12.3f} {bert_s:>10.3f} {ours_s / bert_s:>10.2f} "
              f"{ours_b / 1024:>13.0f} {bert_b / 1024:>11.0f} {ours_b / bert_b:>13.3f}")
    rollout_input = [np.random.default_rng(0).dirichlet(np.ones(197), size=(12, 197)) for _ in range(12)]
    start = time.perf_counter()
    att.attention_rollout(rollout_input, "mean", 0.9)
    print(f"rollout of a ViT-B/16-sized stack (12 layers × 12 heads × 197 tokens, discard 0.9): "
          f"{time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    main()
