"""The ViT page in a real browser: upload a Fashion-MNIST test image, read the top class."""

from __future__ import annotations

import re

import pytest
from PIL import Image
from playwright.sync_api import expect
from support import screenshot_path

from txgallery.lib.fashion_mnist import load_fashion_mnist

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOT = screenshot_path("vit.png")


def test_upload_an_image_and_read_the_top_class(page, gallery, tmp_path):
    images, labels = load_fashion_mnist("test")
    trousers = tmp_path / "trousers.png"
    Image.fromarray(images[2]).resize((112, 112), Image.Resampling.NEAREST).save(trousers)
    assert labels[2] == 1  # "Trouser"
    page.goto(gallery + "/vit", wait_until="load", timeout=120_000)
    # the recipe's numbers are the model's: shown when the page loads, before any picture
    expect(page.get_by_text("4×4 = 16")).to_be_visible(timeout=60_000)
    page.locator("#vit-image input[type=file]").set_input_files(str(trousers))  # the upload runs the classifier
    top = page.locator("#vit-top-class")
    expect(top).to_contain_text("%", timeout=120_000)
    assert top.inner_text().split("·")[0].strip() == "Trouser"
    expect(page.get_by_text("held-out accuracy")).to_be_visible()
    # the top-5 bar plot is drawn, best class first (Vega names the x axis's values for screen readers)
    expect(page.locator("#vit-top5 [aria-label^='X-axis']")).to_have_attribute("aria-label", re.compile(
        r"5 values: Trouser, "), timeout=60_000)
    for picture in ("#vit-patch-grid img", "#vit-rollout img"):  # both pictures arrive, each with its caption
        expect(page.locator(picture)).to_be_visible(timeout=60_000)
    expect(page.get_by_text("16 patches of 7×7")).to_be_visible()
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
