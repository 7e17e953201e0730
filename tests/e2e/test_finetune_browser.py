"""The fine-tuning playground in a real browser: a tiny LoRA run whose curve and progress update while it trains."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from support import screenshot_path

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOT = screenshot_path("finetune.png")


def _set_slider(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(value)
    box.press("Enter")


def test_tiny_run_updates_the_curve_and_lands_in_the_comparison(page, gallery):
    # not "networkidle": the session-cleanup heartbeat (gr.State's delete_callback) keeps a stream open
    page.goto(gallery + "/finetune", wait_until="load", timeout=120_000)
    expect(page.get_by_role("button", name="Train", exact=True)).to_be_visible(timeout=120_000)
    expect(page.locator("#finetune-steps input[type=number]")).to_be_visible(timeout=120_000)
    _set_slider(page, "finetune-steps", "8")
    _set_slider(page, "finetune-batch", "4")
    page.get_by_role("button", name="Train", exact=True).click()

    progress = page.locator("#finetune-progress")
    expect(progress).to_contain_text("step", timeout=120_000)
    curve = page.locator("#finetune-curves img").first
    expect(curve).to_be_visible(timeout=120_000)
    first_curve = curve.get_attribute("src")
    expect(progress).to_contain_text("done", timeout=240_000)
    assert "step 8/8" in progress.inner_text()
    assert curve.get_attribute("src") != first_curve  # the curve was redrawn as steps came in
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#finetune-runs")).to_contain_text("lora", timeout=30_000)
