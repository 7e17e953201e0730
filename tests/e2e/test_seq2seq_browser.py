"""The encoder–decoder page in a real browser: type a review, generate, see the output and the cross-attention."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from support import screenshot_path

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOT = screenshot_path("seq2seq.png")


def test_type_generate_and_see_output_and_cross_attention(page, gallery):
    page.goto(gallery + "/seq2seq", timeout=120_000)
    page.locator("#seq2seq-text textarea").wait_for(timeout=120_000)
    page.locator("#seq2seq-text textarea").fill("A warm, funny and wonderfully acted film.")
    page.locator("#seq2seq-run").click()
    output = page.locator("#seq2seq-output textarea")
    expect(output).to_have_value("positive", timeout=120_000)
    expect(page.locator("#seq2seq-badge")).to_contain_text("held-out accuracy")
    expect(page.locator("#seq2seq-notice")).to_contain_text("tokens in")
    heatmap = page.locator("#seq2seq-cross img")
    heatmap.wait_for(timeout=60_000)
    before = heatmap.get_attribute("src")

    # one head instead of the average: the figure is redrawn
    page.locator("#seq2seq-head input").click()
    page.get_by_role("option", name="2", exact=True).click()
    expect(heatmap).not_to_have_attribute("src", before, timeout=60_000)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
