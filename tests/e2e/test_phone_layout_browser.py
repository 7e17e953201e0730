"""Wide views on a phone (390×844) and a laptop (1440×900), in a real browser: the attention head view and the
seq2seq heatmaps keep a legible size and scroll sideways inside their box on the phone, and look as before on the
laptop; the generation page's model picker has the width for its value, and its sliders show their minimum and
maximum whole; headings draw every letter from one font."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

VIEWPORTS = {"phone": (390, 844), "laptop": (1440, 900)}
LOAD_TIMEOUT = 120_000  # ms; the first visit of a page on 2 busy cores
SCROLL_TIMEOUT = 10_000  # ms; a wheel's scroll lands within a few frames

# whether every element under `selector` lies within the window horizontally
ALL_IN_VIEW_JS = """(selector) => [...document.querySelectorAll(selector)].every((el) => {
  const box = el.getBoundingClientRect();
  return box.width > 0 && box.left >= 0 && box.right <= window.innerWidth;
})"""


@pytest.fixture(params=list(VIEWPORTS))
def sized_page(request, browser):
    """A page of the viewport named by the parameter; yields (page, viewport name)."""
    width, height = VIEWPORTS[request.param]
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        yield context.new_page(), request.param
    finally:
        context.close()


def _swipe_left(page, over) -> None:
    """Scroll sideways as a trackpad or a swipe does, with the pointer over `over` (no programmatic scrolling, which
    would move even a box that clips its overflow)."""
    over.scroll_into_view_if_needed()
    box = over.bounding_box()
    page.mouse.move(box["x"] + 10, box["y"] + box["height"] / 2)
    page.mouse.wheel(2000, 0)


def test_every_token_of_the_head_view_can_be_read(sized_page, gallery):
    page, viewport = sized_page
    page.goto(gallery + "/attention", wait_until="load", timeout=LOAD_TIMEOUT)
    page.locator("#tx-demo .gallery-item").first.click()  # the first example
    expect(page.locator("#attention-headview .txa-headview")).to_have_attribute("data-layer", "0",
                                                                               timeout=LOAD_TIMEOUT)
    left, right = ('#attention-headview text[data-side="l"]', '#attention-headview text[data-side="r"]')
    svg = page.locator("#attention-headview svg.txa-svg")
    assert svg.bounding_box()["width"] == 620  # drawn at its own size: 12 px tokens, never shrunk to fit
    assert page.locator(right).first.bounding_box()["height"] >= 12
    page.locator(left).first.scroll_into_view_if_needed()
    assert page.evaluate(ALL_IN_VIEW_JS, left), f"{viewport}: a query token (left column) is out of view"
    if viewport == "laptop":
        assert page.evaluate(ALL_IN_VIEW_JS, right), "laptop: a key token (right column) is out of view"
        return
    _swipe_left(page, svg)
    page.wait_for_function(ALL_IN_VIEW_JS, arg=right, timeout=SCROLL_TIMEOUT)  # raises if a swipe cannot reach it


def test_the_seq2seq_heatmap_keeps_a_legible_size(sized_page, gallery):
    page, viewport = sized_page
    page.goto(gallery + "/seq2seq", wait_until="load", timeout=LOAD_TIMEOUT)
    page.locator("#tx-demo .gallery-item").first.click()  # the first example
    picture = page.locator("#seq2seq-cross img")
    picture.wait_for(timeout=LOAD_TIMEOUT)
    shown, natural = picture.evaluate("(img) => [img.getBoundingClientRect().width, img.naturalWidth]")
    if viewport == "laptop":
        assert shown == natural  # the figure at its own size, as before
        return
    # the figure's 9-point labels stay legible at three quarters of its size; its right edge is a swipe away
    assert shown >= 0.75 * natural - 1, f"phone: the heatmap is drawn at {shown / natural:.0%} of its size"
    _swipe_left(page, picture)
    page.wait_for_function("() => document.querySelector('#seq2seq-cross img').getBoundingClientRect().right "
                           "<= window.innerWidth", timeout=SCROLL_TIMEOUT)


# per visible slider: whether its minimum and maximum are shown whole inside its box
SLIDER_ENDS_JS = """() => [...document.querySelectorAll('.slider_input_container')]
  .filter((slider) => slider.getClientRects().length).map((slider) => {
    const box = slider.closest('.block').getBoundingClientRect();
    const ends = [...slider.querySelectorAll('.min_value, .max_value')].map((e) => e.getBoundingClientRect());
    return {label: slider.closest('.block').querySelector('[data-testid=block-info]')?.textContent,
            whole: ends.length === 2 && ends.every((e) => e.width > 0 && e.left >= box.left && e.right <= box.right)};
  })"""


def test_the_model_picker_and_the_sliders_have_room(sized_page, gallery):
    page, viewport = sized_page
    page.goto(gallery + "/generation", wait_until="load", timeout=LOAD_TIMEOUT)
    picker = page.locator("#generation-model input")
    picker.wait_for(timeout=LOAD_TIMEOUT)
    expect(picker).to_have_value("smollm2-135m")
    fits = picker.evaluate("(input) => input.scrollWidth <= input.clientWidth && input.clientWidth >= 160")
    assert fits, f"{viewport}: the model picker is too narrow for {picker.input_value()!r}"
    stacked = page.locator("#generation-badge").bounding_box()["y"] >= picker.bounding_box()["y"] + 20
    assert stacked == (viewport == "phone"), f"{viewport}: the badge is {'below' if stacked else 'beside'} the picker"
    cut = [s["label"] for s in page.evaluate(SLIDER_ENDS_JS) if not s["whole"]]
    assert not cut, f"{viewport}: sliders whose minimum or maximum is hidden or cut: {cut}"


def test_a_heading_is_drawn_in_one_font(page, gallery):
    page.goto(gallery + "/sentiment", wait_until="load", timeout=LOAD_TIMEOUT)
    page.locator(".tx-title h1").wait_for(timeout=LOAD_TIMEOUT)
    page.evaluate("() => document.fonts.ready")
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    heading = cdp.send("DOM.querySelector", {"nodeId": root, "selector": ".tx-title h1"})["nodeId"]
    fonts = [font["postScriptName"] for font in cdp.send("CSS.getPlatformFontsForNode", {"nodeId": heading})["fonts"]]
    assert len(fonts) == 1, f"'BERT sentiment' is drawn in several fonts: {fonts}"
