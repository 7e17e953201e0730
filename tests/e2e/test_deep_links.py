"""Deep links in a real browser: a page's inputs and tab live in its URL; opening a URL restores them and runs; Back
and Forward step through what was run; *Copy link* gives a URL that reopens every page's inputs, view and result in a
new browser."""

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
    assert "mat" in page.locator("#attention-headview svg.txa-svg").text_content()
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


def test_vit_link_names_an_example_never_an_upload_even_one_named_like_an_example(page, gallery, tmp_path):
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
    # an upload that only shares an example's file name is not that example either
    page.goto(f"{gallery}/vit?image=test00002-trouser&fusion=max", wait_until="load", timeout=120_000)
    expect(top).to_contain_text("Trouser", timeout=120_000)  # the link's run is done: nothing sets the image after
    _wait_for_query(page, "image", "test00002-trouser")
    (tmp_path / "named").mkdir()
    namesake = tmp_path / "named" / "test00002-trouser.png"
    Image.new("L", (28, 28), 200).save(namesake)
    page.locator("#vit-image input[type=file]").set_input_files(str(namesake))
    page.wait_for_function("() => !new URLSearchParams(location.search).has('image')", timeout=30_000)


# --- Copy link, opened in a new browser context, on every page --------------------------------------------------------
# Per page: what an attendee does first (`make`), then what the page shows (`read`: its inputs, the chosen view and the
# result, once the result is there). The link from *Copy link*, opened in a fresh context (no cookies, no storage),
# must read the same. Fine-tuning and efficiency do not run from a link (a training or a measurement is not started by
# opening a page): their links restore the settings and the tab.

def _value(page, selector: str) -> str:
    return page.locator(selector).first.input_value()


def _selected_tab(page) -> str:
    return page.locator("#tx-demo [role=tab][aria-selected=true]").first.inner_text().strip()


def _make_sentiment(page) -> None:
    page.get_by_label("Text").first.fill(NEGATIVE)
    page.locator("#sentiment-run").click()


def _read_sentiment(page) -> dict:
    return {"label": _top_label(page), "text": page.get_by_label("Text").first.input_value()}


def _make_attention(page) -> None:
    page.locator("#attention-text textarea").fill("The cat sat on the mat.")
    page.locator("#attention-run").click()
    expect(page.locator("#attention-headview .txa-headview")).to_have_attribute("data-layer", "0", timeout=120_000)
    page.locator("#attention-layer input").click()
    page.get_by_role("option", name="layer 2", exact=True).click()
    _wait_for_query(page, "layer", "2")


def _read_attention(page) -> dict:
    view = page.locator("#attention-headview .txa-headview")
    expect(view).to_have_attribute("data-layer", "2", timeout=120_000)
    return {"text": _value(page, "#attention-text textarea"), "layer": _value(page, "#attention-layer input"),
            "tokens": page.locator("#attention-headview svg text").all_inner_texts(),
            "lines": page.locator("#attention-headview path").count()}


def _make_generation(page) -> None:
    page.locator("#generation-prompt textarea").fill("The sea is")
    number = page.locator("#tx-demo input[type=number]").first  # "Max new tokens": a short run
    number.fill("6")
    number.press("Enter")
    _wait_for_query(page, "max_new", "6")
    page.locator("#generation-run").click()


def _read_generation(page) -> dict:
    output = page.locator("#generation-output")
    expect(page.locator("#generation-stats")).to_contain_text("finished:", timeout=240_000)  # the stream has ended
    return {"prompt": _value(page, "#generation-prompt textarea"), "strategy": page.locator(
        "#generation-strategy input:checked").get_attribute("value"), "output": output.inner_text(),
        "max new tokens": _value(page, "#tx-demo input[type=number]")}


def _make_seq2seq(page) -> None:
    page.locator("#tx-demo .gallery-item, #tx-demo tr.tr-body").nth(1).click()  # an example: it runs


def _read_seq2seq(page) -> dict:
    output = page.locator("#seq2seq-output textarea")
    expect(output).not_to_have_value("", timeout=180_000)
    return {"text": _value(page, "#seq2seq-text textarea"), "task": _value(page, "#seq2seq-task input"),
            "output": output.input_value()}


def _make_vit(page) -> None:
    page.locator("#tx-demo .gallery-item").nth(2).click()  # an example picture: it runs, and its name is the link's


def _read_vit(page) -> dict:
    top = page.locator("#vit-top-class")
    expect(top).to_contain_text("%", timeout=120_000)
    return {"image": page.locator("#vit-image img").count() > 0, "top": top.inner_text(),
            "link": dict(p.split("=", 1) for p in page.url.split("?", 1)[1].split("&"))}


