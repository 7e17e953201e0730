"""One gallery app: a landing page with a card per demo, and one page (a Gradio route) per demo.

A demo that failed to import or build becomes an error card and an error page; the rest of the gallery runs.
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Iterator

import gradio as gr
from gradio.blocks import Block, BlocksConfig
from gradio.state_holder import SessionState, StateHolder

from txgallery.limits import (
    DEFAULT_CONCURRENCY,
    GRADIO_CACHE_AGE_S,
    GRADIO_CACHE_SWEEP_S,
    MAX_SESSIONS,
    MAX_UPLOAD_SIZE,
    QUEUE_SIZE,
)
from txgallery.plugin import DemoEntry, build_entry, discover_demos, page_context
from txgallery.presenter import presenter_bar
from txgallery.ui import (
    copy_link_button,
    lesson_panel,
    model_badge,
    tag_line,
    waiting_notice,
)

log = logging.getLogger(__name__)

CSS = """
/* Gradio's theme declares Source Sans Pro 600 with a file that holds only a Cyrillic slice and "A", "B": every other
   letter of a heading, label or button fell back to another font, so "BERT" read "ʙERT". Its full bold file takes
   weight 600 (the later rule of the same weight wins), at the same relative URL as Gradio's own rules. */
@font-face {font-family: "Source Sans Pro"; font-weight: 600; font-style: normal;
            src: url("static/fonts/SourceSansPro/SourceSansPro-Bold.woff2") format("woff2");}
.tx-cards {display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 16px;}
.tx-card {border: 1px solid var(--border-color-primary); border-radius: 12px; padding: 16px; text-decoration: none;
          color: inherit; display: block; background: var(--block-background-fill);}
.tx-card:hover {border-color: var(--color-accent);}
.tx-card h3 {margin: 0 0 6px 0;} .tx-card p {margin: 0 0 8px 0;}
.tx-tag {display: inline-block; font-size: 12px; padding: 1px 8px; margin: 2px 4px 0 0; border-radius: 10px;
         background: var(--background-fill-secondary);}
