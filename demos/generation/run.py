"""Generation studio: a decoder writes one token at a time; see every choice it makes and every knob that steers it.

Reads top to bottom: the lesson, the page's pure helpers, the models on offer and what each button runs, then the
page's parts and `build()` that wires them. The model runs in `service.py` (`TextGenerator`), the decoding loop in
`decoding.py`. Run alone: `python demos/generation/run.py`, `python -m txgallery_demos.generation` or
`txgallery serve --demo generation`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterator, NamedTuple

import gradio as gr
from txgallery_demos.generation.decoding import (
    GenerationUpdate,
    SamplingSettings,
    Step,
    check_settings,
    clean_prompt,
)
from txgallery_demos.generation.service import TextGenerator

from txgallery import (
    ApiCall,
    Demo,
    InputError,
    ModelSlot,
    PageContext,
    connect,
    page_context,
)
from txgallery.limits import (
    GENERATION_MAX_BEAMS,
    GENERATION_MAX_NEW_TOKENS,
    GENERATION_MAX_PROMPT_TOKENS,
)
from txgallery.models import store
from txgallery.models.hub import ModelLoadError, ModelSource
from txgallery.ui import (
    deep_link,
    examples_that_run,
    first_use_note,
    model_badge,
    user_errors,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SLUG = "generation"
TASK = "text-generation"
SHAKESPEARE = "embedded:gpt2-shakespeare"

LESSON = f"""
**Decoder-only transformers (GPT) generate text one token at a time.** The model reads the text so far — attending
only to the left, never to the future — and scores every token of its vocabulary as the next one. A *decoding
strategy* picks one, appends it, and the loop repeats; the keys and values of earlier tokens are cached
(the KV cache), so each new token costs one small forward pass.

- **Greedy** always takes the most likely token: deterministic, often repetitive.
- **Sampling** draws from the distribution after reshaping it: *temperature* sharpens (< 1) or flattens (> 1) it,
  *top-k* keeps the k likeliest tokens, *top-p* (nucleus) the smallest set holding p of the probability, the
  *repetition penalty* lowers tokens already in the text. The same seed gives the same draw.
- **Beam search** keeps the few best partial texts by total log-probability and extends them all.

Two models work offline: **SmolLM2-135M-Instruct** (a small Llama, pretrained on trillions of tokens, then tuned to
follow instructions: tick *chat template*), and **a GPT-2 pre-trained by txgallery** on 34 Shakespeare plays in
minutes (`txgallery train shakespeare-gpt2`) — the difference between web-scale pre-training and a small one is easy
to see. Online, any causal-LM hub id works (`gpt2`, `distilgpt2`, …).

**Try:** click a generated token to see the candidates it beat, before and after filtering; raise the temperature
until the text falls apart; compare greedy with sampling on the *Side by side* tab; press *Stop* mid-way.
Limits: at most {GENERATION_MAX_NEW_TOKENS} new tokens, prompts keep their last {GENERATION_MAX_PROMPT_TOKENS:,} tokens.
"""

EXAMPLES = [
    "Once upon a time, there was a little",
    "ROMEO:\nBut soft, what light",
    "The three most important ideas in machine learning are",
    "Write a haiku about the sea.",
]
STEP_HINT = "Click a generated token to see its step."


# --- pure helpers for the page ----------------------------------------------------------------------------------------


def read_settings(strategy: str, max_new_tokens: float, temperature: float, top_k: float, top_p: float,
                  repetition_penalty: float, num_beams: float, seed: float, chat: bool,
                  ) -> tuple[SamplingSettings, list[str]]:
    """The page's control values -> checked `SamplingSettings` and notices (raises `InputError`)."""
    values = {"max new tokens": max_new_tokens, "temperature": temperature, "top-k": top_k, "top-p": top_p,
              "repetition penalty": repetition_penalty, "beams": num_beams, "seed": seed}
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise InputError(f"Please set {', '.join(missing)}.")
    return check_settings(SamplingSettings(
        strategy={"greedy": "greedy", "sampling": "sample", "beam search": "beam"}.get(strategy, strategy),
        max_new_tokens=int(max_new_tokens), temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
        repetition_penalty=float(repetition_penalty), num_beams=int(num_beams), seed=int(seed), chat=bool(chat)))


