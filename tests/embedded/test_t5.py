"""The embedded T5's data, tokenizer and training: text-to-text pairs, a cut-down WordPiece vocabulary, loss falls."""

from __future__ import annotations

import json
import random

import pytest
import torch

from txgallery.cli import build_parser
from txgallery.embedded.t5 import (
    SENTINEL,
    T5Recipe,
    build_tokenizer,
    fill_example,
    make_t5,
    pretrained_embeddings,
    sentiment_example,
    text2text_pairs,
    train_embedded_t5,
    train_t5,
)
from txgallery.lib.datasets import rotten_tomatoes_splits

TINY = dict(vocab_size=600, d_model=32, d_kv=8, d_ff=64, encoder_layers=1, decoder_layers=1, heads=4, dropout=0.0,
            batch_size=16, learning_rate=3e-3, warmup_steps=2)


@pytest.fixture(scope="module")
def corpus():
    train = rotten_tomatoes_splits().train
    return train.texts[:256], train.labels[:256]


@pytest.fixture(scope="module")
def tokenizer_and_origin(corpus):
    return build_tokenizer(corpus[0], vocab_size=600)


def test_tasks_are_framed_as_t5_frames_them():
    assert sentiment_example("a fine film", 1) == ("sst2 sentence: a fine film", "positive")
    assert sentiment_example("a dull film", 0)[1] == "negative"
    text = "the acting is wonderful and the story is moving"
    source, target = fill_example(text, random.Random(0))
    assert source.startswith("fill: ") and source.count(SENTINEL) == 1
    assert 1 <= len(target.split()) <= 2
    # putting the answer back into the gap gives the sentence again
    assert source.removeprefix("fill: ").replace(SENTINEL, target) == text
    assert fill_example("too short", random.Random(0)) is None


def test_pairs_are_deterministic(corpus):
    texts, labels = corpus
    assert text2text_pairs(texts, labels, seed=0) == text2text_pairs(texts, labels, seed=0)
    assert text2text_pairs(texts, labels, seed=0) != text2text_pairs(texts, labels, seed=1)  # other spans cut


def test_tokenizer_follows_t5_conventions(tokenizer_and_origin):
    tokenizer, origin = tokenizer_and_origin
    assert len(tokenizer) == len(origin) == 600
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1)
    ids = tokenizer(f"fill: a {SENTINEL} film")["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id and tokenizer.convert_tokens_to_ids(SENTINEL) in ids
    # a word outside the cut-down vocabulary is spelled out from pieces, not lost to [UNK]
    assert tokenizer.unk_token_id not in tokenizer("zyzzyvas xylophonist")["input_ids"]
    assert tokenizer.decode(tokenizer("a wonderful film")["input_ids"], skip_special_tokens=True) == "a wonderful film"
    # every non-special token came from MiniLM's vocabulary
    assert origin[:4] == [-1] * 4 and min(origin[4:]) >= 0


def test_pretrained_embeddings_keep_similar_words_close(tokenizer_and_origin):
    tokenizer, origin = tokenizer_and_origin
    table = pretrained_embeddings(origin, 32, seed=0)
    assert table.shape == (600, 32)
    vector = lambda word: table[tokenizer.convert_tokens_to_ids(word)]
    cosine = torch.nn.functional.cosine_similarity
    assert cosine(vector("good"), vector("great"), dim=0) > cosine(vector("good"), vector("."), dim=0)


def _tiny_run(tokenizer, pairs, steps: int):
    recipe = T5Recipe(**TINY, max_steps=steps, seed=0)
    model = make_t5(recipe, len(tokenizer))
    return model, train_t5(model, tokenizer, pairs, recipe)


def test_training_is_deterministic_and_loss_falls(corpus, tokenizer_and_origin):
    tokenizer, _ = tokenizer_and_origin
    pairs = text2text_pairs(*corpus, seed=0)[:64]
    model_a, report_a = _tiny_run(tokenizer, pairs, steps=24)
    model_b, report_b = _tiny_run(tokenizer, pairs, steps=24)
    assert report_a.losses == report_b.losses
    assert all(torch.equal(a, b) for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()))
    # 64 pairs seen six times: the loss must come down well below its start
    assert sum(report_a.losses[-4:]) / 4 < 0.8 * sum(report_a.losses[:4]) / 4


def test_train_command_is_wired():
    args = build_parser().parse_args(["train", "t5", "--max-steps", "3", "--out", "/tmp/x"])
    assert (args.target, args.max_steps, args.out) == ("t5", 3, "/tmp/x")


@pytest.mark.slow
def test_training_pipeline_writes_a_loadable_model(tmp_path):
    from txgallery.embedded.t5 import load_t5_directory

    out = tmp_path / "t5"
    metrics = train_embedded_t5(out, T5Recipe(**TINY, max_steps=3), progress=False, eval_limit=32)
    assert metrics["steps"] == 3 and metrics["command"] == "txgallery train t5"
    assert json.loads((out / "metrics.json").read_text())["test_size"] == 32
    assert (out / "model.safetensors").stat().st_size < 5 * 2**20 and (out / "README.md").exists()
    model, tokenizer = load_t5_directory(out)
    assert model.dtype == torch.float32 and len(tokenizer) == 600
