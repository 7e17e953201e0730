"""Presenter mode in a real browser: two browser contexts, one presenter and one attendee."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from support import free_port

from txgallery import presenter, settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = "workshop-key"
FOLLOW_TIMEOUT = 15_000  # ms; a follower polls every second and the presenter reports a URL once it settled


@pytest.fixture(scope="module")
def presented_gallery():
    """A gallery of two demos with presenter mode on; yields its URL."""
    from txgallery.gallery import build_gallery, launch
    from txgallery.plugin import discover_demos

    previous = settings.current()
    settings.configure(settings.Settings(presenter_key=KEY))
    presenter.reset()
    app = launch(build_gallery(discover_demos(only=["sentiment", "seq2seq"])), port=free_port(), block=False,
                 quiet=True)
    try:
        yield app.local_url.rstrip("/")
    finally:
        app.close()
        presenter.reset()
        settings.configure(previous)


@pytest.fixture(scope="module")
def two_people(browser):
    """(presenter page, attendee page), each in a browser context of its own (no shared storage)."""
    yield browser.new_context().new_page(), browser.new_context(viewport={"width": 390, "height": 844}).new_page()


def test_the_attendee_follows_pages_and_inputs_then_detaches(presented_gallery, two_people):
    lead, attendee = two_people
    attendee.goto(presented_gallery + "/", wait_until="load", timeout=60_000)
    attendee.locator("#tx-follow input").check()

    lead.goto(f"{presented_gallery}/sentiment?presenter={KEY}", wait_until="load", timeout=60_000)
    expect(lead.locator("#tx-presenter-status")).to_contain_text("Presenting", timeout=30_000)
    assert "presenter" not in lead.url  # the key leaves the address bar, so no shared link carries it
    expect(attendee).to_have_url(f"{presented_gallery}/sentiment", timeout=FOLLOW_TIMEOUT)

    lead.get_by_label("Text").first.fill("A dull, lifeless mess.")
    expect(attendee.get_by_label("Text").first).to_have_value("A dull, lifeless mess.", timeout=FOLLOW_TIMEOUT)
    expect(attendee.locator("#sentiment-label-0")).to_contain_text("%", timeout=120_000)  # the link ran
    expect(attendee.locator("#tx-follow input")).to_be_checked()  # following survives the page change

    attendee.locator("#tx-follow input").uncheck()  # detach and explore
    lead.goto(f"{presented_gallery}/seq2seq", wait_until="load", timeout=60_000)
    expect(lead.locator("#tx-presenter-status")).to_contain_text("Presenting", timeout=30_000)  # still the presenter
    attendee.wait_for_timeout(4000)
    assert "/sentiment" in attendee.url

    # re-sync: one click (a click, not check(): the page it opens at once may not have restored the tick yet when
    # check() reads the box back)
    attendee.locator("#tx-follow input").click()
    expect(attendee).to_have_url(f"{presented_gallery}/seq2seq", timeout=FOLLOW_TIMEOUT)
    expect(attendee.locator("#tx-follow input")).to_be_checked(timeout=FOLLOW_TIMEOUT)  # and it keeps following


def test_a_wrong_key_leads_nobody(presented_gallery, two_people):
    _, attendee = two_people
    before = presenter.presented()
    attendee.goto(f"{presented_gallery}/sentiment?presenter=guess", wait_until="load", timeout=60_000)
    expect(attendee.locator("#tx-presenter-status")).to_contain_text("not the one the operator set", timeout=30_000)
    expect(attendee.locator("#tx-follow input")).to_be_visible()
    attendee.get_by_label("Text").first.fill("Nobody should see this.")
    attendee.wait_for_timeout(3000)
    assert presenter.presented() == before


def test_publish_checks_the_key_and_the_url():
    previous = settings.current()
    settings.configure(settings.Settings(presenter_key=KEY))
    try:
        presenter.reset()
        assert not presenter.publish("wrong", "/sentiment")
        assert not presenter.publish(KEY, "https://elsewhere.example/")  # followers only ever open this site
        assert not presenter.publish(KEY, "//elsewhere.example/")
        assert not presenter.publish(KEY, "/" + "x" * 5000)
        assert presenter.presented() == ""
        assert presenter.publish(KEY, "/vit?image=test00002-trouser")
        assert presenter.presented() == "/vit?image=test00002-trouser"
    finally:
        presenter.reset()
        settings.configure(previous)


def test_presenter_mode_is_off_without_a_key():
    previous = settings.current()
    settings.configure(settings.Settings())
    try:
        assert not presenter.enabled() and not presenter.publish("", "/sentiment")
    finally:
        settings.configure(previous)


def test_a_tick_made_while_the_page_starts_is_kept(presented_gallery, browser):
    """On a slow network the page's start answer arrives after the attendee ticked *Follow*: it must not untick it."""
    import time

    attendee = browser.new_context().new_page()

    def slow(route):
        time.sleep(2)  # every plain call of this attendee, the page's start among them, answers 2 s late
        route.continue_()

    attendee.route("**/gradio_api/run/**", slow)
    attendee.goto(presented_gallery + "/", wait_until="load", timeout=60_000)
    attendee.locator("#tx-follow input").check()  # before the start answer is back
    attendee.wait_for_timeout(5000)
    expect(attendee.locator("#tx-follow input")).to_be_checked()
    attendee.context.close()