# which sliders each decoding strategy reads (the repetition penalty applies to all three, so it is never switched off)
USED_BY = {"temperature": "sampling", "top_k": "sampling", "top_p": "sampling", "beams": "beam search"}
# the colour `gr.HighlightedText` gives a numeric score p in [0, 1] (Gradio's scores mode): this red at opacity p
PROBABILITY_RGB = "239, 68, 60"
PROBABILITY_LEGEND = (
    '<div class="tx-legend" style="display:flex;flex-wrap:wrap;align-items:center;gap:0.5em;font-size:0.85em">'
    "<span>Colour = the model's probability of each token:</span><span>low (p ≈ 0)</span>"
    f'<span aria-hidden="true" style="display:inline-block;width:9em;height:0.9em;border:1px solid #8a8a8a;'
    f'border-radius:3px;background:linear-gradient(to right, rgba({PROBABILITY_RGB}, 0), rgba({PROBABILITY_RGB}, 1))">'
    "</span><span>high (p = 1)</span></div>")


def knob_settings(strategy: str) -> dict[str, dict]:
    """Per slider of `USED_BY`: whether `strategy` reads it (interactive) and an `info` line saying where it is used."""
    return {knob: {"interactive": mode == strategy, "info": f"used in {mode} mode" if mode == strategy
                   else f"not used in {strategy} mode, only in {mode}"} for knob, mode in USED_BY.items()}


def knob_updates(strategy: str) -> list[dict]:
    """`knob_settings` as Gradio updates for the temperature, top-k, top-p and beams sliders, in that order."""
    return [gr.update(**values) for values in knob_settings(strategy).values()]


def visible(text: str) -> str:
    """A token as it should be read in a table: spaces and line breaks made visible."""
    return text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅"


def highlighted(steps: list[Step]) -> list[tuple[str, float]]:
    """Generated tokens for `gr.HighlightedText`, each coloured by the model's probability of it."""
    return [(step.text or step.token, round(math.exp(step.logprob), 3)) for step in steps]


def stats_line(update: GenerationUpdate | None, stopped: bool = False) -> str:
    """Prompt perplexity, time to first token, tokens/s and why the generation ended."""
    if update is None:
        return ""
    parts = []
    if update.prompt:
        ppl = f", perplexity **{update.prompt.perplexity:.1f}**" if update.prompt.perplexity else ""
        parts.append(f"prompt: {update.prompt.tokens} tokens{ppl}")
    if update.status and not update.done:
        parts.append(update.status)
    if update.tokens:
        parts.append(f"generated: **{update.tokens}** tokens")
    if update.ttft_s is not None:
        parts.append(f"first token after **{update.ttft_s * 1000:.0f} ms**")
    if update.tokens_per_s:
        parts.append(f"**{update.tokens_per_s:.1f} tokens/s**")
    if update.beam_score is not None and update.done:
        parts.append(f"beam score (mean log p) {update.beam_score:.3f}")
    if stopped:
        parts.append("⏹ stopped")
    elif update.done:
        parts.append(f"finished: {update.finish_reason}")
    return " · ".join(parts)


def step_markdown(step: Step) -> str:
    """One step in words: the token, its log-probability, and how many candidates survived the filtering."""
    p = math.exp(step.logprob)
    text = (f"**Step {step.index + 1}:** `{visible(step.token)}` (id {step.token_id}) · log p = **{step.logprob:.3f}**"
            f" (p = {p:.3f} under the model)")
    if step.after:
        text += (f" · chosen with p = {step.probability_after:.3f} from the {step.kept:,} token"
                 f"{'s' if step.kept != 1 else ''} left after filtering")
    else:
        text += " · beam search: no per-step filtering, the beams with the best total log-probability won"
    return text


def step_table(step: Step) -> list[list]:
    """Rows (token, probability before, probability after) for the top candidates of both distributions."""
    after = {c.token_id: c.probability for c in step.after}
    ids = [c.token_id for c in step.before] + [c.token_id for c in step.after if c.token_id not in
                                                {b.token_id for b in step.before}]
    before = {c.token_id: c.probability for c in step.before}
    tokens = {c.token_id: c.token for c in [*step.before, *step.after]}
    return [[("▶ " if i == step.token_id else "") + visible(tokens[i]), round(before.get(i, float("nan")), 4),
             round(after.get(i, 0.0), 4) if step.after else None] for i in ids]


