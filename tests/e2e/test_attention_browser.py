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
    assert "fox" in page.locator("#attention-headview svg").text_content()
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
