"""Controls that do nothing in the chosen mode are disabled or hidden, and coloured tokens have a legend (issue 18)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from txgallery_demos.finetune.methods import METHODS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _slider(page, elem_id: str):
    return page.locator(f"#{elem_id} input[type=range]")


def _choose(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def test_generation_sliders_follow_the_decoding_mode(page, gallery):
    page.goto(gallery + "/generation", wait_until="load", timeout=120_000)
    temperature, top_k, top_p, beams = (_slider(page, f"generation-{name}")
                                        for name in ("temperature", "top-k", "top-p", "beams"))
    expect(temperature).to_be_disabled(timeout=120_000)  # greedy on first load
    for knob in (top_k, top_p, beams):
        expect(knob).to_be_disabled()
    expect(page.locator("#generation-temperature")).to_contain_text("not used in greedy mode")

    page.locator("#generation-strategy").get_by_role("radio", name="sampling").check()
    for knob in (temperature, top_k, top_p):
        expect(knob).to_be_enabled(timeout=30_000)
    expect(beams).to_be_disabled()
    expect(page.locator("#generation-temperature")).to_contain_text("used in sampling mode")

    page.locator("#generation-strategy").get_by_role("radio", name="beam search").check()
    expect(beams).to_be_enabled(timeout=30_000)
    for knob in (temperature, top_k, top_p):
        expect(knob).to_be_disabled()

    page.get_by_role("tab", name="Side by side").click()  # A opens on greedy, B on sampling
    expect(_slider(page, "generation-a-temperature")).to_be_disabled(timeout=30_000)
    expect(_slider(page, "generation-b-temperature")).to_be_enabled()
    expect(_slider(page, "generation-b-beams")).to_be_disabled()
    page.locator("#generation-a-strategy").get_by_role("radio", name="sampling").check()
    expect(_slider(page, "generation-a-temperature")).to_be_enabled(timeout=30_000)
    expect(page.locator("#generation-compare-legend")).to_contain_text("probability")


def test_a_link_with_a_decoding_mode_opens_with_its_sliders(page, gallery):
    page.goto(gallery + "/generation?decoding=sampling&max_new=1&model=gpt2-shakespeare", wait_until="load",
              timeout=120_000)
    expect(_slider(page, "generation-temperature")).to_be_enabled(timeout=120_000)
    expect(_slider(page, "generation-beams")).to_be_disabled()


def test_generated_tokens_have_a_legend_in_their_colours(page, gallery):
    page.goto(gallery + "/generation", wait_until="load", timeout=120_000)
    page.locator("#generation-run").wait_for(timeout=120_000)
    _choose(page, "generation-model", "gpt2-shakespeare")
    expect(page.locator("#generation-badge")).to_contain_text("gpt2-shakespeare", timeout=60_000)
    page.locator("#generation-prompt textarea").fill("ROMEO:\nBut soft, what light")
    page.locator("#generation-run").click()
    expect(page.locator("#generation-stats")).to_contain_text("finished", timeout=120_000)

    legend = page.locator("#generation-legend")
    expect(legend).to_be_visible()
    expect(legend).to_contain_text("probability")
    expect(legend).to_contain_text("low")
    expect(legend).to_contain_text("high")
    # the legend's scale is the colour the tokens are painted in: Gradio's score colour at opacity p
    token = page.locator("#generation-output .token").first
    colour = token.evaluate("element => getComputedStyle(element).backgroundColor")
    scale = legend.locator("[aria-hidden=true]").evaluate("element => getComputedStyle(element).backgroundImage")
    rgb = colour[colour.index("(") + 1:].split(",")[:3]
    assert [c.strip() for c in rgb] == ["239", "68", "60"], colour
    assert "239, 68, 60" in scale, scale


def test_seq2seq_beams_only_in_beam_search_and_only_the_models_tasks(page, gallery):
    page.goto(gallery + "/seq2seq", wait_until="load", timeout=120_000)
    beams = _slider(page, "seq2seq-beams")
    expect(beams).to_be_disabled(timeout=120_000)
    expect(page.locator("#seq2seq-beams")).to_contain_text("not used in greedy")
    page.locator("#seq2seq-decoding").get_by_role("radio", name="beam search").check()
    expect(beams).to_be_enabled(timeout=30_000)
    page.locator("#seq2seq-decoding").get_by_role("radio", name="greedy").check()
    expect(beams).to_be_disabled(timeout=30_000)

    page.locator("#seq2seq-task input").click()  # the embedded T5 was trained for two tasks: only those are offered
    options = page.get_by_role("option")
    expect(options).to_have_count(2)
    offered = {text.splitlines()[-1] for text in options.all_inner_texts()}  # the chosen one starts with a ✓ line
    assert offered == {"sentiment (sst2 sentence:)", "fill in the blank (fill:)"}
    page.keyboard.press("Escape")


def test_finetune_shows_only_the_chosen_methods_settings(page, gallery):
    page.goto(gallery + "/finetune", wait_until="load", timeout=120_000)
    rank, freeze, adapter = (page.locator(f"#finetune-{name}") for name in ("rank", "freeze", "adapter"))
    expect(rank).to_be_visible(timeout=120_000)  # LoRA on first load
    expect(page.locator("#finetune-targets")).to_be_visible()
    expect(freeze).to_be_hidden()
    expect(adapter).to_be_hidden()
    note = page.locator("#finetune-method-settings")
    expect(note).to_contain_text("LoRA")

    _choose(page, "finetune-method", "full: every weight trains")
    expect(rank).to_be_hidden(timeout=30_000)
    expect(freeze).to_be_hidden()
    expect(adapter).to_be_hidden()
    expect(note).to_contain_text("no settings of its own")

    _choose(page, "finetune-method", "freeze: the embeddings and N layers stay fixed, the rest trains")
    expect(freeze).to_be_visible(timeout=30_000)
    expect(rank).to_be_hidden()
    expect(adapter).to_be_hidden()

    _choose(page, "finetune-method", "adapter: a small down/up projection after each feed-forward block")
    expect(adapter).to_be_visible(timeout=30_000)
    expect(freeze).to_be_hidden()

    _choose(page, "finetune-method", "full: every weight trains")
    expect(adapter).to_be_hidden(timeout=30_000)
    _choose(page, "finetune-task", "Shakespeare style (SmolLM2 decoder)")  # no full tuning of the decoder: LoRA
    # the decoder's module names arrive once its weights are ready (a one-time conversion of ~25 s on a fresh home)
    expect(page.locator("#finetune-targets")).to_contain_text("self_attn.q_proj", timeout=240_000)
    expect(rank).to_be_visible()
    expect(note).to_contain_text("LoRA")

    _choose(page, "finetune-method", "adapter: a small down/up projection after each feed-forward block")
    expect(adapter).to_be_visible(timeout=30_000)
    _choose(page, "finetune-task", "Rotten Tomatoes sentiment")  # the encoder takes adapters too: the choice stays
    page.locator("#finetune-method input").click()
    expect(page.get_by_role("option")).to_have_count(len(METHODS), timeout=60_000)  # the task's methods are in
    page.keyboard.press("Escape")
    expect(adapter).to_be_visible()
    expect(rank).to_be_hidden()
    expect(page.locator("#finetune-method input")).to_have_value(
        "adapter: a small down/up projection after each feed-forward block")


def test_a_finetune_link_opens_with_its_methods_settings(page, gallery):
    page.goto(gallery + "/finetune?method=adapter&adapter=8", wait_until="load", timeout=120_000)
    expect(page.locator("#finetune-adapter")).to_be_visible(timeout=120_000)
    expect(page.locator("#finetune-adapter input[type=number]")).to_have_value("8")
    page.wait_for_timeout(2000)  # the page's own load events must not put LoRA back
    expect(page.locator("#finetune-method input")).to_have_value(
        "adapter: a small down/up projection after each feed-forward block")
    expect(page.locator("#finetune-rank")).to_be_hidden()
