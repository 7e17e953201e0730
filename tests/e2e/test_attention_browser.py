"""The attention explorer in a real browser: type a sentence, switch layer and head, and see the views change."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from support import screenshot_path

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOT = screenshot_path("attention.png")


def _pick(page, dropdown: str, option: str) -> None:
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def test_type_switch_layer_and_head_and_see_the_figures_change(page, gallery):
    page.goto(gallery + "/attention", wait_until="load", timeout=120_000)
    page.locator("#attention-run").wait_for(timeout=120_000)
    page.locator("#attention-text textarea").fill("The quick brown fox jumps over the lazy dog.")
    page.locator("#attention-run").click()
    head_view = page.locator("#attention-headview .txa-headview")
    expect(head_view).to_have_attribute("data-layer", "0", timeout=120_000)
    assert "fox" in page.locator("#attention-headview svg.txa-svg").text_content()
    lines_layer_0 = page.locator("#attention-headview path").count()
    assert lines_layer_0 > 0

    # hovering a token keeps only its lines
    page.locator('#attention-headview text[data-side="l"][data-tok="3"]').hover()
    shown = page.locator("#attention-headview path.on").count()
    assert 0 < shown < lines_layer_0

    page.get_by_role("tab", name="Heatmap").click()
    heatmap = page.locator("#attention-heatmap")
    expect(heatmap).to_contain_text("layer 0, head 0", timeout=60_000)
    cells_before = heatmap.locator(".hm image, .heatmaplayer image").first.get_attribute("href")

    _pick(page, "#attention-layer", "layer 3")
    expect(head_view).to_have_attribute("data-layer", "3", timeout=60_000)
    expect(heatmap).to_contain_text("layer 3, head 0", timeout=60_000)
    cells_layer_3 = heatmap.locator(".hm image, .heatmaplayer image").first.get_attribute("href")
    assert cells_layer_3 != cells_before  # the drawn matrix changed, not only its title

    _pick(page, "#attention-head", "head 7")
    expect(heatmap).to_contain_text("layer 3, head 7", timeout=60_000)
    assert heatmap.locator(".hm image, .heatmaplayer image").first.get_attribute("href") != cells_layer_3

    page.get_by_role("tab", name="Step by step").click()
    note = page.locator("#attention-steps-note")
    expect(note).to_contain_text("Layer 3, head 7", timeout=60_000)
    expect(note).to_contain_text("max |difference|")
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def _tab_until(page, selector: str, presses: int = 12) -> None:
    """Press Tab until the focused element matches `selector` (keyboard reach: no clicks, no programmatic focus)."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("(selector) => document.activeElement?.matches(selector)", selector):
            return
    raise AssertionError(f"{presses} Tab presses never reached {selector}")


def test_thumbnails_tokens_and_head_filter_work_from_the_keyboard(page, gallery):
    page.goto(gallery + "/attention?text=The+cat+sat+on+the+mat.&tab=model-view", wait_until="load", timeout=120_000)
    first = page.locator("#attention-modelview .txa-thumb[data-layer='0'][data-head='0']")
    expect(first).to_have_attribute("aria-pressed", "true", timeout=120_000)
    assert first.get_attribute("aria-label") == "layer 0, head 0" and first.get_attribute("role") == "button"

    # the model view: one Tab stop, arrows to layer 1 head 2, Enter opens it as a click does
    page.get_by_role("tab", name="Model view").focus()
    _tab_until(page, ".txa-thumb")
    for key in ("ArrowDown", "ArrowRight", "ArrowRight"):
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    expect(page.locator("#attention-layer input")).to_have_value("layer 1", timeout=60_000)
    expect(page.locator("#attention-head input")).to_have_value("head 2")
    opened = page.locator("#attention-modelview .txa-thumb[aria-pressed='true']")
    expect(opened).to_have_attribute("aria-label", "layer 1, head 2", timeout=60_000)
    expect(opened).to_be_focused()  # the redrawn grid keeps the keyboard where it was

    # the head view: a focused token keeps only its lines, as hovering does
    page.get_by_role("tab", name="Head view").click()
    head_view = page.locator("#attention-headview")
    expect(head_view.locator(".txa-headview")).to_have_attribute("data-layer", "1", timeout=60_000)
    _tab_until(page, "#attention-headview text[data-tok]")
    page.keyboard.press("ArrowDown")
    expect(head_view.locator("text.on")).to_have_attribute("data-tok", "1")
    assert 0 < head_view.locator("path.on").count() < head_view.locator("path").count()

    # head filtering: the heads' checkboxes are Tab stops, and Space ticks one
    page.locator("#attention-head input").focus()
    _tab_until(page, "#attention-heads input[type=checkbox]")
    page.keyboard.press("Space")
    expect(head_view.locator(".txa-headview")).to_have_attribute("data-heads", "0", timeout=60_000)
