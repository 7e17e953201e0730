"""Small UI pieces every demo page shares: error translation, model badges, the lesson panel."""

from __future__ import annotations

import functools
import logging
from typing import Callable, Iterable

import gradio as gr

from txgallery.limits import InputError
from txgallery.store import LoadedModel, ModelLoadError, ModelSource

log = logging.getLogger(__name__)


def user_errors(fn: Callable) -> Callable:
    """Turn bad input and load failures into a `gr.Error` message; never show users a stack trace."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (InputError, ModelLoadError) as exc:
            raise gr.Error(str(exc)) from exc
        except Exception as exc:  # a bug must not poison the queue or leak internals
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Something went wrong inside the demo ({type(exc).__name__}); the error is in the server log.") from exc

    return wrapper


def model_badge(source: ModelSource | ModelLoadError, loaded: LoadedModel | None = None) -> str:
    """Markdown saying which model runs, where it came from and why (or why it cannot run)."""
    if isinstance(source, ModelLoadError):
        return f"⚠️ **Model unavailable.** {source}"
    where = {"embedded": "embedded (ships with txgallery, works offline)", "local": "local directory",
             "hub": "Hugging Face Hub"}[source.kind]
    text = f"**Model:** `{source.ref}` · **source:** {where} · **why:** {source.reason}"
    metrics = loaded.metrics if loaded else {}
    if "test_accuracy" in metrics:
        text += f" · **held-out accuracy:** {metrics['test_accuracy']:.3f} on {metrics.get('test_size', '?')} Rotten Tomatoes sentences"
    return text


def lesson_panel(lesson: str, open: bool = False) -> gr.Accordion:
    """The 'what is this / what to try' panel at the top of a demo page."""
    with gr.Accordion("Lesson: what this shows and what to try", open=open) as panel:
        gr.Markdown(lesson)
    return panel


def tag_line(tags: Iterable[str]) -> str:
    """Tags rendered as inline code chips."""
    return " ".join(f"`{t}`" for t in tags)
