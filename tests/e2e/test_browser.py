"""End to end in a real browser: Debian's chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from support import screenshot_path, top_class

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOT = screenshot_path("gallery.png")


def test_landing_page_to_sentiment_prediction(page, gallery):
    page.goto(gallery + "/", wait_until="load", timeout=120_000)
    cards = page.locator(".tx-card")
    cards.first.wait_for(timeout=60_000)
    assert page.locator('.tx-card[data-demo="sentiment"]').count() == 1
    assert "frobnicate" in page.locator(".tx-broken").inner_text()
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.locator('.tx-card[data-demo="sentiment"]').click()
    page.wait_for_url("**/sentiment", timeout=60_000)
    page.get_by_label("Text").first.fill("An utterly charming film, funny and warm from start to finish.")
    page.get_by_role("button", name="Classify", exact=True).click()
    assert top_class(page, "#sentiment-label-0") == "positive"
    # the attributions follow the label: every word of the text, coloured by its score
    attributions = page.locator("#sentiment-attributions-0")
    expect(attributions).to_contain_text("charming", timeout=120_000)
    assert "warm" in attributions.inner_text().splitlines()
    page.screenshot(path=str(SCREENSHOT.with_name("sentiment.png")), full_page=True)


def test_efficiency_lab_builds_and_measures(page, gallery):
    page.goto(gallery + "/efficiency", wait_until="load", timeout=120_000)
    # int8 only, to keep the suite short: the ONNX variants are tested in tests/demos/test_efficiency.py
    for technique in ("onnx", "onnx-int8"):
        page.get_by_label(technique, exact=True).uncheck()
    page.get_by_role("button", name="Build and measure").click()
    # the table lists every variant (a cell's text can be covered by the chart's labels, so "attached")
    for variant in ("int8 dynamic (PyTorch)", "fp32 (baseline)"):
        expect(page.get_by_text(variant).first).to_be_attached(timeout=240_000)
    assert page.get_by_text("ONNX fp32 (onnxruntime)").count() == 0
    page.wait_for_timeout(1000)  # let the chart draw
    page.screenshot(path=str(SCREENSHOT.with_name("efficiency.png")), full_page=True)


def test_the_pruning_settings_show_only_while_pruning_is_chosen(page, gallery):
    page.goto(gallery + "/efficiency", wait_until="load", timeout=120_000)
    sparsity = page.get_by_label("Pruning sparsity (share of weights zeroed)", exact=False).first
    expect(sparsity).to_be_hidden()
    page.get_by_label("pruning", exact=True).check()
    expect(sparsity).to_be_visible()
    page.get_by_label("pruning", exact=True).uncheck()
    expect(sparsity).to_be_hidden()