def step_figure(step: Step) -> Figure:
    """Bar chart of the top candidates before and after filtering (matplotlib, no pyplot state)."""
    from matplotlib.figure import Figure

    rows = step_table(step)[:12]
    fig = Figure(figsize=(7, 3.2), layout="constrained")
    ax = fig.add_subplot()
    y = range(len(rows))
    ax.barh([i + 0.2 for i in y], [r[1] if r[1] == r[1] else 0 for r in rows], height=0.4, label="model (before)",
            color="#9aa5b1")
    if step.after:
        ax.barh([i - 0.2 for i in y], [r[2] or 0 for r in rows], height=0.4, label="after filtering", color="#e4572e")
    ax.set_yticks(list(y), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("probability")
    ax.legend(loc="lower right", fontsize=8)
    return fig


# --- the models on offer, and what the page's events run ----------------------------------------------------------


def offered_generators(ctx: PageContext) -> list[tuple[str, ModelSource | ModelLoadError, Any]]:
    """(name, source or error, service or None) for every model on offer: the configured ones, else both embedded."""
    generators = ctx.services(TextGenerator)
    if "model" not in ctx.configured:
        shakespeare = store.resolve(SHAKESPEARE, TASK, "the demo's second embedded model (pre-trained by txgallery)")
        generators.append((shakespeare.ref, shakespeare, connect(TextGenerator, shakespeare)))
    return generators


def generator_for(name: str, configured: dict[str, tuple], ctx: PageContext) -> Any:
    """The service for a model picked from the list, or typed on the page (embedded names; hub ids the operator allows).

    A typed model is resolved with `ctx.typed_model`, so a page can never name a local path, and loads on first
    use; whatever it is, a model that cannot continue text left to right is refused with a message.
    """
    if name in configured:
        source, service = configured[name]
        if service is None:  # `offered_generators` leaves the service out only for a model that failed to resolve
            raise source
        return service
    return connect(TextGenerator, ctx.typed_model(name, TASK))


def notice_lines(notices: list[str]) -> str:
    """Notices as the page's notice panel shows them, one a line."""
    return "\n".join(f"ℹ️ {notice}" for notice in notices)


class Studio:
    """What the page's events run, over the models on offer (plain methods: testable without a browser)."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        self.offered = offered_generators(ctx)
        self.by_name = {name: (source, service) for name, source, service in self.offered}
        self.names = [name for name, _, _ in self.offered]

    def service(self, name: str) -> Any:
        """The service of the model picked or typed on the page."""
        return generator_for((name or "").strip(), self.by_name, self.ctx)

    def first_use(self, name: str) -> str | None:
        """What a listed model's first use will do and take, while it is still due (see `ui.first_use_note`)."""
        return first_use_note(self.by_name.get(name, (None,))[0])

    @user_errors
    def badge(self, name: str) -> str:
        """Which model answers, or why this one cannot (a typed model loads here)."""
        try:
            return self.service(name).describe()
        except (ModelLoadError, InputError) as exc:
            return model_badge(ModelLoadError(f"`{name}`: {exc}"))

    @user_errors
    def generate(self, model: str, prompt: str, chat: bool, max_new_tokens: int, seed: int, decoding: str,
                 temperature: float, top_k: int, top_p: float, repetition_penalty: float, beams: int,
                 ) -> Iterator[tuple]:
        """Stream one generation: (badge, notice, statistics, coloured tokens, steps so far) after each token."""
        service = self.service(model)
        cleaned, notices = clean_prompt(prompt)
        settings, more = read_settings(decoding, max_new_tokens, temperature, top_k, top_p, repetition_penalty, beams,
                                       seed, chat)
        steps: list[Step] = []
        if note := self.first_use(model):
            yield gr.skip(), f"⏳ {note}", gr.skip(), gr.skip(), gr.skip()
        stream = service.generate(cleaned, settings, notices + more)
        try:
            for update in stream:
                steps.extend(update.steps)
                yield (service.describe() if update.done else gr.skip(), notice_lines(update.notices),
                       stats_line(update), highlighted(steps), steps)
        finally:
            stream.close()  # a Stop (cancel) lands here: the service stops at its next token

    @user_errors
    def compare(self, model: str, prompt: str, chat: bool, max_new_tokens: int, seed: int,
                decoding_a: str, temperature_a: float, top_k_a: int, top_p_a: float, repetition_penalty_a: float,
                beams_a: int, decoding_b: str, temperature_b: float, top_k_b: int, top_p_b: float,
                repetition_penalty_b: float, beams_b: int) -> Iterator[tuple]:
        """Stream two settings side by side: (notice, statistics A, tokens A, statistics B, tokens B)."""
        service = self.service(model)
        cleaned, notices = clean_prompt(prompt)
        first, notes_a = read_settings(decoding_a, max_new_tokens, temperature_a, top_k_a, top_p_a,
                                       repetition_penalty_a, beams_a, seed, chat)
        second, notes_b = read_settings(decoding_b, max_new_tokens, temperature_b, top_k_b, top_p_b,
                                        repetition_penalty_b, beams_b, seed, chat)
        steps: tuple[list[Step], list[Step]] = ([], [])
        last: list[GenerationUpdate | None] = [None, None]
        notes = [*notices, *(f"A: {n}" for n in notes_a), *(f"B: {n}" for n in notes_b)]
        if note := self.first_use(model):
            yield f"⏳ {note}", gr.skip(), gr.skip(), gr.skip(), gr.skip()
        stream = service.compare(cleaned, first, second)
        try:
            for which, update in stream:
                steps[which].extend(update.steps)
                last[which] = update
                notes += [n for n in update.notices if n not in notes]
                yield (notice_lines(notes), stats_line(last[0]), highlighted(steps[0]), stats_line(last[1]),
                       highlighted(steps[1]))
        finally:
            stream.close()


@user_errors
def show_step(steps: list[Step], event: gr.SelectData) -> tuple:
    """The clicked token's step: in words, as a chart and as a table."""
    index = event.index if isinstance(event.index, int) else event.index[0]
    if not steps or not 0 <= index < len(steps):
        raise InputError("Generate some text first, then click one of its tokens.")
    step = steps[index]
    return step_markdown(step), step_figure(step), step_table(step)


def cleared_step() -> tuple[str, None, None]:
    """The step inspector before a token is clicked (a new run's tokens replace the old ones)."""
    return STEP_HINT, None, None


# --- the page's parts ------------------------------------------------------------------------------------------------


def decoding_controls(prefix: str, strategy: str = "greedy") -> list[gr.components.Component]:
    """Decoding strategy and its sliders (strategy, temperature, top-k, top-p, penalty, beams); unused ones grey out."""
    with gr.Row():
        choice = gr.Radio(["greedy", "sampling", "beam search"], value=strategy, label="Decoding",
                          elem_id=f"{prefix}-strategy")
    first = knob_settings(strategy)
    with gr.Row():
        temperature = gr.Slider(0, 2, value=0.8, step=0.05, label="Temperature", elem_id=f"{prefix}-temperature",
                                **first["temperature"])
        top_k = gr.Slider(0, 200, value=50, step=1, precision=0, label="Top-k (0 = off)", elem_id=f"{prefix}-top-k",
                          **first["top_k"])
        top_p = gr.Slider(0.05, 1, value=0.95, step=0.01, label="Top-p (1 = off)", elem_id=f"{prefix}-top-p",
                          **first["top_p"])
    with gr.Row():
        penalty = gr.Slider(0.5, 2, value=1.0, step=0.05, label="Repetition penalty (1 = off)",
                            info="used in every mode")
        beams = gr.Slider(1, GENERATION_MAX_BEAMS, value=4, step=1, precision=0, label="Beams (beam search)",
                          elem_id=f"{prefix}-beams", **first["beams"])
    # UI only and instant: no queue, no public endpoint; a restored link's Decoding fires it too
    choice.change(knob_updates, choice, [temperature, top_k, top_p, beams], api_name=False, queue=False,
                  show_progress="hidden")
    return [choice, temperature, top_k, top_p, penalty, beams]


class GenerateTab(NamedTuple):
    """The *Generate* tab's components."""

    prompt: gr.Textbox
    run: gr.Button
    stop: gr.Button
    chat: gr.Checkbox
    max_new: gr.Slider
    seed: gr.Number
    knobs: list[gr.components.Component]  # as `decoding_controls` returns them
    notice: gr.Markdown
    stats: gr.Markdown
    output: gr.HighlightedText
    step_info: gr.Markdown
    step_plot: gr.Plot
    step_rows: gr.Dataframe
    steps: gr.State


def generate_tab() -> GenerateTab:
    """One streaming generation with every control, and the step inspector under it."""
    with gr.Tab("Generate"):
        with gr.Row():
            with gr.Column(scale=3):  # prompt, button and examples first; settings beside (below on phones)
                prompt = gr.Textbox(label="Prompt", lines=3, value=EXAMPLES[0], elem_id="generation-prompt")
                with gr.Row():
                    run = gr.Button("Generate", variant="primary", elem_id="generation-run")
                    stop = gr.Button("Stop", variant="stop", elem_id="generation-stop")
                examples_that_run(EXAMPLES, prompt, run)
            with gr.Column(scale=2):
                # a row of its own (squeezed between the chat template and the seed, its maximum was cut off), first
                max_new = gr.Slider(1, GENERATION_MAX_NEW_TOKENS, value=48, step=1, precision=0, label="Max new tokens")
                with gr.Row():
                    chat = gr.Checkbox(label="Chat template (instruct models)", value=False)
                    seed = gr.Number(value=0, precision=0, label="Seed")
                knobs = decoding_controls("generation")
        notice = gr.Markdown(label="Notice", elem_id="generation-notice")
        stats = gr.Markdown(label="Statistics", elem_id="generation-stats")
        output = gr.HighlightedText(label="Generated tokens — colour: the model's probability of each; click one",
                                    show_legend=False, show_inline_category=False, combine_adjacent=False,
                                    elem_id="generation-output")
        gr.HTML(PROBABILITY_LEGEND, js_on_load=None, elem_id="generation-legend")
        step_info = gr.Markdown(STEP_HINT, elem_id="generation-step")
        with gr.Row():
            step_plot = gr.Plot(label="Top candidates at this step",
                                elem_classes=["tx-wide-figure"])  # legible on a phone, scrolled sideways
            step_rows = gr.Dataframe(headers=["token", "p (model)", "p (after filtering)"], label="Candidates",
                                     wrap=True)
        steps = gr.State([])
    return GenerateTab(prompt, run, stop, chat, max_new, seed, knobs, notice, stats, output, step_info, step_plot,
                       step_rows, steps)


class CompareTab(NamedTuple):
    """The *Side by side* tab's components."""

    prompt: gr.Textbox
    chat: gr.Checkbox
    max_new: gr.Slider
    seed: gr.Number
    knobs_a: list[gr.components.Component]
    knobs_b: list[gr.components.Component]
    stats_a: gr.Markdown
    output_a: gr.HighlightedText
    stats_b: gr.Markdown
    output_b: gr.HighlightedText
    run: gr.Button
    stop: gr.Button
    notice: gr.Markdown


def compare_side(name: str, strategy: str) -> tuple[list[gr.components.Component], gr.Markdown, gr.HighlightedText]:
    """One column of the *Side by side* tab: its decoding controls, statistics and tokens."""
    with gr.Column():
        gr.Markdown(f"**Setting {name}**")
        knobs = decoding_controls(f"generation-{name.lower()}", strategy)
        stats = gr.Markdown(label=f"Statistics — {name}", elem_id=f"generation-stats-{name.lower()}")
        output = gr.HighlightedText(label=name, show_legend=False, show_inline_category=False,
                                    elem_id=f"generation-output-{name.lower()}")
    return knobs, stats, output


def compare_tab() -> CompareTab:
    """The same prompt, seed and length with two settings, streaming at once."""
    with gr.Tab("Side by side"):
        gr.Markdown("The same prompt, seed and length with two settings; both stream at once.")
        prompt = gr.Textbox(label="Prompt", lines=2, value=EXAMPLES[1], elem_id="generation-compare-prompt")
        with gr.Row():
            chat = gr.Checkbox(label="Chat template", value=False)
            max_new = gr.Slider(1, GENERATION_MAX_NEW_TOKENS, value=40, step=1, precision=0, label="Max new tokens")
            seed = gr.Number(value=0, precision=0, label="Seed")
        with gr.Row():
            knobs_a, stats_a, output_a = compare_side("A", "greedy")
            knobs_b, stats_b, output_b = compare_side("B", "sampling")
        gr.HTML(PROBABILITY_LEGEND, js_on_load=None, elem_id="generation-compare-legend")
        with gr.Row():
            run = gr.Button("Generate both", variant="primary", elem_id="generation-compare-run")
            stop = gr.Button("Stop", variant="stop")
        notice = gr.Markdown(label="Notice")
    return CompareTab(prompt, chat, max_new, seed, knobs_a, knobs_b, stats_a, output_a, stats_b, output_b, run, stop,
                      notice)


# --- the page ---------------------------------------------------------------------------------------------------------


def build(ctx: PageContext) -> gr.Blocks:
    """The generation page: streaming generation with every control, per-step view, side by side."""
    studio = Studio(ctx)
    with gr.Blocks(title="Generation studio") as page:
        with gr.Row(elem_classes=["tx-stack-on-phone"]):  # side by side, the picker cut the model's name short
            model = gr.Dropdown(studio.names, value=studio.names[0], scale=1, allow_custom_value=True,
                                label="Model (or type a hub id the operator allows)", elem_id="generation-model")
            badge = gr.Markdown(model_badge(studio.offered[0][1]), label="About the model", elem_id="generation-badge")
        one, two = generate_tab(), compare_tab()

        model.change(studio.badge, model, badge, api_name=False)
        started = [one.run.click, one.prompt.submit]
        generating = gr.on(started, studio.generate, inputs=[model, one.prompt, one.chat, one.max_new, one.seed,
                                                             *one.knobs],
                           outputs=[badge, one.notice, one.stats, one.output, one.steps],
                           api_name="generation_generate", concurrency_id="generation")
        one.stop.click(None, cancels=[generating])
        one.output.select(show_step, one.steps, [one.step_info, one.step_plot, one.step_rows], api_name=False)
        gr.on(started, cleared_step, outputs=[one.step_info, one.step_plot, one.step_rows], api_name=False,
              queue=False)
        comparing = two.run.click(studio.compare, inputs=[model, two.prompt, two.chat, two.max_new, two.seed,
                                                          *two.knobs_a, *two.knobs_b],
                                  outputs=[two.notice, two.stats_a, two.output_a, two.stats_b, two.output_b],
                                  api_name="generation_compare", concurrency_id="generation")
        two.stop.click(None, cancels=[comparing])
        knob_keys = ["decoding", "temperature", "top_k", "top_p", "penalty", "beams"]
        deep_link(page, {"model": model, "prompt": one.prompt, "chat": one.chat, "max_new": one.max_new,
                         "seed": one.seed, **dict(zip(knob_keys, one.knobs))}, run=one.run)
    return page


demo = Demo(
    slug=SLUG,
    order=30,
    title="Generation studio",
    description="Watch a decoder write token by token: greedy, sampling, beam search, and every candidate it weighed.",
    build=build,
    tags=("decoder", "GPT", "generation", "sampling", "beam search", "KV cache", "pre-training"),
    topic="Decoder-only transformers: GPT and text generation",
    lesson=LESSON,
    models=(ModelSlot(task=TASK, default="embedded", hub_example="gpt2"),),
    # short completions from each model on offer: greedy, and sampling with every filter on
    traffic=(ApiCall("generation_generate", lambda: (offered_generators(page_context(demo))[-1][0], EXAMPLES[1], False,
                                                     16, 0, "greedy", 0.8, 50, 0.95, 1.0, 4)),
             ApiCall("generation_generate", lambda: (offered_generators(page_context(demo))[0][0], EXAMPLES[0], False,
                                                     8, 1, "sampling", 0.8, 50, 0.9, 1.1, 4))),
)


if __name__ == "__main__":  # `python demos/generation/run.py` serves this demo alone
    from txgallery.gallery import launch_one

    launch_one(demo)