def _make_clip(page) -> None:
    page.get_by_label("Labels (comma or line separated)").fill("cat, dog, rocket")
    page.locator("#tx-demo .gallery-item").first.click()  # an example picture: it runs
    page.locator("#clip-image img").wait_for(timeout=60_000)
    page.locator("#clip-run").click()  # again, once the picture is in: under load the example's run can beat it


def _read_clip(page) -> dict:
    return {"top": top_class(page, "#clip-label"), "labels": page.get_by_label("Labels (comma or line separated)")
            .input_value(), "image": page.locator("#clip-image img").count() > 0}


def _make_finetune(page) -> None:
    page.locator("#finetune-method input").click()
    page.get_by_role("option", name="full", exact=False).first.click()
    _wait_for_query(page, "method", "full")
    page.get_by_role("tab", name="Compare").click()
    _wait_for_query(page, "tab", "compare")


def _read_finetune(page) -> dict:
    expect(page.get_by_role("tab", name="Compare")).to_have_attribute("aria-selected", "true", timeout=60_000)
    expect(page.locator("#finetune-method input")).not_to_have_value("LoRA", timeout=60_000)
    return {"method": _value(page, "#finetune-method input"), "tab": _selected_tab(page)}


def _make_efficiency(page) -> None:
    page.get_by_label("onnx-int8", exact=True).uncheck()
    page.get_by_label("pruning", exact=True).check()
    _wait_for_query(page, "techniques", "int8,onnx,pruning")
    page.get_by_role("tab", name="Distil").click()
    _wait_for_query(page, "tab", "distil")


def _read_efficiency(page) -> dict:
    expect(page.get_by_role("tab", name="Distil")).to_have_attribute("aria-selected", "true", timeout=60_000)
    expect(page.get_by_label("pruning", exact=True)).to_be_checked(timeout=60_000)
    return {"techniques": [t for t in ("int8", "onnx", "onnx-int8", "pruning", "compile")
                           if page.get_by_label(t, exact=True).is_checked()], "tab": _selected_tab(page)}


COPY_LINK_PAGES = {slug: (globals()[f"_make_{slug}"], globals()[f"_read_{slug}"])
                   for slug in ("attention", "sentiment", "generation", "seq2seq", "vit", "clip", "finetune",
                                "efficiency")}


@pytest.mark.parametrize("slug", COPY_LINK_PAGES)
def test_a_copied_link_opens_the_same_inputs_and_result_in_a_new_browser(page, browser, gallery, slug):
    make, read = COPY_LINK_PAGES[slug]
    page.goto(f"{gallery}/{slug}", wait_until="load", timeout=120_000)
    page.locator("#tx-copy-link").wait_for(timeout=120_000)
    make(page)
    shown = read(page)
    page.locator("#tx-copy-link").click()
    note = page.locator("#tx-copy-link-note")
    expect(note).to_contain_text(f"/{slug}?", timeout=30_000)
    link = note.inner_text().split(": ", 1)[1].strip()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        other = context.new_page()
        other.goto(link, wait_until="load", timeout=120_000)
        assert read(other) == shown, link
    finally:
        context.close()


def test_an_edit_made_while_the_page_starts_is_not_a_link_to_run(browser, gallery, tmp_path):
    """An attendee types labels before the page's start answer is back (the URL then has `?labels=`), then uploads a
    photo: the start must not press Run as if the page had been opened with a link (that run, with no picture, said
    "Please upload an image" and swallowed the upload's own run)."""
    import skimage.data
    from PIL import Image

    photo = tmp_path / "my_cat.jpg"
    Image.fromarray(skimage.data.chelsea()).save(photo)
    context = browser.new_context()
    page = context.new_page()
    held, runs, holding = [], [], [True]
    # the page's start events wait until the edit is made
    page.route("**/gradio_api/queue/join**", lambda route: held.append(route) if holding else route.continue_())
    page.on("request", lambda request: "queue/join" in request.url and "car, cat, rocket" in (request.post_data or "")
            and runs.append(request))  # each classification the page asks for carries the labels
    try:
        page.goto(gallery + "/clip", wait_until="load", timeout=120_000)
        page.locator("#clip-image input[type=file]").wait_for(state="attached", timeout=120_000)
        page.get_by_label("Labels (comma or line separated)").fill("car, cat, rocket")
        _wait_for_query(page, "labels", "car, cat, rocket")
        holding.clear()
        for route in held:
            route.continue_()
        page.wait_for_function("document.documentElement.dataset.txLinkReady === '1'", timeout=120_000)
        page.locator("#clip-image input[type=file]").set_input_files(str(photo))  # the upload runs the classifier
        assert top_class(page, "#clip-label") == "cat"
        assert len(runs) == 1, [request.post_data for request in runs]  # the upload's run, and no run from the start
    finally:
        context.close()
