"""Pre-training the Shakespeare GPT-2: corpus, split by play, tokenizer, training steps, the shipped model and command."""

from __future__ import annotations

import json
import math

import pytest
import torch

from txgallery.embedded.shakespeare import (
    VALIDATION_PLAYS,
    WEIGHTS,
    PretrainRecipe,
    encode_corpus,
    evaluate,
    load_plays,
    make_model,
    markdown_to_play_text,
    pretrain,
    split_plays,
    train_tokenizer,
)
from txgallery.models import store


@pytest.fixture(scope="module")
def plays() -> dict[str, str]:
    return load_plays()


def test_markdown_becomes_plain_play_text():
    markdown = ("# Macbeth\n\n## ACT I\n\n_Thunder and lightning. Enter three Witches_\n\n**First Witch**  \n"
                "When shall we three meet again  \nIn thunder, lightning, or in rain?\n\n\n\n**Second Witch**  \nSoon.\n")
    assert markdown_to_play_text(markdown) == (
        "Macbeth\n\nACT I\n\n[Thunder and lightning. Enter three Witches]\n\nFirst Witch:\nWhen shall we three meet "
        "again\nIn thunder, lightning, or in rain?\n\nSecond Witch:\nSoon.\n")


def test_corpus_is_split_by_whole_plays(plays):
    assert len(plays) == 38 and sum(map(len, plays.values())) > 4_500_000
    train, validation = split_plays(plays)
    assert len(train) == 34 and len(validation) == len(VALIDATION_PLAYS)
    othello_line = next(line for line in plays["othello"].splitlines() if len(line) > 40)
    assert any(othello_line in text for text in validation) and not any(othello_line in text for text in train)
    assert all("**" not in text and "\n#" not in text for text in train)  # no bold speakers, no headings


def test_tokenizer_is_deterministic_byte_level_and_lossless(plays):
    texts = [plays["hamlet"][:50_000], plays["macbeth"][:50_000]]
    first, second = train_tokenizer(texts, 500), train_tokenizer(texts, 500)
    assert first.get_vocab() == second.get_vocab() and len(first) == 500
    line = "HAMLET:\nTo be, or not to be — that is the question; 🌹 naïve"
    ids = first(line)["input_ids"]
    assert first.decode(ids) == line and len(ids) < len(line.encode())  # merges compress, bytes cover anything


def test_a_few_training_steps_bring_the_loss_down(plays):
    recipe = PretrainRecipe(vocab_size=300, context=32, n_embd=32, n_layer=2, n_head=2, steps=40, batch_size=8,
                            learning_rate=3e-3, warmup_steps=4)
    tokenizer = train_tokenizer([plays["macbeth"][:60_000]], recipe.vocab_size)
    ids = encode_corpus(tokenizer, [plays["macbeth"][:60_000]])
    model = make_model(recipe, tokenizer)
    before = evaluate(model, ids, recipe.context, max_batches=2, batch_size=8)
    assert math.isclose(before, math.log(len(tokenizer)), rel_tol=0.05)  # untrained: about uniform over the vocabulary
    losses = pretrain(model, ids, recipe)
    assert len(losses) == 40 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    assert evaluate(model, ids, recipe.context, max_batches=2, batch_size=8) < before - 0.5
    # same seed, same run
    again = make_model(recipe, tokenizer)
    assert pretrain(again, ids, PretrainRecipe(**{**recipe.__dict__, "steps": 3})) == losses[:3]


def test_shipped_model_is_small_and_loads_through_the_store():
    assert (WEIGHTS / "model.safetensors").stat().st_size < 5 * 2**20
    metrics = json.loads((WEIGHTS / "metrics.json").read_text())
    assert metrics["command"] == "txgallery train shakespeare-gpt2" and metrics["validation_plays"] == list(VALIDATION_PLAYS)
    assert f"perplexity\n{metrics['validation_perplexity']:.1f}" in (WEIGHTS / "README.md").read_text()
    loaded = store.get_store().load(store.resolve("embedded:gpt2-shakespeare", "text-generation"))
    assert type(loaded.model).__name__ == "GPT2LMHeadModel" and loaded.metrics == metrics
    ids = loaded.tokenizer("ROMEO:\n", return_tensors="pt")["input_ids"]
    out = loaded.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=20,
                                pad_token_id=loaded.tokenizer.eos_token_id)
    assert len(loaded.tokenizer.decode(out[0, ids.shape[-1]:]).strip()) > 5


@pytest.mark.slow
def test_shipped_validation_loss_is_reproduced(plays):
    """The README's held-out figure, measured again on the held-out plays with the shipped model and tokenizer."""
    metrics = json.loads((WEIGHTS / "metrics.json").read_text())
    loaded = store.get_store().load(store.resolve("embedded:gpt2-shakespeare", "text-generation"))
    ids = encode_corpus(loaded.tokenizer, split_plays(plays)[1])
    assert len(ids) == metrics["validation_tokens"]
    loss = evaluate(loaded.model, ids, metrics["recipe"]["context"], metrics["recipe"]["eval_batches"])
    assert math.isclose(loss, metrics["validation_loss"], rel_tol=1e-4)
    assert loss < metrics["first_loss"] - 2  # far better than the untrained model (7.6 nats/token)


@pytest.mark.slow
def test_train_command_runs_a_few_steps(tmp_path, txgallery):
    out = tmp_path / "gpt2"
    status, stdout, stderr = txgallery("train", "shakespeare-gpt2", "--max-steps", "3", "--out", str(out))
    assert status == 0, stderr[-2000:]
    assert "validation loss" in stdout and "pre-training GPT-2" in stderr  # the progress bar
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["parameters"] > 100_000
    loaded = store.get_store().load(store.resolve(str(out), "text-generation"))
    assert loaded.model.config.n_positions == PretrainRecipe.context
