"""The first screen of every page, on a laptop and on a phone: the input, an example and the run button are visible
without scrolling."""

from __future__ import annotations

import pytest

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
    finally:
        context.close()
