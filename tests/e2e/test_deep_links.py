"""Deep links in a real browser: a page's inputs and tab live in its URL; opening a URL restores them and runs; Back
and Forward step through what was run; *Copy link* gives the URL."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from support import top_class

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

POSITIVE = "An utterly charming film, funny and warm from start to finish."
NEGATIVE = "A dull, lifeless mess that wastes its cast."


def _wait_for_query(page, key: str, value: str) -> None:
    """Wait until the page's URL has `key=value` (history.replaceState/pushState: no navigation to wait for)."""
    page.wait_for_function("([key, value]) => new URLSearchParams(location.search).get(key) === value", arg=[key, value],
                           timeout=30_000)


def _top_label(page) -> str:
    return top_class(page, "#sentiment-label-0")


def test_opening_a_link_restores_the_text_and_runs(page, gallery):
    page.goto(f"{gallery}/sentiment?text={NEGATIVE}", wait_until="load", timeout=120_000)
    expect(page.get_by_label("Text").first).to_have_value(NEGATIVE, timeout=60_000)
    expect(page.locator("#sentiment-label-0")).to_contain_text("%", timeout=120_000)
    assert _top_label(page) == "negative"


def test_the_url_follows_the_inputs_and_back_restores_the_previous_run(page, gallery):
    page.goto(f"{gallery}/sentiment", wait_until="load", timeout=120_000)
    box = page.get_by_label("Text").first
    box.fill(POSITIVE)
    page.locator("#sentiment-run").click()
    expect(page.locator("#sentiment-label-0")).to_contain_text("%", timeout=120_000)
    _wait_for_query(page, "text", POSITIVE)
    box.fill(NEGATIVE)
    page.locator("#sentiment-run").click()
    _wait_for_query(page, "text", NEGATIVE)
    page.go_back()  # the page reloads with the previous run's text, and runs it
    expect(page.get_by_label("Text").first).to_have_value(POSITIVE, timeout=60_000)
    expect(page.locator("#sentiment-label-0")).to_contain_text("%", timeout=120_000)
    assert _top_label(page) == "positive"
    page.go_forward()
    expect(page.get_by_label("Text").first).to_have_value(NEGATIVE, timeout=60_000)


def test_the_tab_is_in_the_url(page, gallery):
    page.goto(f"{gallery}/sentiment", wait_until="load", timeout=120_000)
    page.get_by_role("tab", name="Batch").click()
    _wait_for_query(page, "tab", "batch")
    page.goto(f"{gallery}/sentiment?tab=batch", wait_until="load", timeout=120_000)
    expect(page.get_by_label("Texts, one per line")).to_be_visible(timeout=60_000)


def test_a_bad_link_says_what_it_ignored(page, gallery):
    page.goto(f"{gallery}/sentiment?tab=nowhere", wait_until="load", timeout=120_000)
    expect(page.locator(".toast-body")).to_contain_text("tab='nowhere'", timeout=60_000)


def test_attention_link_opens_the_text_at_a_layer_and_head(page, gallery):
    page.goto(f"{gallery}/attention?text=The+cat+sat+on+the+mat.&layer=2&head=3", wait_until="load", timeout=120_000)
    head_view = page.locator("#attention-headview .txa-headview")
    expect(head_view).to_have_attribute("data-layer", "2", timeout=120_000)
    assert "mat" in page.locator("#attention-headview svg").text_content()
    expect(page.locator("#attention-head input")).to_have_value("head 3")
    page.locator("#attention-layer input").click()
    page.get_by_role("option", name="layer 4").click()  # a view change after a run: a new history entry
    _wait_for_query(page, "layer", "4")
    page.go_back()
    expect(head_view).to_have_attribute("data-layer", "2", timeout=120_000)


def test_attention_link_reaches_a_layer_the_default_model_does_not_have(page, gallery):
    """The page opens with the 6-layer encoder's choices; a link to SmolLM2's layer 20 still opens layer 20."""
    page.goto(f"{gallery}/attention?model=smollm2-135m&text=ROMEO+speaks.&layer=20&head=7", wait_until="load",
              timeout=120_000)
    expect(page.locator("#attention-headview .txa-headview")).to_have_attribute("data-layer", "20", timeout=240_000)
    expect(page.locator("#attention-head input")).to_have_value("head 7")
    expect(page.locator(".toast-body", has_text="cannot be used here")).to_have_count(0)  # nothing was refused


def test_vit_link_names_an_example_never_an_upload(page, gallery, tmp_path):
    page.goto(f"{gallery}/vit?image=test00002-trouser&fusion=max", wait_until="load", timeout=120_000)
    top = page.locator("#vit-top-class")
    expect(top).to_contain_text("Trouser", timeout=120_000)
    _wait_for_query(page, "image", "test00002-trouser")
    from PIL import Image

    upload = tmp_path / "grey.png"
    Image.new("L", (28, 28), 128).save(upload)
    page.locator("#vit-image input[type=file]").set_input_files(str(upload))
    page.wait_for_function("() => !new URLSearchParams(location.search).has('image')", timeout=30_000)
    assert "fusion=max" in page.url


def test_copy_link_shows_the_link(page, gallery):
    page.goto(f"{gallery}/sentiment", wait_until="load", timeout=120_000)
    page.get_by_label("Text").first.fill(POSITIVE)
    page.locator("#tx-copy-link").click()
    expect(page.locator("#tx-copy-link-note")).to_contain_text("text=", timeout=30_000)
