"""The chrome every demo page gets from txgallery/gallery.py, in a real browser: the collapsed "About this model"
panel, the skip link, the contrast and single line of the navigation and the footer, alt texts on example pictures,
and the line that says what a long wait waits for."""

from __future__ import annotations

import threading

import gradio as gr
import pytest
from playwright.sync_api import expect
from support import free_port

from txgallery import Demo
from txgallery.gallery import build_single, launch
from txgallery.plugin import DemoEntry

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOAD_TIMEOUT = 120_000  # ms; the first visit of a page on 2 busy cores

# WCAG 2.x contrast of each element under `selector` that has text of its own: the text colour (blended onto its
# background when translucent) against the first non-transparent background up the tree (the canvas is white).
CONTRAST_JS = """(selector) => {
  const rgba = (css) => {
    const v = css.match(/[\\d.]+/g).map(Number);
    return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1];
  };
  const lum = ([r, g, b]) => {
    const lin = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) return c;
    }
    return [255, 255, 255, 1];
  };
  const ownText = (el) => [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join("").trim();
  const shown = [...document.querySelectorAll(selector)].filter((el) => ownText(el) && el.getClientRects().length);
  return shown.map((el) => {
    const style = getComputedStyle(el);
    const bg = background(el);
    const fg = rgba(style.color);
    const a = fg[3] * Number(style.opacity);
    const text = [0, 1, 2].map((i) => fg[i] * a + bg[i] * (1 - a));
    const [hi, lo] = [lum(text), lum(bg)].sort((x, y) => y - x);
    return {text: ownText(el), ratio: (hi + 0.05) / (lo + 0.05)};
  });
}"""


def _open(page, url: str, ready: str) -> None:
    page.goto(url, wait_until="load", timeout=LOAD_TIMEOUT)
    page.locator(ready).first.wait_for(timeout=LOAD_TIMEOUT)


def test_model_provenance_is_in_a_closed_about_panel(page, gallery):
    _open(page, gallery + "/sentiment", "#tx-demo textarea")
    about = page.locator(".tx-about")
    expect(about).to_have_count(1)
    label = about.get_by_role("button", name="About this model")
    expect(label).to_be_visible()
    # the first screen: title, description, then the demo; the model list stays folded away
    expect(page.locator(".block.tx-models")).not_to_be_visible()
    title = page.get_by_role("heading", name="BERT sentiment").first
    assert title.bounding_box()["y"] < about.bounding_box()["y"] < page.locator("#tx-demo").bounding_box()["y"]
    label.click()
    models = about.locator(".block.tx-models")
    expect(models).to_be_visible()
    expect(models).to_contain_text("minilm-rt-sentiment")
    expect(models).to_contain_text("--model sentiment=embedded,distilbert/")


def test_the_skip_link_is_the_first_tab_stop_and_moves_focus_into_the_demo(page, gallery):
    _open(page, gallery + "/sentiment", "#tx-demo textarea")
    skip = page.locator("#tx-skip")
    assert skip.bounding_box()["y"] + skip.bounding_box()["height"] <= 0  # out of sight until it has focus
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "tx-skip"
    expect(skip).to_have_text("Skip to the demo")
    box = skip.bounding_box()
    assert box["y"] >= 0 and box["width"] > 50 and box["height"] > 10  # shown on focus
    page.keyboard.press("Enter")
    focused = page.evaluate("() => [document.activeElement.tagName, !!document.activeElement.closest('#tx-demo')]")
    assert focused == ["TEXTAREA", True]
    # the landing page has no demo to skip to: no skip link in the way of its first Tab
    _open(page, gallery + "/", ".tx-card")
    expect(page.locator("#tx-skip")).to_be_hidden()


@pytest.mark.parametrize("path, ready", [("/sentiment", "#tx-demo textarea"), ("/efficiency", "#tx-demo input"),
                                         ("/", ".tx-card")])
