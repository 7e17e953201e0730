"""What the Ray Serve seam does when a replica dies under a call: retry on another one, or fail with a message.

The handles here are stand-ins that fail the way Ray Serve's do (the exceptions are Ray's own), so every path runs
quickly and deterministically; tests/serving/test_ray_serve.py kills a real replica under load.
"""

from __future__ import annotations

import asyncio

import gradio as gr
import pytest
from ray.exceptions import ActorDiedError, RayTaskError
from ray.serve.exceptions import RequestCancelledError

from txgallery.limits import InputError
from txgallery.serving.ray_serve import RayServeBackend
from txgallery.serving.seam import ServiceKey, ServiceUnavailable
from txgallery.ui import user_errors


class Sentiment:
    """Only its name matters: the key of the service."""


KEY = ServiceKey(Sentiment, ("embedded",))
NAME = "Sentiment-embedded"


class _Attempts:
    """Plays one outcome per attempt: an exception to raise, or a value to return."""

    def __init__(self, outcomes: list) -> None:
        self.outcomes, self.started = list(outcomes), 0

    def next(self):
        self.started += 1
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class _Response:
    def __init__(self, attempts: _Attempts) -> None:
        self.attempts = attempts

    def result(self):
        return self.attempts.next()


class _Stream:
    """A streaming response: its items, then possibly an exception; records whether it was cancelled."""

    def __init__(self, items: list, error: BaseException | None) -> None:
        self.items, self.error, self.cancelled = items, error, False

    def __iter__(self):
        yield from self.items
        if self.error is not None:
            raise self.error

    def cancel(self) -> None:
        self.cancelled = True


class _Handle:
    """A DeploymentHandle's surface as the seam uses it: `call.remote(...).result()` and `options(stream=True)`."""

    def __init__(self, attempts: _Attempts) -> None:
        self.attempts, self.streams = attempts, []
        self.call = self  # handle.call.remote(...)
        self.stream = self
        self.relay = self

    def options(self, stream: bool = False):
        self.streaming = stream
        return self

    def remote(self, method, args, kwargs):
        if not getattr(self, "streaming", False):
            return _Response(self.attempts)
        items, error = self.attempts.next()
        self.streams.append(_Stream(items, error))
        return self.streams[-1]


def _backend(outcomes: list, window_s: float = 5.0) -> tuple[RayServeBackend, _Handle]:
    handle = _Handle(_Attempts(outcomes))
    return RayServeBackend({KEY: handle}, {KEY: NAME}, retry_window_s=window_s), handle


@pytest.mark.parametrize("death", [RequestCancelledError("r-1"), ActorDiedError(), asyncio.CancelledError(),
                                   RayTaskError("call", "traceback", ActorDiedError())],
                         ids=["request-cancelled", "actor-died", "asyncio-cancelled", "task-error-of-a-dead-actor"])
def test_a_call_whose_replica_died_is_answered_by_another(death):
    backend, handle = _backend([death, ("replica-2", {"label": "positive"})])
    assert backend.call(KEY, "predict", (["fine"],), {}) == {"label": "positive"}
    assert handle.attempts.started == 2
    assert backend.retried == 1
    assert backend.served_by() == {NAME: {"replica-2": 1}}


def test_retries_stop_after_the_window_with_a_message_the_page_shows():
    backend, handle = _backend([asyncio.CancelledError()], window_s=0.5)
    with pytest.raises(ServiceUnavailable, match=NAME) as raised:
        backend.call(KEY, "predict", (["fine"],), {})
    assert isinstance(raised.value, Exception)  # not a BaseException that would cancel the Gradio event
    assert 2 <= handle.attempts.started <= 5  # pauses grow: 0.1 + 0.2 s fit the window, 0.4 more would not
    assert backend.retried == 1  # one call retried, however many attempts it took

    @user_errors
    def predict(text: str):
        return backend.call(KEY, "predict", ([text],), {})

    with pytest.raises(gr.Error, match="unavailable"):
        predict("fine")


def test_an_error_of_the_service_itself_is_not_retried():
    backend, handle = _backend([RayTaskError("call", "traceback", InputError("The text is empty."))])
    with pytest.raises(InputError, match="empty"):
        backend.call(KEY, "predict", ([""],), {})
    assert handle.attempts.started == 1
    assert backend.retried == 0


def test_a_stream_starts_over_only_before_its_first_item():
    backend, handle = _backend([([], RequestCancelledError("r-1")), (["a", "b"], None)])
    assert list(backend.stream(KEY, "generate", (), {})) == ["a", "b"]
    assert backend.retried == 1
    assert all(stream.cancelled for stream in handle.streams)

    backend, handle = _backend([(["a"], ActorDiedError()), (["a", "b"], None)])
    received = []
    with pytest.raises(ServiceUnavailable, match="middle"):
        for item in backend.stream(KEY, "generate", (), {}):
            received.append(item)
    assert received == ["a"]  # what was shown stays; nothing is repeated
    assert handle.attempts.started == 1


def test_progress_callbacks_are_relayed_again_after_a_retry():
    steps = []
    backend, handle = _backend([([("callback", 0, (1, 2), {})], ActorDiedError()),
                                ([("callback", 0, (1, 2), {}), ("callback", 0, (2, 2), {}),
                                  ("result", "replica-2", 7)], None)])
    assert backend.call(KEY, "work", (2,), {"progress": lambda step, total: steps.append((step, total))}) == 7
    assert steps == [(1, 2), (1, 2), (2, 2)]
    assert backend.retried == 1
    assert backend.served_by() == {NAME: {"replica-2": 1}}


class Typed:
    """A service nobody declared when the app was built (a model typed into a page)."""

    def __init__(self, ref: str) -> None:
        self.ref = ref

    def describe(self) -> str:
        return f"**model:** `{self.ref}` (typed on the page)"

    def generate(self, prompt: str) -> str:
        return prompt + " and more"


def test_a_service_without_a_deployment_says_on_its_badge_that_it_runs_in_the_ui_replica():
    backend = RayServeBackend({}, {})
    key = ServiceKey(Typed, ("gpt2",))
    try:
        badge = backend.call(key, "describe", (), {})
        assert badge.startswith("**model:** `gpt2`") and "Runs inside the UI replica" in badge
        assert backend.call(key, "generate", ("once",), {}) == "once and more"  # other answers are its own
        assert backend.in_ui_replica() == [key.name]
    finally:
        backend.local.shutdown()
