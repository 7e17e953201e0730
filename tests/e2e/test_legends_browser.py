"""Every colour-coded view has a key an attendee can read: the sentiment attributions, the attention head view and its
heads selector, the model view and the plotly figures (issue #18)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from support import screenshot_path, top_class

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOT = screenshot_path("legends.png")

# what the browser computes for a colour, as (r, g, b, alpha)
_COLOUR = """(node, pseudo) => getComputedStyle(node, pseudo || null).backgroundColor"""


def _rgba(css: str) -> tuple[int, int, int, float]:
    numbers = [float(n) for n in re.findall(r"[\d.]+", css)]
    return int(numbers[0]), int(numbers[1]), int(numbers[2]), numbers[3] if len(numbers) > 3 else 1.0


def _hex(css: str) -> str:
    r, g, b, _ = _rgba(css)
    return f"#{r:02x}{g:02x}{b:02x}"


def test_sentiment_attributions_have_a_key_in_gradios_own_colours(page, gallery):
    page.goto(gallery + "/sentiment", wait_until="load", timeout=120_000)
    page.locator("#sentiment-run").wait_for(timeout=120_000)
    assert page.locator("#sentiment-attribution-key-0 .tx-attribution-key").count() == 0  # nothing to explain yet
    page.get_by_label("Text").first.fill("Great cast, awful script.")
    page.locator("#sentiment-run").click()
    key = page.locator("#sentiment-attribution-key-0 .tx-attribution-key")
    expect(key).to_be_visible(timeout=120_000)
    predicted = top_class(page, "#sentiment-label-0")
    other = {"positive": "negative", "negative": "positive"}[predicted]
    assert key.get_attribute("data-predicted") == predicted
    towards, against = key.locator('[data-score="+1"]'), key.locator('[data-score="-1"]')
    expect(towards).to_contain_text(f"pushed towards {predicted} (the prediction)")
    expect(against).to_contain_text(f"pushed towards {other} (against the prediction)")
    expect(key).to_contain_text("deeper the colour")

    # the key's two colours are the ones Gradio paints the words with: the strongest word (score ±1) in full colour
    key_towards = _rgba(towards.locator(".tx-key-swatch").evaluate(_COLOUR))[:3]
    key_against = _rgba(against.locator(".tx-key-swatch").evaluate(_COLOUR))[:3]
    assert key_towards != key_against
    words = page.locator("#sentiment-attributions-0 .score-token")
    colours = [_rgba(c) for c in words.evaluate_all(f"nodes => nodes.map(n => ({_COLOUR})(n))")]
    assert len(colours) >= 5 and all(c[:3] in (key_towards, key_against) for c in colours)
    assert any(c[3] == 1.0 for c in colours)  # the strongest word
    strongest = colours.index(max(colours, key=lambda c: c[3]))
    assert words.nth(strongest).inner_text().strip() == "awful" and colours[strongest][:3] == key_towards
    # the bar runs from the "against" colour through nothing to the "towards" colour, as the words' alpha does
    bar = key.locator(".tx-key-bar").evaluate("node => getComputedStyle(node).backgroundImage")
    stops = [_rgba(stop) for stop in re.findall(r"rgba?\([^)]*\)", bar)]
    assert stops[0] == (*key_against, 1.0) and stops[-1] == (*key_towards, 1.0)
    assert [stop[3] for stop in stops[1:-1]] == [0.0, 0.0]
    page.screenshot(path=str(SCREENSHOT.with_name("legends-sentiment.png")), full_page=True)


def test_attention_head_view_has_a_key_per_head_in_the_lines_colours(page, gallery):
    # a link with the text runs it when opened (the explorer's own typing and clicking: test_attention_browser.py)
    page.goto(gallery + "/attention?text=The+quick+brown+fox+jumps+over+the+lazy+dog.", wait_until="load",
              timeout=120_000)
    head_view = page.locator("#attention-headview .txa-headview")
    expect(head_view).to_have_attribute("data-layer", "0", timeout=120_000)

    # one swatch per head, each in the colour of that head's lines in the SVG, with its number readable beside it
    keys = page.locator("#attention-headview .txa-key")
    expect(keys).to_have_count(12)
    expect(page.locator("#attention-headview svg > g[stroke]")).to_have_count(12)  # the lines are drawn too
    for head in range(12):
        item = keys.nth(head)
        assert item.get_attribute("data-head") == str(head) and item.inner_text().strip() == f"head {head}"
        stroke = page.locator("#attention-headview svg > g").nth(head).get_attribute("stroke")
        assert _hex(item.locator(".txa-swatch").evaluate(_COLOUR)) == stroke
        assert _rgba(item.evaluate("node => getComputedStyle(node).color"))[:3] != (255, 255, 255)  # text, not chip

    # the heads selector carries the same colours, so choosing "head 5" says which lines it keeps
    labels = page.locator("#attention-heads label")
    expect(labels).to_have_count(12)
    for head in range(12):
        stroke = page.locator("#attention-headview svg > g").nth(head).get_attribute("stroke")
        swatch = labels.nth(head).locator("span").evaluate(_COLOUR.replace("pseudo || null", "'::before'"))
        assert _hex(swatch) == stroke, f"head {head}"

    # filtering the heads filters the key with them
    labels.nth(2).click()
    labels.nth(7).click()
    expect(head_view).to_have_attribute("data-heads", "2,7", timeout=60_000)
    expect(keys).to_have_count(2)
    assert [keys.nth(i).get_attribute("data-head") for i in range(2)] == ["2", "7"]
    assert (_hex(keys.nth(1).locator(".txa-swatch").evaluate(_COLOUR))
            == page.locator("#attention-headview svg > g").nth(1).get_attribute("stroke"))
    page.screenshot(path=str(SCREENSHOT.with_name("legends-headview.png")), full_page=True)

    # the model view's thumbnails have a colour bar in their own colour map
    page.get_by_role("tab", name="Model view").click()
    bar = page.locator("#attention-modelview .txa-colourbar")
    expect(bar).to_be_visible(timeout=60_000)
    expect(bar).to_contain_text("largest weight")
    gradient = bar.locator(".txa-colourbar-bar").evaluate("node => getComputedStyle(node).backgroundImage")
    assert gradient.startswith("linear-gradient") and "rgb(68, 1, 84)" in gradient  # viridis starts dark purple

    # the plotly figures keep their colour bars: one on the heatmap, one per panel step by step and for Q, K, V
    page.get_by_role("tab", name="Heatmap").click()
    expect(page.locator("#attention-heatmap .colorbar")).to_have_count(1, timeout=60_000)
    expect(page.locator("#attention-heatmap .colorbar")).to_contain_text("attention")
    page.get_by_role("tab", name="Step by step").click()
    expect(page.locator("#attention-steps .colorbar")).to_have_count(4, timeout=60_000)
    expect(page.locator("#attention-vectors .colorbar")).to_have_count(4, timeout=60_000)  # Q, K, V, output
    page.screenshot(path=str(SCREENSHOT.with_name("legends-steps.png")), full_page=True)

    # the ViT overlays are inferno, lowest to highest patch: their bar is there before any picture is run
    page.get_by_role("tab", name="ViT").click()
    vit_bar = page.locator("#attention-vit-key .txa-colourbar")
    expect(vit_bar).to_be_visible(timeout=60_000)
    assert vit_bar.get_attribute("data-cmap") == "inferno"
    expect(vit_bar).to_contain_text("highest patch")
