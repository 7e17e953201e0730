"""The decoding maths and loop of `txgallery_demos.generation.decoding`, on a tiny random GPT-2 (no Gradio, no download)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from txgallery_demos.generation import decoding as generation
from txgallery_demos.generation.decoding import (
    PromptStats,
    SamplingSettings,
    Step,
    TextAssembler,
    apply_repetition_penalty,
    check_settings,
    clean_prompt,
    decode_steps,
    filter_logits,
    fit_prompt,
    interleave,
    stream_generation,
)

from txgallery.embedded.shakespeare import load_plays, train_tokenizer
from txgallery.limits import (
    GENERATION_MAX_NEW_TOKENS,
    GENERATION_MAX_PROMPT_TOKENS,
    MAX_INPUT_CHARS,
    InputError,
)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([load_plays()["hamlet"][:60_000]], vocab_size=400)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=96, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def prompt(tokenizer) -> torch.Tensor:
    return torch.tensor([tokenizer("HAMLET:\nTo be, or not to be")["input_ids"]])


def tokens(model, tokenizer, prompt, settings) -> list[int]:
    return [s.token_id for s in decode_steps(model, tokenizer, prompt, settings, stop_ids=set()) if isinstance(s, Step)]


def hf_generate(model, prompt, **kwargs) -> list[int]:
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), pad_token_id=0, eos_token_id=None, **kwargs)
    return out[0, prompt.shape[-1]:].tolist()


# --- the sampling maths equals transformers' logits processors -------------------------------------------------------

@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.9), (0.5, 20, 0.5),
                                                       (2.0, 1, 1.0), (1.0, 0, 0.01)])
def test_filtered_probabilities_sum_to_one_and_match_transformers(temperature, top_k, top_p):
    torch.manual_seed(1)
    logits = torch.randn(3, 500) * 3
    ours = filter_logits(logits, temperature, top_k, top_p)
    probs = ours.softmax(-1)
    assert torch.allclose(probs.sum(-1), torch.ones(3))
    theirs = TemperatureLogitsWarper(temperature)(None, logits.clone())
    if top_k:
        theirs = TopKLogitsWarper(top_k)(None, theirs)
    if top_p < 1:
        theirs = TopPLogitsWarper(top_p)(None, theirs)
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
    assert torch.allclose(probs, theirs.softmax(-1), atol=1e-6)
    if top_k:
        assert ((probs > 0).sum(-1) <= top_k).all()
    if top_p < 1:  # the smallest set holding top_p of the mass: without its least likely member it holds less
        kept = (probs > 0)
        original = logits.div(temperature).softmax(-1)
        mass = (original * kept).sum(-1)
        smallest = original.masked_fill(~kept, 2).min(-1).values
        assert ((mass >= top_p - 1e-6) | bool(top_k)).all() and (mass - smallest < top_p + 1e-6).all()


def test_repetition_penalty_matches_transformers():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0, -2.0]])
    seen = torch.tensor([[0, 1, 1, 4]])
    ours = apply_repetition_penalty(logits[0], torch.unique(seen[0]), 1.5)
    assert torch.allclose(ours, RepetitionPenaltyLogitsProcessor(1.5)(seen, logits.clone())[0])
    assert ours[0] < logits[0, 0] and ours[1] < logits[0, 1] and ours[3] == logits[0, 3]


# --- the decoding loop ---------------------------------------------------------------------------------------------

def test_greedy_equals_generate_token_for_token(model, tokenizer, prompt):
    settings = SamplingSettings(max_new_tokens=30)
    assert tokens(model, tokenizer, prompt, settings) == hf_generate(model, prompt, do_sample=False, max_new_tokens=30)
    penalised = SamplingSettings(max_new_tokens=30, repetition_penalty=1.4)
    ours = tokens(model, tokenizer, prompt, penalised)
    assert ours == hf_generate(model, prompt, do_sample=False, max_new_tokens=30, repetition_penalty=1.4)
    assert ours != tokens(model, tokenizer, prompt, settings)  # the penalty did something


def test_top_k_one_equals_greedy_for_any_seed(model, tokenizer, prompt):
    greedy = tokens(model, tokenizer, prompt, SamplingSettings(max_new_tokens=20))
    for seed in (0, 1, 7):
        sampled = SamplingSettings(strategy="sample", max_new_tokens=20, temperature=1.5, top_k=1, seed=seed)
        assert tokens(model, tokenizer, prompt, sampled) == greedy


def test_same_seed_same_output_other_seed_other_output(model, tokenizer, prompt):
    settings = SamplingSettings(strategy="sample", max_new_tokens=25, temperature=1.0, top_p=0.95, seed=3)
    first = tokens(model, tokenizer, prompt, settings)
    assert first == tokens(model, tokenizer, prompt, settings)
    assert first != tokens(model, tokenizer, prompt, SamplingSettings(**{**settings.__dict__, "seed": 4}))


def test_steps_record_candidates_before_and_after_filtering(model, tokenizer, prompt):
    settings = SamplingSettings(strategy="sample", max_new_tokens=6, temperature=0.8, top_k=3, seed=0)
    items = list(decode_steps(model, tokenizer, prompt, settings, stop_ids=set()))
    stats, steps = items[0], items[1:]
    assert isinstance(stats, PromptStats) and stats.tokens == prompt.shape[-1] and len(steps) == 6
    for step in steps:
        assert step.kept <= 3 and len(step.after) <= 3
        assert math.isclose(sum(c.probability for c in step.after), 1.0, rel_tol=1e-5)
        assert step.token_id in {c.token_id for c in step.after}
        assert step.before == sorted(step.before, key=lambda c: -c.probability)
        # the logprob is the model's own, before temperature and top-k
        assert step.logprob <= 0 and step.probability_after >= math.exp(step.logprob)


def test_prompt_perplexity_equals_the_models_loss(model, tokenizer, prompt):
    stats = next(decode_steps(model, tokenizer, prompt, SamplingSettings(max_new_tokens=1)))
    with torch.no_grad():
        loss = model(input_ids=prompt, labels=prompt).loss
    assert math.isclose(stats.perplexity, float(loss.exp()), rel_tol=1e-4)


def test_generation_stops_at_end_of_sequence(model, tokenizer, prompt):
    greedy = tokens(model, tokenizer, prompt, SamplingSettings(max_new_tokens=10))
    steps = [s for s in decode_steps(model, tokenizer, prompt, SamplingSettings(max_new_tokens=10),
                                     stop_ids={greedy[3]}) if isinstance(s, Step)]
    assert [s.token_id for s in steps] == greedy[:greedy.index(greedy[3]) + 1]


def test_closing_the_stream_stops_the_computation(model, tokenizer, prompt):
    forwards = []
    hook = model.register_forward_hook(lambda *args: forwards.append(1))
    try:
        stream = decode_steps(model, tokenizer, prompt, SamplingSettings(max_new_tokens=80), stop_ids=set())
        taken = [next(stream) for _ in range(4)]  # the prompt's stats and three tokens
        stream.close()
        assert len(taken) == 4 and len(forwards) == 3  # the prefill and two one-token passes, nothing more
    finally:
        hook.remove()


def test_beam_search_equals_generate_and_stops_when_closed(model, tokenizer, prompt):
    settings = SamplingSettings(strategy="beam", num_beams=3, max_new_tokens=12)
    updates = list(stream_generation(model, tokenizer, prompt, settings))
    final = updates[-1]
    assert final.done and all(not u.done for u in updates[:-1]) and "beam search" in updates[0].status
    expected = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, num_beams=3,
                              early_stopping=True, max_new_tokens=12, pad_token_id=0)[0, prompt.shape[-1]:].tolist()
    assert [s.token_id for s in final.steps] == expected
    assert all(s.logprob <= 0 and s.before for s in final.steps)

    forwards = []
    hook = model.register_forward_hook(lambda *args: forwards.append(1))
    try:
        stream = stream_generation(model, tokenizer, prompt, SamplingSettings(strategy="beam", num_beams=3,
                                                                              max_new_tokens=GENERATION_MAX_NEW_TOKENS))
        next(stream), next(stream)
        stream.close()  # joins the search thread, which stops at its next step
        assert len(forwards) < 10
    finally:
        hook.remove()


def test_stream_reports_timings_and_text(model, tokenizer, prompt):
    updates = list(stream_generation(model, tokenizer, prompt, SamplingSettings(max_new_tokens=8), notices=["hi"]))
    assert [u.tokens for u in updates] == [1, 2, 3, 4, 5, 6, 7, 8, 8]
    last = updates[-1]
    assert last.done and last.finish_reason == "max new tokens" and last.notices == ["hi"]
    assert last.ttft_s > 0 and last.tokens_per_s > 0 and last.prompt.perplexity > 1
    assert last.text == tokenizer.decode(hf_generate(model, prompt, do_sample=False, max_new_tokens=8))


def test_interleave_alternates_and_closes(model, tokenizer, prompt):
    a = stream_generation(model, tokenizer, prompt, SamplingSettings(max_new_tokens=3))
    b = stream_generation(model, tokenizer, prompt, SamplingSettings(strategy="sample", max_new_tokens=5, seed=1))
    order = [which for which, _ in interleave(a, b)]
    assert order[:8] == [0, 1] * 4 and order.count(0) == 4 and order.count(1) == 6


def test_text_assembler_holds_back_half_characters(tokenizer):
    text = "Ophelia — café déjà vu 🌹"
    assembler = TextAssembler(tokenizer)
    pieces = [assembler.add(i) for i in tokenizer(text)["input_ids"]]
    assert "".join(pieces) == text and all("\ufffd" not in p for p in pieces)


# --- bad input -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [None, "", "  \n\t "])
def test_empty_prompt_is_refused(text):
    with pytest.raises(InputError, match="empty"):
        clean_prompt(text)


def test_control_characters_are_removed_with_a_notice():
    cleaned, notices = clean_prompt("To be\x00 or\x1b[31m not\u200b\nto be\t!")
    assert cleaned == "To be or[31m not\nto be\t!" and "Removed 3" in notices[0]
    with pytest.raises(InputError, match="only control or invisible characters"):
        clean_prompt("\x00\x01\x02")
    cleaned, notices = clean_prompt("a" * (MAX_INPUT_CHARS + 5))
    assert len(cleaned) == MAX_INPUT_CHARS and "only the first" in notices[0]


def test_long_prompt_is_cut_from_the_left_with_a_notice():
    ids = list(range(100))
    kept, notice = fit_prompt(ids, context=64, max_new_tokens=24)
    assert kept == ids[-40:] and "100 tokens" in notice and "last 40" in notice
    assert fit_prompt(ids[:10], context=64, max_new_tokens=24) == (ids[:10], None)
    long = list(range(GENERATION_MAX_PROMPT_TOKENS + 7))
    assert fit_prompt(long, context=8192, max_new_tokens=10)[0] == long[7:]
    with pytest.raises(InputError, match="at most 63 new tokens"):
        fit_prompt(ids, context=64, max_new_tokens=64)


@pytest.mark.parametrize("changes, message", [
    ({"max_new_tokens": GENERATION_MAX_NEW_TOKENS + 1}, "Max new tokens must be between 1 and"),
    ({"max_new_tokens": 0}, "Max new tokens"),
    ({"strategy": "sample", "temperature": -0.5}, "Temperature must be"),
    ({"temperature": float("nan")}, "Temperature must be"),
    ({"top_p": 0.0}, r"Top-p must be in \(0, 1\]"),
    ({"top_p": 1.2}, r"Top-p must be in \(0, 1\]"),
    ({"top_k": -1}, "Top-k must be ≥ 0"),
    ({"repetition_penalty": 0}, "Repetition penalty"),
    ({"strategy": "beam", "num_beams": 99}, "beams"),
    ({"strategy": "nucleus"}, "Unknown decoding strategy"),
])
def test_bad_settings_are_refused_with_a_message(changes, message):
    with pytest.raises(InputError, match=message):
        check_settings(SamplingSettings(**changes))


def test_temperature_zero_means_greedy(model, tokenizer, prompt):
    settings, notices = check_settings(SamplingSettings(strategy="sample", temperature=0, max_new_tokens=10))
    assert settings.strategy == "greedy" and "greedy" in notices[0]
    assert tokens(model, tokenizer, prompt, settings) == hf_generate(model, prompt, do_sample=False, max_new_tokens=10)


def test_decode_steps_refuses_beam_search(model, tokenizer, prompt):
    with pytest.raises(ValueError, match="beam"):
        next(generation.decode_steps(model, tokenizer, prompt, SamplingSettings(strategy="beam")))


def test_the_kv_cache_keyword_follows_the_installed_transformers_naming():
    class Earlier5x(torch.nn.Module):  # transformers 5.17 and before: past_key_values in and out
        def forward(self, input_ids=None, past_key_values=None, use_cache=None):
            return input_ids

    class Later5x(torch.nn.Module):  # transformers 5.2x: cache
        def forward(self, input_ids=None, cache=None, use_cache=None):
            return input_ids

    assert generation.cache_keyword(Earlier5x()) == "past_key_values"
    assert generation.cache_keyword(Later5x()) == "cache"
