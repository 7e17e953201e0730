"""The encoder–decoder demo's logic, without Gradio: inputs, generation, cross-attention, the shipped T5's score."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from txgallery_demos.seq2seq.run import (
    SENTINEL,
    TASK,
    TASK_PREFIXES,
    attention_figures,
    beams_setting,
    check_settings,
    check_task,
    declared_tasks,
    fuse_heads,
    generate_text,
    task_input,
)
from txgallery_demos.seq2seq.service import GenerationSettings, TextToText

from txgallery.embedded.t5 import T5Recipe, build_tokenizer, evaluate, make_t5
from txgallery.lib.datasets import rotten_tomatoes_splits
from txgallery.limits import (
    MAX_INPUT_CHARS,
    MAX_SEQ2SEQ_BEAMS,
    MAX_SEQ2SEQ_NEW_TOKENS,
    MAX_SEQ2SEQ_SOURCE_TOKENS,
    InputError,
)
from txgallery.models import hub, store

SENTIMENT, FILL = TASK_PREFIXES["sentiment (sst2 sentence:)"], TASK_PREFIXES["fill in the blank (fill:)"]


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory):
    """A small randomly initialised T5ForConditionalGeneration saved with save_pretrained (a real local directory)."""
    out = tmp_path_factory.mktemp("tiny-t5")
    tokenizer, origin = build_tokenizer(rotten_tomatoes_splits().train.texts[:200], vocab_size=500)
    # more encoder than decoder layers: transformers 5.24 sizes T5's generation cache by the encoder's depth
    recipe = T5Recipe(d_model=32, d_kv=8, d_ff=64, encoder_layers=3, decoder_layers=2, heads=2, seed=0)
    make_t5(recipe, len(origin)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny(tiny_t5_dir) -> TextToText:
    return TextToText(store.resolve(str(tiny_t5_dir), TASK))


@pytest.fixture(scope="module")
def embedded() -> TextToText:
    return TextToText(store.resolve("embedded", TASK))


# --- bad input --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [None, "", "  \n\t "])
def test_empty_text_is_refused(text):
    with pytest.raises(InputError, match="empty"):
        task_input(text, SENTIMENT)


def test_huge_text_is_cut_with_a_notice():
    source, notice = task_input("good." * 6_000, SENTIMENT)
    assert len(source) == len(SENTIMENT) + MAX_INPUT_CHARS
    assert "30,000" in notice and f"{MAX_INPUT_CHARS:,}" in notice


def test_invisible_characters_are_removed_with_a_notice_or_refused_when_alone():
    assert task_input("a fine\u200b film", SENTIMENT) == (SENTIMENT + "a fine film",
                                                          "Removed 1 control or invisible character from the text.")
    with pytest.raises(InputError, match="only control or invisible characters"):
        task_input("\u200b\u2060", SENTIMENT)


def test_fill_needs_a_gap_and_blanks_become_the_sentinel():
    assert task_input("a ___ film", FILL) == (f"fill: a {SENTINEL} film", None)
    with pytest.raises(InputError, match="needs a gap"):
        task_input("a film with no gap", FILL)


@pytest.mark.parametrize("new_tokens, beams", [(MAX_SEQ2SEQ_NEW_TOKENS + 1, 1), (0, 1), (2.5, 1), (None, 1),
                                               (16, MAX_SEQ2SEQ_BEAMS + 1), (16, 0)])
def test_decoding_controls_beyond_the_caps_are_refused(new_tokens, beams):
    with pytest.raises(InputError, match=f"from 1 to ({MAX_SEQ2SEQ_NEW_TOKENS}|{MAX_SEQ2SEQ_BEAMS})"):
        check_settings(new_tokens, beams)
    assert check_settings(MAX_SEQ2SEQ_NEW_TOKENS, MAX_SEQ2SEQ_BEAMS) == GenerationSettings(MAX_SEQ2SEQ_NEW_TOKENS,
                                                                                           MAX_SEQ2SEQ_BEAMS)


def test_a_model_that_is_not_seq2seq_is_refused_with_a_message(tiny_classifier_dir):
    with pytest.raises(store.ModelLoadError, match="Could not load the local directory"):
        TextToText(store.resolve(str(tiny_classifier_dir), TASK))


# --- generation and attention on a real local directory (from_pretrained) ---------------------------------------------

def test_local_directory_loads_through_the_store(tiny, tiny_t5_dir):
    assert tiny.loaded.source.kind == "local" and tiny.loaded.source.ref == str(tiny_t5_dir.resolve())
    assert type(tiny.model).__name__ == "T5ForConditionalGeneration"
    assert "local directory" in tiny.describe()


@pytest.mark.parametrize("service", ["tiny", "embedded"])
def test_greedy_equals_raw_generate(service, request):
    service = request.getfixturevalue(service)
    text = SENTIMENT + "an unexpectedly tender film about two brothers"
    result = service.generate(text, GenerationSettings(max_new_tokens=12, num_beams=1))
    batch = service.tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        raw = service.model.generate(**batch, max_new_tokens=12, do_sample=False, num_beams=1)
    assert result.output_ids == raw[0, 1:].tolist()  # token for token, after the decoder's start token
    assert result.text == service.tokenizer.decode(raw[0], skip_special_tokens=True).strip()


def test_cross_attention_rows_are_distributions_over_the_source(tiny):
    result = tiny.generate(FILL + f"a {SENTINEL} film about love", GenerationSettings(max_new_tokens=7))
    layers, heads, rows, cols = result.cross_attention.shape
    assert (layers, heads) == (2, 2)  # decoder layers, heads of the tiny model
    assert rows == len(result.target_tokens) == len(result.output_ids) and 1 <= rows <= 7
    assert cols == len(result.source_tokens) and result.source_tokens[-1] == "</s>"
    np.testing.assert_allclose(result.cross_attention.sum(-1), 1.0, atol=1e-5)
    assert result.encoder_attention.shape == (3, 2, cols, cols)
    np.testing.assert_allclose(result.encoder_attention.sum(-1), 1.0, atol=1e-5)
    averaged = fuse_heads(result.cross_attention, None, None)
    assert averaged.shape == (rows, cols)
    np.testing.assert_allclose(averaged.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(fuse_heads(result.cross_attention, 1, 0), result.cross_attention[1, 0])
    cross, encoder = attention_figures(result, "1", "1")
    assert cross.axes[0].get_title().startswith("Cross-attention") and len(cross.axes[0].get_yticklabels()) == rows


def test_beam_search_and_long_inputs(tiny):
    beam = tiny.generate(SENTIMENT + "a fine film", GenerationSettings(max_new_tokens=5, num_beams=4))
    assert 1 <= len(beam.output_ids) <= 5 and not beam.truncated
    long = tiny.generate(SENTIMENT + "good " * 400, GenerationSettings(max_new_tokens=2))
    assert long.truncated and len(long.source_tokens) == MAX_SEQ2SEQ_SOURCE_TOKENS


def test_the_page_answer_names_the_tokens_and_the_model_or_why_it_cannot_run(tiny):
    tasks = {"tiny": TASK_PREFIXES, "gone": TASK_PREFIXES}
    services = {"tiny": (tiny.source, tiny), "gone": (hub.ModelLoadError("'gone': no such model"), None)}
    result, notice, badge = generate_text(services, tasks, "a fine film", "sentiment (sst2 sentence:)", "tiny",
                                          "beam search", 2, 3)
    assert 1 <= len(result.output_ids) <= 3 and notice.endswith("ms (beam search)") and "local directory" in badge
    with pytest.raises(hub.ModelLoadError, match="no such model"):
        generate_text(services, tasks, "a fine film", "sentiment (sst2 sentence:)", "gone", "greedy", 4, 8)


def test_hub_id_while_offline_names_the_embedded_default(monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(store.ModelLoadError, match="embedded default"):
        TextToText(store.resolve("nonexistent-org/no-such-t5", TASK))


# --- the shipped model ------------------------------------------------------------------------------------------------

def test_embedded_model_answers_both_tasks(embedded):
    assert embedded.loaded.source.kind == "embedded" and "held-out accuracy" in embedded.describe()
    positive = embedded.generate(SENTIMENT + "a warm , funny and wonderfully acted film .")
    negative = embedded.generate(SENTIMENT + "a dull , lifeless and boring mess .")
    assert (positive.text, negative.text) == ("positive", "negative")
    filled = embedded.generate(FILL + f"one of the {SENTINEL} films of the year .")
    assert filled.text and SENTINEL not in filled.text


def test_embedded_model_held_out_accuracy(embedded):
    """Sentiment on 400 Rotten Tomatoes test sentences that training never saw (floor 0.58: majority class is 0.53)."""
    test = rotten_tomatoes_splits().test.head(400)
    scores = evaluate(embedded.model, embedded.tokenizer, test.texts, test.labels, fill=False)
    assert scores["sentiment_accuracy"] >= 0.58 and scores["sentiment_invalid"] < 0.01


@pytest.mark.slow
def test_embedded_model_matches_its_reported_scores(embedded):
    """The README's figures, re-measured on the full 1,500-sentence held-out split."""
    test = rotten_tomatoes_splits().test
    scores = evaluate(embedded.model, embedded.tokenizer, test.texts, test.labels)
    assert scores["sentiment_accuracy"] == pytest.approx(embedded.loaded.metrics["test_accuracy"], abs=0.002)
    assert scores["fill_exact_match"] == pytest.approx(embedded.loaded.metrics["test"]["fill_exact_match"], abs=0.002)


