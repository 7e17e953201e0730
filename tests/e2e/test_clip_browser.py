"""The CLIP page in a real browser: upload a photo, read the zero-shot top class."""

from __future__ import annotations

import pytest
import skimage.data
from PIL import Image
from playwright.sync_api import expect
from support import screenshot_path, top_class

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCREENSHOT = screenshot_path("clip.png")


def test_upload_a_photo_and_read_the_top_class(page, gallery, tmp_path):
    photo = tmp_path / "my_cat.jpg"
    Image.fromarray(skimage.data.chelsea()).save(photo)
    page.goto(gallery + "/clip", timeout=120_000)
    page.locator("#clip-image input[type=file]").wait_for(state="attached", timeout=120_000)
    page.get_by_label("Labels (comma or line separated)").fill("car, cat, rocket")
    page.locator("#clip-image input[type=file]").set_input_files(str(photo))  # the upload runs the classifier
    assert top_class(page, "#clip-label") == "cat"
    expect(page.locator("#clip-badge")).to_contain_text("not CLIP")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
