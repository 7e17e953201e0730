"""Faults stay inside the request that met them: a bug, an out-of-memory, a model that will not load."""

from __future__ import annotations

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from support import free_port

pytestmark = pytest.mark.slow

FLAKY_DEMO = """
import gradio as gr
import torch
from txgallery import Demo
from txgallery.ui import user_errors

calls = {"n": 0}

@user_errors
def answer(text):
    calls["n"] += 1
    if text == "bug":
        return {}["missing"]  # a bug inside the handler
    if text == "oom":
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    if text == "memory":
        raise MemoryError()
    return text.upper()

def build():
    with gr.Blocks() as page:
        box = gr.Textbox()
        out = gr.Textbox()
        box.submit(answer, box, out, api_name="flaky_answer")
    return page

demo = Demo(slug="flaky", title="Flaky", description="fails on purpose", build=build)
"""



@pytest.fixture(scope="module")
def flaky_gallery(tmp_path_factory):
    import sys
    from importlib.metadata import EntryPoint

    from txgallery.gallery import build_gallery, launch
    from txgallery.plugin import DemoEntry, load_entry

    site = tmp_path_factory.mktemp("flaky-site")
    (site / "thirdparty_flaky.py").write_text(FLAKY_DEMO)
    sys.path.insert(0, str(site))
    try:
        flaky = load_entry(EntryPoint(name="flaky", value="thirdparty_flaky:demo", group="txgallery.demos"))
        broken = DemoEntry(name="needs_a_missing_model", origin="tests", error="ModelLoadError: weights not found")
        app = launch(build_gallery([flaky, broken]), port=free_port(), block=False, quiet=True)
        yield Client(app.local_url, verbose=False)
        app.close()
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("thirdparty_flaky", None)


def test_a_bug_in_one_request_gives_a_message_and_the_next_request_is_served(flaky_gallery):
    with pytest.raises(AppError, match="Something went wrong inside the demo \\(KeyError\\)"):
        flaky_gallery.predict("bug", api_name="/flaky_answer")
    assert flaky_gallery.predict("fine", api_name="/flaky_answer") == "FINE"


@pytest.mark.parametrize("text", ["oom", "memory"])
def test_out_of_memory_is_reported_and_the_queue_keeps_serving(flaky_gallery, text):
    with pytest.raises(AppError, match="ran out of memory"):
        flaky_gallery.predict(text, api_name="/flaky_answer")
    assert flaky_gallery.predict("after", api_name="/flaky_answer") == "AFTER"
    assert flaky_gallery.predict("up", api_name="/ping") == "up"


def test_many_failing_requests_in_a_row_do_not_poison_the_queue(flaky_gallery):
    for _ in range(10):
        with pytest.raises(AppError):
            flaky_gallery.predict("bug", api_name="/flaky_answer")
    assert flaky_gallery.predict("still", api_name="/flaky_answer") == "STILL"


def test_the_server_keeps_state_for_at_most_max_sessions(monkeypatch):
    # every plain API call is a session of its own; without a bound each one's state would stay for good
    import gradio as gr
    import httpx

    import txgallery.gallery as gallery

    monkeypatch.setattr(gallery, "MAX_SESSIONS", 3)
    with gr.Blocks() as page:
        kept = gr.State(None)
        box, out = gr.Textbox(), gr.Textbox()
        box.submit(lambda text, _: (text.upper(), [0] * 1000), [box, kept], [out, kept], api_name="remember")
    app = gallery.launch(page, port=free_port(), block=False, quiet=True)
    try:
        with httpx.Client(base_url=app.local_url, timeout=60) as http:
            for i in range(6):
                event = http.post("/gradio_api/call/remember", json={"data": [f"call {i}", None]}).json()["event_id"]
                assert f"CALL {i}" in http.get(f"/gradio_api/call/remember/{event}").text
        sessions = app.server_app.state_holder.session_data
        assert 1 <= len(sessions) <= 3
    finally:
        app.close()
