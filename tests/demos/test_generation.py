"""The generation demo's service and page helpers, without a browser: streaming through the serving seam, Stop,
model checks, bad input, and SmolLM2 (the embedded default) against raw `generate`."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import (
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    T5Config,
    T5ForConditionalGeneration,
)
from txgallery_demos.generation.decoding import SamplingSettings
from txgallery_demos.generation.run import (
    PROBABILITY_LEGEND,
    TASK,
    Studio,
    build,
    demo,
    generator_for,
    highlighted,
    knob_settings,
    knob_updates,
    read_settings,
    stats_line,
    step_markdown,
    step_table,
    visible,
)
from txgallery_demos.generation.service import TextGenerator

from txgallery.embedded.shakespeare import load_plays, train_tokenizer
from txgallery.limits import InputError
from txgallery.models import store
from txgallery.plugin import page_context
from txgallery.serving.seam import connect


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory):
    """A small random GPT-2 with a byte-level BPE tokenizer, saved with save_pretrained (a real local directory)."""
    out = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = train_tokenizer([load_plays()["macbeth"][:40_000]], vocab_size=300)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                               bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
                    ).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def source(tiny_gpt2_dir):
    return store.resolve(str(tiny_gpt2_dir), TASK)


def test_service_streams_through_the_serving_seam(source):
    service = connect(TextGenerator, source)
    updates = list(service.generate("MACBETH:\nIs this a dagger", SamplingSettings(max_new_tokens=6)))
    assert [u.tokens for u in updates] == [1, 2, 3, 4, 5, 6, 6] and updates[-1].done
    loaded = store.get_store().load(source)
    ids = torch.tensor([loaded.tokenizer("MACBETH:\nIs this a dagger")["input_ids"]])
    expected = loaded.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=6,
                                     pad_token_id=0)[0, ids.shape[-1]:].tolist()
    steps = [s for u in updates for s in u.steps]
    assert [s.token_id for s in steps] == expected
    assert "local directory" in service.describe()


def test_stop_through_the_seam_stops_the_model(source):
    service = connect(TextGenerator, source)
    model = store.get_store().load(source).model  # the very object the service runs
    forwards = []
    hook = model.register_forward_hook(lambda *args: forwards.append(1))
    try:
        stream = service.generate("MACBETH:\n", SamplingSettings(max_new_tokens=60))
        assert [next(stream).tokens for _ in range(3)] == [1, 2, 3]
        stream.close()
        service.describe()  # runs on the service's thread, so only after the generation has ended
        assert len(forwards) <= 6  # not 60: the loop ended within a token or two of the Stop
    finally:
        hook.remove()


def test_side_by_side_uses_the_same_prompt_and_seed(source):
    service = connect(TextGenerator, source)
    greedy, sampled = SamplingSettings(max_new_tokens=5), SamplingSettings(strategy="sample", max_new_tokens=5, seed=2)
    pairs = list(service.compare("MACBETH:\n", greedy, sampled))
    assert [w for w, _ in pairs][:4] == [0, 1, 0, 1]
    by_side = {w: [s.token_id for which, u in pairs if which == w for s in u.steps] for w in (0, 1)}
    alone = [s.token_id for u in service.generate("MACBETH:\n", sampled) for s in u.steps]
    assert by_side[1] == alone and len(by_side[0]) == 5


def test_long_prompt_is_cut_from_the_left_with_a_notice(source):
    service = TextGenerator(source)  # context: 64 tokens
    ids, notices = service.encode("To be or not to be. " * 60, SamplingSettings(max_new_tokens=16))
    assert ids.shape[-1] == 48 and "only its last 48 were used" in notices[0]
    updates = list(service.generate("To be or not to be. " * 60, SamplingSettings(max_new_tokens=16)))
    assert updates[-1].tokens == 16 and "only its last 48" in updates[-1].notices[0]


def test_chat_mode_needs_a_chat_template(source):
    with pytest.raises(InputError, match="no chat template"):
        TextGenerator(source).encode("hello", SamplingSettings(chat=True))


def test_non_causal_models_get_a_clear_message(tiny_classifier_dir, tiny_gpt2_dir, tmp_path):
    with pytest.raises(store.ModelLoadError, match="BertForSequenceClassification checkpoint .* not a causal"):
        TextGenerator(store.resolve(str(tiny_classifier_dir), TASK))
    t5_dir = tmp_path / "tiny-t5"
    T5ForConditionalGeneration(T5Config(vocab_size=64, d_model=16, d_ff=32, num_layers=1, num_heads=2,
                                        d_kv=8)).save_pretrained(t5_dir)
    AutoTokenizer.from_pretrained(tiny_gpt2_dir).save_pretrained(t5_dir)
    with pytest.raises(store.ModelLoadError, match="not a causal"):
        TextGenerator(store.resolve(str(t5_dir), TASK))


def test_a_model_typed_on_the_page_goes_through_the_operators_allowlist(source):
    from txgallery_demos.generation.run import demo

    from txgallery import settings
    from txgallery.plugin import page_context

    ctx = page_context(demo, settings.Settings())
    configured = {"listed": (source, connect(TextGenerator, source))}
    assert generator_for("listed", configured, ctx).describe()  # a listed model is served as configured
    with pytest.raises(store.ModelLoadError, match="not enabled on this gallery.*--allow-hub"):
        generator_for("gpt2", configured, ctx)  # default: no typed hub ids
    with pytest.raises(store.ModelLoadError, match="local paths are set by the operator"):
        generator_for(str(source.ref), configured, ctx)  # a real model directory, still refused from a page
    with pytest.raises(store.ModelLoadError, match="for text-classification, not text-generation"):
        generator_for("embedded:minilm-rt-sentiment", configured, ctx)  # an encoder typed into the decoder page
    allowing = page_context(demo, settings.load_settings([], environ={}, allow_hub=["gpt2"]))
    with pytest.raises(store.ModelLoadError, match="not reachable"):  # allowed, but no hub here: said, not hung
        generator_for("gpt2", configured, allowing)


def test_the_badge_says_why_a_typed_model_cannot_run():
    from txgallery import settings

    studio = Studio(page_context(demo, settings.Settings()))
    assert studio.names == ["smollm2-135m", "gpt2-shakespeare"]  # nothing configured: both embedded models
    badge = studio.badge("gpt2")
    assert badge.startswith("⚠️ **Model unavailable.** `gpt2`:") and "--allow-hub" in badge


def test_the_endpoints_keep_their_parameter_names():
    """The handlers live on `Studio` now; a program calling the API by keyword sees the same names as before."""
    endpoints = build(page_context(demo)).get_api_info()["named_endpoints"]
    knobs = ["decoding", "temperature", "top_k", "top_p", "repetition_penalty", "beams"]
    common = ["model", "prompt", "chat", "max_new_tokens", "seed"]
    assert [p["parameter_name"] for p in endpoints["/generation_generate"]["parameters"]] == common + knobs
    assert [p["parameter_name"] for p in endpoints["/generation_compare"]["parameters"]] == (
        common + [f"{k}_a" for k in knobs] + [f"{k}_b" for k in knobs])


def test_page_controls_become_checked_settings():
    settings, notices = read_settings("sampling", 12.0, 0.7, 40.0, 0.9, 1.1, 4.0, 3.0, False)
    assert settings == SamplingSettings("sample", 12, 0.7, 40, 0.9, 1.1, 4, 3, False) and notices == []
    assert read_settings("sampling", 12, 0.0, 40, 0.9, 1.0, 4, 3, False)[0].strategy == "greedy"
    with pytest.raises(InputError, match="Please set temperature"):
        read_settings("sampling", 12, None, 40, 0.9, 1.0, 4, 3, False)
    with pytest.raises(InputError, match="Top-p"):
        read_settings("beam search", 12, 1.0, 40, 1.5, 1.0, 4, 3, False)


def test_step_view_helpers(source):
    updates = list(TextGenerator(source).generate("MACBETH:\n", SamplingSettings(strategy="sample", max_new_tokens=4,
                                                                                   top_k=5, seed=1)))
    steps = [s for u in updates for s in u.steps]
    step = steps[0]
    rows = step_table(step)
    chosen = [r for r in rows if r[0].startswith("▶ ")]
    assert len(chosen) == 1 and math.isclose(chosen[0][2], round(step.probability_after, 4))
    assert math.isclose(sum(r[2] for r in rows), 1.0, abs_tol=1e-3)  # all of top-k = 5 is listed
    assert f"log p = **{step.logprob:.3f}**" in step_markdown(step) and "left after filtering" in step_markdown(step)
    assert [text for text, _ in highlighted(steps)] == [s.text or s.token for s in steps]
    line = stats_line(updates[-1])
    prompt = updates[-1].prompt
    assert f"prompt: {prompt.tokens} tokens, perplexity **{prompt.perplexity:.1f}**" in line
    assert "generated: **4** tokens" in line and "tokens/s" in line and "finished: max new tokens" in line
    assert visible(" a\nb") == "␣a↵b"


@pytest.mark.parametrize("strategy", ["greedy", "sampling", "beam search"])
def test_the_sliders_a_mode_disables_change_nothing_in_that_mode(source, strategy):
    service = connect(TextGenerator, source)
    knobs = {"temperature": 0.8, "top_k": 50, "top_p": 0.95, "beams": 4}
    unused = {knob for knob, setting in knob_settings(strategy).items() if not setting["interactive"]}
    moved = {knob: {"temperature": 1.7, "top_k": 3, "top_p": 0.3, "beams": 2}[knob] if knob in unused else value
             for knob, value in knobs.items()}

    def tokens(values: dict) -> list[int]:
        settings, _ = read_settings(strategy, 6, values["temperature"], values["top_k"], values["top_p"], 1.0,
                                    values["beams"], 3, False)
        return [s.token_id for u in service.generate("MACBETH:\n", settings) for s in u.steps]

    assert unused == {"greedy": {"temperature", "top_k", "top_p", "beams"}, "sampling": {"beams"},
                      "beam search": {"temperature", "top_k", "top_p"}}[strategy]
    assert tokens(knobs) == tokens(moved)
    updates = knob_updates(strategy)
    assert [u["interactive"] for u in updates] == [knob not in unused for knob in knobs]
    assert all(strategy in u["info"] for u, knob in zip(updates, knobs) if knob in unused)  # says why


def test_the_legend_shows_the_colour_the_tokens_are_painted_in():
    assert "rgba(239, 68, 60, 0)" in PROBABILITY_LEGEND and "rgba(239, 68, 60, 1)" in PROBABILITY_LEGEND
    assert "low" in PROBABILITY_LEGEND and "high" in PROBABILITY_LEGEND


def test_build_loads_no_model():
    before = store.get_store().load_count
    page = build(page_context(demo))
    assert page is not None and store.get_store().load_count == before


@pytest.mark.slow
def test_smollm2_greedy_equals_generate_and_chat_mode_answers():
    service = TextGenerator(store.resolve("embedded", TASK))
    assert service.source.ref == "smollm2-135m" and service.has_chat_template()
    prompt = "Once upon a time, there was a little"
    ids, _ = service.encode(prompt, SamplingSettings())
    expected = service.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=16,
                                      pad_token_id=service.tokenizer.eos_token_id)[0, ids.shape[-1]:].tolist()
    updates = list(service.generate(prompt, SamplingSettings(max_new_tokens=16)))
    assert [s.token_id for u in updates for s in u.steps] == expected[:16]
    assert updates[-1].prompt.perplexity is not None and updates[-1].prompt.perplexity < 100
    answer = list(service.generate("What is the capital of France? Answer in one word.",
                                   SamplingSettings(max_new_tokens=12, chat=True)))[-1]
    assert "Paris" in answer.text
