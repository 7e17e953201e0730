"""The generation studio in a real browser: stream a completion from the Shakespeare GPT-2, then open one step."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from support import screenshot_path

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOT = screenshot_path("generation.png")


def test_stream_a_completion_and_open_a_step(page, gallery):
    page.goto(gallery + "/generation", wait_until="domcontentloaded", timeout=120_000)
    page.locator("#generation-run").wait_for(timeout=120_000)
    page.locator("#generation-model input").click()
    page.get_by_role("option", name="gpt2-shakespeare", exact=True).click()
    # the first choice of a model loads it: on a busy 2-core machine that outlasts expect's 5 s default
    expect(page.locator("#generation-badge")).to_contain_text("gpt2-shakespeare", timeout=60_000)
    page.locator("#generation-prompt textarea").fill("ROMEO:\nBut soft, what light")
    page.get_by_role("radio", name="sampling").first.check()
    page.locator("#generation-run").click()

    stats = page.locator("#generation-stats")
    expect(stats).to_contain_text("tokens/s", timeout=120_000)  # live figures while it streams
    expect(stats).to_contain_text("finished", timeout=120_000)
    assert "generated: 48 tokens" in stats.inner_text() or "end of sequence" in stats.inner_text()
    assert "first token after" in stats.inner_text() and "perplexity" in stats.inner_text()
    expect(page.locator("#generation-badge")).to_contain_text("held-out plays")

    tokens = page.locator("#generation-output .token-container")
    assert tokens.count() >= 2
    tokens.nth(1).click()
    step = page.locator("#generation-step")
    expect(step).to_contain_text("log p =", timeout=60_000)
    expect(step).to_contain_text("left after filtering")
    page.wait_for_timeout(500)  # let the chart draw
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.locator("#generation-run").click()  # a new run: the inspector no longer shows the old run's step
    expect(step).to_contain_text("Click a generated token", timeout=30_000)
    expect(stats).to_contain_text("finished", timeout=120_000)
