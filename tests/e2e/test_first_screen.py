"""The first screen of every page, on a laptop and on a phone: the input, an example and the run button are visible
without scrolling; on the phone, the first example runs when tapped."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

VIEWPORTS = {"laptop": (1440, 900), "phone": (390, 844)}
# page -> (its main input, its run button); pages with examples also need their first example on the first screen
PAGES = {
    "attention": ("#attention-text textarea", "#attention-run"),
    "sentiment": ("#tx-demo textarea", "#sentiment-run"),
    "generation": ("#generation-prompt textarea", "#generation-run"),
    "seq2seq": ("#seq2seq-text textarea", "#seq2seq-run"),
    "vit": ("#vit-image", "#vit-run"),
    "clip": ("#clip-image", "#clip-run"),
    "finetune": ("#tx-demo input", "button:text-is('Train')"),
    "efficiency": ("#tx-demo input[type=checkbox]", "button:text-is('Build and measure')"),
}
WITHOUT_EXAMPLES = {"finetune", "efficiency"}  # their inputs are settings, not samples
# what a clicked example shows once it has run (on the phone: tests/userpaths/test_local.py clicks them on a laptop)
RESULT_TIMEOUT = 120_000
RESULTS = {
    "attention": lambda page: expect(page.locator("#attention-headview .txa-headview")).to_have_attribute(
        "data-layer", "0", timeout=RESULT_TIMEOUT),
    "sentiment": lambda page: expect(page.locator("#sentiment-label-0")).to_contain_text("%", timeout=RESULT_TIMEOUT),
    "generation": lambda page: expect(page.locator("#generation-stats")).to_contain_text("finished",
                                                                                        timeout=RESULT_TIMEOUT),
    "seq2seq": lambda page: expect(page.locator("#seq2seq-output textarea")).not_to_have_value("",
                                                                                              timeout=RESULT_TIMEOUT),
    "vit": lambda page: expect(page.locator("#vit-top-class")).to_contain_text("%", timeout=RESULT_TIMEOUT),
    "clip": lambda page: expect(page.locator("#clip-label")).to_contain_text("%", timeout=RESULT_TIMEOUT),
}


@pytest.mark.parametrize("viewport", VIEWPORTS)
@pytest.mark.parametrize("slug", PAGES)
def test_the_first_screen_holds_input_example_and_button(browser, gallery, slug, viewport):
    width, height = VIEWPORTS[viewport]
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    try:
        page.goto(f"{gallery}/{slug}", wait_until="load", timeout=120_000)
        main_input, button = PAGES[slug]
        wanted = {"input": page.locator(main_input).first, "run button": page.locator(button).first}
        if slug not in WITHOUT_EXAMPLES:
            wanted["first example"] = page.locator("#tx-demo .gallery-item, #tx-demo tr.tr-body").first
        for what, locator in wanted.items():
            locator.wait_for(state="visible", timeout=60_000)
        page.wait_for_timeout(500)  # the page's load events fill badges and recipes, which may push content down
        below = {what: round(box["y"] + box["height"]) for what, locator in wanted.items()
                 if (box := locator.bounding_box()) is None or box["y"] + box["height"] > height}
        assert not below, f"/{slug} at {width}×{height}: below the first screen (bottom px): {below}"
        if viewport == "phone" and slug in RESULTS:
            wanted["first example"].click()  # it fills the inputs and runs
            RESULTS[slug](page)
    finally:
        context.close()