# --- tasks: only those the model was trained for ----------------------------------------------------------------------


def test_declared_tasks_come_from_the_config_as_hub_checkpoints_declare_them():
    t5_small = {"task_specific_params": {"summarization": {"prefix": "summarize: "},
                                         "translation_en_to_de": {"prefix": "translate English to German: "}}}
    assert declared_tasks(t5_small) == {"summarize (summarize:)": "summarize: ",
                                        "translate to German (translate English to German:)":
                                            "translate English to German: "}
    bart_cnn = {"task_specific_params": {"summarization": {"length_penalty": 2.0}}}
    assert declared_tasks(bart_cnn) == {"summarize (no prefix)": ""}
    assert declared_tasks({}) == TASK_PREFIXES  # a model that declares nothing (FLAN-T5) gets every prefix
    with pytest.raises(InputError, match="not trained for “summarize.*t5-small"):
        check_task("summarize (summarize:)", {"sentiment (sst2 sentence:)": "sst2 sentence: "}, "t5-rt-text2text")


def test_beams_are_a_setting_of_beam_search_only():
    assert beams_setting("greedy")["interactive"] is False and "greedy" in beams_setting("greedy")["info"]
    assert beams_setting("beam search")["interactive"] is True


def test_the_page_offers_the_embedded_t5_only_its_two_tasks_and_names_a_hub_model_for_the_rest():
    from gradio_client import Client
    from support import free_port
    from txgallery_demos.seq2seq.run import demo

    from txgallery import settings
    from txgallery.gallery import build_single, launch
    from txgallery.plugin import DemoEntry

    settings.configure(settings.Settings())
    app = launch(build_single(DemoEntry(name="seq2seq", origin="test", demo=demo)), port=free_port(), block=False,
                 quiet=True)
    try:
        client = Client(app.local_url, verbose=False)
        parameters = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/seq2seq_generate"]
        offered = parameters["parameters"][1]["python_type"]["type"]
        assert "sentiment (sst2 sentence:)" in offered and "fill in the blank (fill:)" in offered
        assert "summarize" not in offered and "German" not in offered
        with pytest.raises(Exception, match="translate to German"):  # refused, not answered "positive"
            client.predict("A fine film.", "translate to German (translate English to German:)", "t5-rt-text2text",
                           "greedy", 4, 8, api_name="/seq2seq_generate")
        assert client.predict("A fine film.", "sentiment (sst2 sentence:)", "t5-rt-text2text", "greedy", 4, 8,
                              api_name="/seq2seq_generate")[2] in {"positive", "negative"}
    finally:
        app.close()