def test_navigation_body_text_and_buttons_pass_wcag_aa_contrast(page, gallery, path, ready):
    _open(page, gallery + path, ready)
    page.locator("footer").wait_for(timeout=LOAD_TIMEOUT)
    chrome = [("div.nav-holder nav a", 9), ("footer, footer *", 2)]
    # a demo's buttons (the primary one, tabs) and its text (labels, a slider's range, lessons)
    demo = [("#tx-demo button", 3), ("#tx-demo :is(p, li, label, span)", 4)] if path != "/" else []
    for selector, least in chrome + demo:
        measured = page.evaluate(CONTRAST_JS, selector)
        assert len(measured) >= least, (selector, measured)
        low = [m for m in measured if m["ratio"] < 4.5]
        assert not low, (selector, low)


def test_navigation_stays_on_one_line_at_1440_by_900(page, gallery):
    page.set_viewport_size({"width": 1440, "height": 900})
    try:
        _open(page, gallery + "/sentiment", "div.nav-holder nav a")
        boxes = [a.bounding_box() for a in page.locator("div.nav-holder nav a").all()]
        assert len(boxes) >= 9
        assert max(b["y"] for b in boxes) - min(b["y"] for b in boxes) < 2, boxes
        # every link in view, none scrolled away
        assert all(0 <= b["x"] and b["x"] + b["width"] <= 1440 for b in boxes), boxes
        assert page.evaluate("() => { const n = document.querySelector('div.nav-holder nav');"
                             " return n.scrollWidth <= n.clientWidth; }")
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


@pytest.mark.parametrize("path, expected", [("/clip", "Example: chelsea"),
                                            ("/vit", "Example: Fashion-MNIST test image 19, T-shirt/top")])
def test_example_pictures_have_alt_text_from_their_file_names(page, gallery, path, expected):
    _open(page, gallery + path, ".gallery-item img")
    pictures = page.locator(".gallery-item img")
    expect(page.locator(".gallery-item img:not([alt]), .gallery-item img[alt='']")).to_have_count(0)
    alts = [img.get_attribute("alt") for img in pictures.all()]
    assert all(alt.startswith("Example: ") and len(alt) > len("Example: ") for alt in alts), alts
    assert expected in alts


def test_a_wait_longer_than_the_notice_delay_says_what_it_waits_for(browser):
    """A plugin page whose run waits on the test: the running request and one queued behind it each get a line in
    words over their result (Gradio alone shows a timer), and the line goes when the result comes."""
    release = threading.Event()

    def answer(text: str) -> str:
        release.wait(120)
        return text.upper()

    def build() -> gr.Blocks:
        with gr.Blocks() as blocks:
            text = gr.Textbox("hello", label="Text")
            run = gr.Button("Shout", elem_id="slow-run")
            shouted = gr.Textbox(label="Shouted", elem_id="slow-out")
            run.click(answer, text, shouted, concurrency_limit=1, concurrency_id="slow")
        return blocks

    demo = Demo(slug="slow", title="Slow page", description="A run that waits.", build=build)
    app = launch(build_single(DemoEntry(name="slow", origin="test", demo=demo)), port=free_port(), block=False,
                 quiet=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        first, second = context.new_page(), context.new_page()
        for tab in (first, second):
            tab.goto(app.local_url, wait_until="load", timeout=LOAD_TIMEOUT)
            tab.locator("#slow-run").wait_for(timeout=LOAD_TIMEOUT)
        first.locator("#slow-run").click()
        expect(first.locator("#slow-out .progress-text")).to_contain_text("processing", timeout=60_000)
        second.locator("#slow-run").click()  # behind the first: the event runs one at a time
        expect(first.locator("#slow-out #tx-waiting")).to_have_text("The server is still working on “Shout”.", timeout=60_000)
        waiting = second.locator("#slow-out #tx-waiting")
        expect(waiting).to_contain_text("Waiting in the server's queue: your request is number 1", timeout=60_000)
        assert waiting.get_attribute("role") == "status"  # read out by screen readers too
        release.set()
        for tab in (first, second):
            expect(tab.locator("#slow-out textarea")).to_have_value("HELLO", timeout=60_000)
            expect(tab.locator("#tx-waiting")).to_have_count(0)
    finally:
        release.set()
        context.close()
        app.close()