.tx-card.tx-broken {border-color: #d33; background: #fff4f4; color: #600;}
.tx-start {float: right; font-size: 12px; font-weight: 600; padding: 1px 8px; border-radius: 10px;
           background: var(--color-accent); color: white;}
.tx-tags {font-size: 12px;}
/* the chrome above a demo: the title and its sentence, then lesson, provenance and link on one line */
.tx-title h1 {margin-bottom: 4px;}
.tx-heading {align-items: flex-start; flex-wrap: nowrap;}
.tx-heading > .tx-title {flex: 1 1 auto;}
.tx-heading > .tx-link {flex: 0 0 auto; min-width: 0; width: auto; margin-top: 12px;}
.tx-chrome {gap: 8px; align-items: flex-start; flex-wrap: nowrap;}
.tx-chrome > * {flex: 1 1 0; min-width: 0;}
@media (max-width: 640px) {
  .tx-title h1 {font-size: 1.6rem;}
  .tx-chrome .label-wrap {padding: 6px 8px;}
  .tx-image-input {height: 200px !important;}
  /* a wide matplotlib figure shrunk to a phone's width has labels a few pixels tall: it keeps 3/4 of its own size
     (its 9-point labels stay legible) and scrolls sideways inside its box */
  .tx-wide-figure .matplotlib {overflow-x: auto; align-items: flex-start;}
  .tx-wide-figure .matplotlib img {max-width: none; zoom: 0.75;}
  /* a row of a picker and its description: stacked, the picker gets the whole width */
  .tx-stack-on-phone {flex-direction: column; align-items: stretch;}
}
/* a slider keeps its minimum and maximum in view: Gradio's track refuses to shrink below 112 px, which pushed a
   three-digit maximum out of a 160 px slider ("25" for 256), and it hides both on screens up to 480 px */
div.slider_input_container > input[type=range] {min-width: 48px;}
@media (max-width: 480px) {
  div.slider_input_container > .min_value, div.slider_input_container > .max_value {display: inline;}
}
/* a table whose headers are words: a narrow column wraps them at spaces, never mid-word ("accura cy") */
.tx-whole-words th, .tx-whole-words th * {word-break: normal !important; overflow-wrap: normal !important;}
/* the skip link sits above the page until it has keyboard focus; only pages with a demo (#tx-demo) offer it */
.tx-skip {position: fixed; top: 8px; left: 8px; z-index: 10000; padding: 8px 16px; border-radius: 8px;
          background: #1f2937; color: #ffffff; font-weight: 600; text-decoration: underline;
          transform: translateY(-300%);}
.tx-skip:focus {transform: none; outline: 3px solid #f97316; outline-offset: 2px;}
body:not(:has(#tx-demo)) > .tx-skip {display: none;}
/* Gradio's nav and footer use the subdued text colour (1.91:1 on white); the body colour passes WCAG AA in both
   themes. The nav stays on one line (9 pages fit at 1440 px) and scrolls sideways on narrow screens. */
div.nav-holder > nav {flex-wrap: nowrap; overflow-x: auto; justify-content: safe flex-end; gap: 2px;}
div.nav-holder > nav > a {color: var(--body-text-color); font-size: var(--text-md); white-space: nowrap;
                          padding: var(--size-1) 6px;}
div.nav-holder > nav > a.active {font-weight: 600;}
div.gradio-container footer, div.gradio-container footer :is(a, button, span, div) {color: var(--body-text-color);}
/* WCAG AA in the light theme: Gradio's orange (primary 500) gives 2.8:1 as a primary button's background and as the
   selected tab's text, and its subdued grey (neutral 400) 1.9:1 (a slider's range); primary 700 and neutral 600 pass.
   The dark theme declares its own values on .dark, which win inside it. */
:root:not(.dark) {--button-primary-background-fill: var(--primary-700); --button-primary-background-fill-hover:
  var(--primary-800); --button-primary-border-color: var(--primary-700); --color-accent: var(--primary-700);
  --body-text-color-subdued: var(--neutral-600);}
"""

# Gradio re-renders examples, so a MutationObserver gives every example picture an alt text from its file name
# (the shipped Fashion-MNIST files map to their test index and label); it also adds the skip link as the page's
# first Tab stop, ahead of Gradio's nav, which no component placed in the page can precede.
HEAD_SCRIPT = """<script>
(() => {
  const known = __KNOWN__;
  const visible = (el) => el.getClientRects().length > 0 && !el.disabled;
  const altText = (src) => {
    const stem = decodeURIComponent((src || "").split(/[?#]/)[0].split("/").pop() || "").replace(/\\.[^.]*$/, "");
    return "Example: " + (known[stem] || stem.replace(/[_-]+/g, " ").trim() || "image");
  };
  const skipToDemo = (event) => {
    const demo = document.getElementById("tx-demo");
    if (!demo) return;
    event.preventDefault();
    const inputs = demo.querySelectorAll("input:not([type=hidden]), textarea, select");
    const focusable = demo.querySelectorAll("button, a[href], [tabindex]:not([tabindex='-1'])");
    const target = [...inputs].find(visible) || [...focusable].find(visible);
    if (target) { target.focus(); return; }
    demo.tabIndex = -1;
    demo.focus();
  };
  const update = () => {
    if (!document.getElementById("tx-skip")) {
      const link = document.createElement("a");
      link.id = "tx-skip";
      link.className = "tx-skip";
      link.href = "#tx-demo";
      link.textContent = "Skip to the demo";
      link.addEventListener("click", skipToDemo);
      document.body.prepend(link);
    }
    for (const img of document.querySelectorAll(".gallery-item img")) {
      if (!img.getAttribute("alt")) img.setAttribute("alt", altText(img.getAttribute("src")));
    }
  };
  let queued = false;
  const schedule = () => {
    if (queued) return;
    queued = true;
    setTimeout(() => { queued = false; update(); }, 0);
  };
  const start = () => {
    update();
    new MutationObserver(schedule).observe(document.body, {childList: true, subtree: true, attributes: true,
                                                           attributeFilter: ["src", "alt"]});
  };
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
</script>"""


def example_names() -> dict[str, str]:
    """Readable names of the shipped example pictures whose file names abbreviate them: file stem -> name."""
    from txgallery.lib.images import fashion_mnist_examples

    try:
        examples = fashion_mnist_examples()
    except FileNotFoundError:  # a broken install still gets file-name alt texts
        return {}
    return {path.stem: f"Fashion-MNIST test image {int(path.stem.split('-', 1)[0].removeprefix('test'))}, {label}"
            for label, path in examples.items()}


def page_head() -> str:
    """What every page adds to its <head>: the script for the skip link and the example pictures' alt texts."""
    return HEAD_SCRIPT.replace("__KNOWN__", json.dumps(example_names()).replace("</", "<\\/"))


def lesson_order(entries: list[DemoEntry]) -> list[DemoEntry]:
    """The demos in the order of the lesson (`Demo.order`, then slug); broken plugins last."""
    return sorted(entries, key=lambda e: (e.demo is None, e.demo.order if e.demo else 0, e.slug))


def card_html(entry: DemoEntry, start: bool = False) -> str:
    """One landing-page card: title, description, tags and a link (`start`: marked as the place to begin); or the
    reason a plugin is broken."""
    if not entry.ok:
        return (f'<div class="tx-card tx-broken" data-demo="{html.escape(entry.slug)}">'
                f"<h3>⚠️ {html.escape(entry.name)}</h3><p>This demo could not be loaded.</p>"
                f"<p><code>{html.escape(entry.error or '')}</code></p>"
                f'<p style="font-size:12px">from {html.escape(entry.origin)}</p></div>')
    demo = entry.demo
    tags = "".join(f'<span class="tx-tag">{html.escape(t)}</span>' for t in demo.tags)
    broken = f"<p><b>⚠️ {html.escape(entry.error)}</b></p>" if entry.error else ""
    begin = '<span class="tx-start">Start here</span>' if start else ""
    return (f'<a class="tx-card{" tx-broken" if entry.error else ""}" href="{html.escape(demo.slug)}" '
            f'data-demo="{html.escape(demo.slug)}">{begin}<h3>{html.escape(demo.title)}</h3>'
            f"<p>{html.escape(demo.description)}</p>{broken}"
            f'<p style="font-size:13px;opacity:.8">Teaches: {html.escape(demo.topic)}</p>{tags}</a>')


def landing_html(entries: list[DemoEntry]) -> str:
    """The grid of demo cards, in the lesson's order, the first marked "Start here"."""
    ordered = lesson_order(entries)
    first = next((e for e in ordered if e.ok and not e.error), None)
    return '<div class="tx-cards">' + "".join(card_html(e, start=e is first) for e in ordered) + "</div>"


def models_markdown(entry: DemoEntry) -> str:
    """Which models the demo runs, where they come from and why — before anything is loaded."""
    lines = []
    context = page_context(entry.demo)
    for index, slot in enumerate(entry.demo.models):
        lines += [f"- {model_badge(source)}" for source in context.models[slot.name]]
        if slot.hub_example:
            key = entry.demo.slug if index == 0 else f"{entry.demo.slug}.{slot.name}"
            lines.append(f"- Online, whoever runs the gallery can add a hub model to compare: "
                         f"`--model {key}=embedded,{slot.hub_example}`, or `[demos.{key}]` in "
                         f"`txgallery.toml` (README, \"Configuration\")")
    return "\n".join(lines)


def render_page(entry: DemoEntry, blocks: gr.Blocks | None, following: DemoEntry | None = None) -> None:
    """The chrome around a demo: title and description, the models and tags (collapsed), lesson, the demo itself (or
    its error), then a link to the `following` demo of the lesson."""
    if entry.demo is None or blocks is None:
        gr.Markdown(f"# ⚠️ {entry.name}\nThis demo could not be loaded, so it is switched off. The rest of the "
                    f"gallery works.\n\n**Reason:** `{entry.error}`\n\n**From:** {entry.origin}")
        return
    demo = entry.demo
    with gr.Row(elem_classes=["tx-heading"], equal_height=False):
        gr.Markdown(f"# {demo.title}", elem_classes=["tx-title"])
        copy_link_button()  # the URL that the page's `deep_link` keeps in step with its inputs
    gr.Markdown(demo.description, elem_classes=["tx-description"])
    with gr.Row(elem_classes=["tx-chrome"], equal_height=False):  # one line of chrome: the first screen is the demo
        if demo.lesson:
            lesson_panel(demo.lesson)
        if demo.models or demo.tags:  # provenance for the curious
            with gr.Accordion("About this model" if demo.models else "About this demo", open=False,
                              elem_classes=["tx-about"]):
                if demo.models:
                    gr.Markdown(models_markdown(entry), elem_classes=["tx-models"])
                if demo.tags:
                    gr.Markdown(tag_line(demo.tags), elem_classes=["tx-tags"])
    with gr.Column(elem_id="tx-demo"):  # the skip link's target
        blocks.render()
    if following is not None and following.demo is not None:
        gr.Markdown(f"**Next:** [{following.demo.title}]({following.slug}) — {following.demo.topic}",
                    elem_classes=["tx-next"])
    waiting_notice()  # last: its host hides itself, and until then it sits below everything


def ping(text: str) -> str:
    """Echo endpoint: health checks, and the HTTP floor that benchmarks subtract."""
    return text


def name_handlers_after_endpoints(app: gr.Blocks) -> gr.Blocks:
    """Give each public endpoint's handler its endpoint's name: Gradio's MCP server names a tool after its handler's
    `__name__`, and the pages name their handlers for the page (`classify` on the sentiment and the ViT page)."""
    for event in app.fns.values():
        if event.fn is not None and event.api_visibility == "public" and isinstance(event.api_name, str):
            handler = getattr(event.fn, "__func__", event.fn)  # a bound method's function takes the name
            handler.__name__ = event.api_name
    return app


def build_gallery(entries: list[DemoEntry] | None = None, title: str = "txgallery") -> gr.Blocks:
    """The whole gallery as one `gr.Blocks` with a route per demo."""
    entries = discover_demos() if entries is None else entries
    built = {e.slug: build_entry(e) for e in entries}  # build first: a build failure turns the card red
    with gr.Blocks(title=title, delete_cache=(GRADIO_CACHE_SWEEP_S, GRADIO_CACHE_AGE_S)) as app:
        gr.Markdown(f"# {title}\nInteractive transformer demos. Every demo runs offline on an embedded model; "
                    "whoever runs the gallery can add Hugging Face Hub models (README, \"Configuration\").")
        presenter_bar(app)
        gr.HTML(landing_html(entries), elem_id="tx-landing")
        gr.api(ping, api_name="ping")
    ordered = lesson_order(entries)
    working = [e for e in ordered if e.ok and not e.error]
    for entry in ordered:
        following = working[working.index(entry) + 1] if entry in working[:-1] else None
        with app.route(entry.demo.title if entry.demo else f"⚠️ {entry.name}", f"/{entry.slug}"):
            presenter_bar(app)
            render_page(entry, built[entry.slug], following)
    return name_handlers_after_endpoints(app)


def build_single(entry: DemoEntry) -> gr.Blocks:
    """One demo alone, with the same chrome as in the gallery."""
    blocks = build_entry(entry)
    with gr.Blocks(title=entry.demo.title if entry.demo else entry.name,
                   delete_cache=(GRADIO_CACHE_SWEEP_S, GRADIO_CACHE_AGE_S)) as app:
        presenter_bar(app)
        render_page(entry, blocks)
        gr.api(ping, api_name="ping")
    return name_handlers_after_endpoints(app)


class PageSessionState(SessionState):
    """A session's state that makes a block's config when the session first needs it.

    Gradio's own makes the config of every block of the app when a session starts, and every plain API call is a new
    session: for the gallery, every block of all eight pages on each call (BENCHMARKS.md, "The gallery's echo").
    """

    def __init__(self, blocks: gr.Blocks):
        super().__init__(_ConfigOnly(blocks.default_config))  # the parent's eager loop then finds no block to do
        self.app_block_ids = blocks.blocks.keys()

    @property
    def components(self) -> Iterator[dict]:
        """Every block's config (what Gradio's deep-link route reads), made now for the blocks not made yet."""
        for key, block in self.blocks_config.blocks.items():
            if key in self.app_block_ids and key not in self.config_values:
                self.config_values[key] = self.blocks_config.config_for_block(key, [], block)
        return super().components


class _ConfigOnly:
    """What `SessionState.__init__` reads of a `Blocks`: its default config, and no block to make a config for."""

    def __init__(self, default_config: BlocksConfig) -> None:
        self.default_config = default_config
        self.blocks: dict[int, Block] = {}


class PageStateHolder(StateHolder):
    """Gradio's session store, with a `PageSessionState` per session."""

    def __getitem__(self, session_id: str) -> SessionState:
        if session_id not in self.session_data:
            self.session_data[session_id] = PageSessionState(self.blocks)
        return super().__getitem__(session_id)


def keep_sessions_light(app: gr.Blocks) -> gr.Blocks:
    """Make the sessions of a launched or mounted app `PageSessionState`s (before its first session)."""
    app.state_holder.__class__ = PageStateHolder  # Gradio's app and the Blocks share this one object; no session yet
    return app


# Gradio recomputes its monitoring summary (pandas, over up to 10,000 past events) after every event by default, which
# competes with the next requests on a small machine (BENCHMARKS.md, "ViT"); the summary only feeds Gradio's
# monitoring page, which can be that many events behind.
ANALYTICS_EVERY = 100


def queue(app: gr.Blocks, concurrency: int = DEFAULT_CONCURRENCY) -> gr.Blocks:
    """Gradio's queue with the gallery's queue size and concurrency, and the monitoring summary every 100 events.

    A `GRADIO_ANALYTICS_CACHE_FREQUENCY` the user set is kept.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(ANALYTICS_EVERY))  # read when the queue is made
    return app.queue(default_concurrency_limit=concurrency, max_size=QUEUE_SIZE)


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           block: bool = True, **kwargs) -> gr.Blocks:
    """Queue and launch with the gallery's limits (upload size, queue size, concurrency), styles and page script."""
    queue(app)
    app.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD_SIZE, css=CSS,
               head=page_head(), prevent_thread_lock=True, show_error=True, state_session_capacity=MAX_SESSIONS,
               **kwargs)
    keep_sessions_light(app)
    if block:
        app.block_thread()
    return app


def launch_one(demo, **kwargs) -> gr.Blocks:
    """Run one `Demo` alone (what `python -m txgallery_demos.NAME` does)."""
    return launch(build_single(DemoEntry(name=demo.slug, origin="direct", demo=demo)), **kwargs)
