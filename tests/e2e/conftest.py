"""Browser fixtures: Debian's chromium driven by Playwright (never a downloaded browser), one page per test module."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import CHROMIUM, CHROMIUM_FLAGS


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, one per test module."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is required for the browser tests: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def page(browser):
    """One laptop-sized page per test module."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()
