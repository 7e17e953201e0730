"""Presenter mode: attendees who tick *Follow the presenter* see the instructor's page, inputs and view.

The operator sets a key (`txgallery serve --presenter-key`, or `$TXGALLERY_PRESENTER_KEY`). The instructor opens any
page once with `?presenter=KEY`; the key then stays in that browser tab (sessionStorage) and leaves the URL, so it is
never in a link that gets shared. Every second the presenter's page reports its URL (path and query, which
`ui.deep_link` keeps in step with the page's inputs and view) once it has stopped changing; every following page polls
it and opens it, which restores and runs it. The shared state is this process's memory: one gallery process, or the
single UI replica on Ray Serve.
"""

from __future__ import annotations

import hmac
import threading
import time

import gradio as gr

from txgallery import settings
from txgallery.limits import MAX_PRESENTER_URL_CHARS

POLL_S = 1.0  # a follower is at most about two polls behind the presenter

_lock = threading.Lock()
_presented = {"url": "", "at": 0.0}


def enabled() -> bool:
    """Whether the operator turned presenter mode on."""
    return bool(settings.current().presenter_key)


def _key_ok(key: str) -> bool:
    expected = settings.current().presenter_key
    return bool(expected) and hmac.compare_digest(key.encode(), expected.encode())


def publish(key: str, url: str) -> bool:
    """Record the presenter's current page (a same-site path with its query); False for a wrong key or URL."""
    if not _key_ok(key):
        return False
    if not url.startswith("/") or url.startswith("//") or len(url) > MAX_PRESENTER_URL_CHARS:
        return False
    with _lock:
        if _presented["url"] != url:
            _presented.update(url=url, at=time.time())
    return True


def presented() -> str:
    """The presenter's current page ("" before the presenter opened one)."""
    with _lock:
        return _presented["url"]


def reset() -> None:
    """Forget the presenter's page (a new session, or a test)."""
    with _lock:
        _presented.update(url="", at=0.0)


# The presenter's key moves from the URL into this tab's sessionStorage; the follow choice lives in localStorage, so it
# survives the page changes that following makes.
_START_JS = """(ignored, following) => {
  const url = new URL(location.href);
  const given = url.searchParams.get("presenter");
  if (given) {
    sessionStorage.setItem("txPresenterKey", given);
    url.searchParams.delete("presenter");
    history.replaceState(history.state, "", url);
  }
  return [sessionStorage.getItem("txPresenterKey") || "", localStorage.getItem("txFollow") === "1"];
}"""

# A presenter reports a URL only once it has not changed for a poll: typing does not drag followers along per key.
_POLL_JS = """(key, here, following) => {
  const url = location.pathname + location.search;
  const settled = window.txPresenterLast === url;
  window.txPresenterLast = url;
  return [settled ? key : "", url, following];
}"""

_GO_JS = """(target) => {
  if (target && target !== location.pathname + location.search) location.assign(target);
}"""


def presenter_bar(page: gr.Blocks) -> None:
    """The *Follow the presenter* toggle and the poll that keeps `page` in step (nothing when presenter mode is off)."""
    if not enabled():
        return
    with gr.Row(elem_classes=["tx-presenter"]):
        follow = gr.Checkbox(label="Follow the presenter", value=False, elem_id="tx-follow", scale=0, min_width=220)
        status = gr.Markdown(elem_id="tx-presenter-status")
    key, here, target = (gr.Textbox(visible=False) for _ in range(3))  # carry what the page's JavaScript reads
    poll = gr.Timer(POLL_S, active=False)

    def start(presenter_key: str, following: bool):
        """The key this page presents with ("" when none or wrong), the toggle, the status line and the poll."""
        if presenter_key and _key_ok(presenter_key):
            return (presenter_key, gr.Checkbox(visible=False),
                    "📣 **Presenting:** every attendee who follows sees this page.", gr.Timer(active=True))
        warning = "⚠️ This presenter key is not the one the operator set: you are not presenting." if presenter_key else ""
        if not following:  # leave the toggle alone: an attendee may have ticked it while this answer was on its way
            return "", gr.skip(), warning, gr.skip()
        return "", gr.Checkbox(value=True), warning, gr.Timer(active=True)

    def choose(following: bool):
        return gr.Timer(active=following), presented() if following else ""

    def sync(presenter_key: str, url: str, following: bool):
        if presenter_key:  # checked when the page started; a URL that is too long is not shared
            publish(presenter_key, url)
            return gr.skip()
        return presented() if following else gr.skip()

    # queue=False: plain HTTP calls that never wait behind the models, whatever the queue holds
    page.load(start, [key, follow], [key, follow, status, poll], js=_START_JS, api_name=False, queue=False,
              show_progress="hidden")
    follow.input(choose, follow, [poll, target], api_name=False, queue=False, show_progress="hidden",
                 js="(following) => { localStorage.setItem('txFollow', following ? '1' : '0'); return following; }"
                 ).then(None, target, None, js=_GO_JS, api_name=False)
    poll.tick(sync, [key, here, follow], target, js=_POLL_JS, api_name=False, queue=False,
              show_progress="hidden").then(None, target, None, js=_GO_JS, api_name=False)
