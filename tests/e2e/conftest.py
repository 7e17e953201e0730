"""Browser fixtures: Debian's chromium driven by Playwright (never a downloaded browser), one page per test module."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import CHROMIUM, CHROMIUM_FLAGS


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is required for the browser tests: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        browser.close()
