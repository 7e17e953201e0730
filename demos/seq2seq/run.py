"""Encoder–decoder text-to-text (T5/BART): a prefixed text in, generated text out, and where the decoder looked.

Reads top to bottom: the lesson, the tasks a model knows, the input checks and attention maths as plain functions,
the panels, then `build(ctx)` that wires them. The model service, `TextToText`, is in `service.py`. Run alone:
`python demos/seq2seq/run.py` or `txgallery serve --demo seq2seq`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
from matplotlib.figure import Figure
from txgallery_demos.seq2seq.service import (
    GenerationSettings,
    Seq2SeqResult,
    TextToText,
    model_config,
)

from txgallery.lib.attention_views import attention_heatmap
from txgallery.lib.text import clean_text
from txgallery.limits import (
    MAX_SEQ2SEQ_BEAMS,
    MAX_SEQ2SEQ_NEW_TOKENS,
    MAX_SEQ2SEQ_SOURCE_TOKENS,
    InputError,
)
from txgallery.models.hub import ModelLoadError, ModelSource
from txgallery.plugin import ApiCall, Demo, ModelSlot, PageContext, page_context
from txgallery.ui import (
    deep_link,
    examples_that_run,
    loaded_badge,
    model_badge,
    user_errors,
)

SLUG = "seq2seq"
TASK = "text2text-generation"

LESSON = f"""
**Encoder–decoder transformers (T5, BART): every task is text in, text out.** The *encoder* reads the whole input
at once, in both directions, like BERT. The *decoder* writes the output one token at a time, like GPT, but each of
its layers also has **cross-attention**: its queries come from the output written so far, its keys and values from
the encoder's final states. The heatmap below shows it — one row per generated token, one column per input token.

T5 names the task in the input with a prefix: `sst2 sentence: …` (sentiment, GLUE's SST-2), `summarize: …`,
`translate English to German: …`. BART is the same shape with a different pre-training (denoising whole
documents); `facebook/bart-large-cnn` summarises news.

The embedded model is a small T5 (2 encoder layers + 1 decoder layer, 1.0M weights) that txgallery trains from scratch
(`txgallery train t5`) on Rotten Tomatoes sentences, with two prefixes built from the same data: `sst2 sentence:`
→ `positive`/`negative`, and `fill:` — a span cut out and replaced by `<extra_id_0>` → the missing words, which
is T5's own pre-training objective. It knows nothing else: summaries and translations need a hub model
(`t5-small`, `google/flan-t5-small`, `facebook/bart-large-cnn`), which whoever runs the gallery can add.

**Try:** a review with `sst2 sentence:` and look at which words the `positive`/`negative` row attends to; the
`fill:` task with `___` where a word is missing; *beam search* against *greedy*; layers and heads one by one
(some heads look at the sentinel, some at the neighbours of the gap). Limits: {MAX_SEQ2SEQ_SOURCE_TOKENS} input
tokens, {MAX_SEQ2SEQ_NEW_TOKENS} new tokens, {MAX_SEQ2SEQ_BEAMS} beams.
"""

# every prefix the page knows, offered for a model that declares no tasks (FLAN-T5 follows instructions)
TASK_PREFIXES = {
    "sentiment (sst2 sentence:)": "sst2 sentence: ",
    "fill in the blank (fill:)": "fill: ",
    "summarize (summarize:)": "summarize: ",
    "translate to German (translate English to German:)": "translate English to German: ",
    "no prefix (the text as it is)": "",
}
# the names under which checkpoints declare their tasks (`task_specific_params`), as the page shows them
TASK_NAMES = {"sentiment": "sentiment", "fill": "fill in the blank", "summarization": "summarize",
              "translation_en_to_de": "translate to German", "translation_en_to_fr": "translate to French",
              "translation_en_to_ro": "translate to Romanian"}
HUB_FOR_OTHER_TASKS = "t5-small"  # declares summarisation and translation
# addressed to whoever runs the gallery (a visitor of a hosted gallery runs no command); no code span at its end,
# which a narrow screen wrapped away from the closing full stop
WHO_ADDS_THE_HUB_MODEL = (f"Whoever runs the gallery can add a hub model that was, such as {HUB_FOR_OTHER_TASKS}: "
                          f"`--model {SLUG}=embedded,{HUB_FOR_OTHER_TASKS}`, or `[demos.{SLUG}]` in txgallery.toml "
                          "(README, \"Configuration\").")

SENTINEL = "<extra_id_0>"
BLANK = "___"

EXAMPLES = [
    ["A gripping, beautifully acted film that stays with you long after the credits.", "sentiment (sst2 sentence:)"],
    ["The plot is a mess and the jokes fall flat; I checked my watch twice.", "sentiment (sst2 sentence:)"],
    ["a ___ film about love , loss and the people we leave behind .", "fill in the blank (fill:)"],
    ["the performances are ___ but the script lets everyone down .", "fill in the blank (fill:)"],
]

# model name -> (source or why it cannot run, service or None): the page's models, from `ctx.services`
Services = dict[str, tuple[ModelSource | ModelLoadError, Any]]


# --- the tasks a model knows ---------------------------------------------------------------------------------------


def declared_tasks(config: dict) -> dict[str, str]:
    """The tasks a model was trained for, label -> prefix, from its config's `task_specific_params` (as T5 and BART
    checkpoints declare them); every known prefix when it declares none."""
    tasks = {}
    for name, params in (config.get("task_specific_params") or {}).items():
        prefix = (params or {}).get("prefix", "")
        tasks[f"{TASK_NAMES.get(name, name.replace('_', ' '))} ({prefix.strip() or 'no prefix'})"] = prefix
    return tasks or dict(TASK_PREFIXES)


def check_task(task: str, tasks: dict[str, str], model: str) -> str:
    """The prefix of `task`, or a message that the model was not trained for it and which hub model is."""
    if task not in tasks:
        raise InputError(f"`{model}` was not trained for “{task}”; it knows: {', '.join(tasks)}. "
                         + WHO_ADDS_THE_HUB_MODEL)
    return tasks[task]


def other_tasks_note(tasks: dict[str, str]) -> str:
    """What the model was not trained for, and the hub model that was (empty when it knows every task)."""
    missing = [label.split(" (")[0] for label in TASK_PREFIXES if label not in tasks and "no prefix" not in label]
    return f"This model was not trained to {' or '.join(missing)}. {WHO_ADDS_THE_HUB_MODEL}" if missing else ""


# --- input handling (pure functions) -----------------------------------------------------------------------------


def _whole_number_within(value: float | None, cap: int) -> bool:
    return value is not None and int(value) == value and 1 <= value <= cap


def check_settings(max_new_tokens: float | None, num_beams: float | None) -> GenerationSettings:
    """Validate the decoding controls; raises `InputError` beyond the caps."""
    if not _whole_number_within(max_new_tokens, MAX_SEQ2SEQ_NEW_TOKENS):
        raise InputError(f"Max new tokens must be a whole number from 1 to {MAX_SEQ2SEQ_NEW_TOKENS}; "
                         f"got {max_new_tokens}.")
    if not _whole_number_within(num_beams, MAX_SEQ2SEQ_BEAMS):
        raise InputError(f"Beams must be a whole number from 1 to {MAX_SEQ2SEQ_BEAMS}; got {num_beams}.")
    return GenerationSettings(int(max_new_tokens), int(num_beams))


def task_input(text: str | None, prefix: str) -> tuple[str, str | None]:
    """The model's input: prefix + text (huge text cut, with a notice); `___` becomes T5's span sentinel."""
    text, notice = clean_text(text)
    text = text.replace(BLANK, SENTINEL)
    if prefix == TASK_PREFIXES["fill in the blank (fill:)"] and SENTINEL not in text:
        raise InputError(f"The fill task needs a gap: write {BLANK} (or {SENTINEL}) where words are missing.")
    return prefix + text, notice


def beams_setting(how: str) -> dict:
    """The Beams slider for a decoding mode: interactive in beam search only (greedy keeps one beam), saying so."""
    beam = how == "beam search"
    return {"interactive": beam, "info": "used in beam search" if beam else "not used in greedy decoding (one beam)"}


# --- the attention maps ------------------------------------------------------------------------------------------


def fuse_heads(attention: np.ndarray, layer: int | None, head: int | None) -> np.ndarray:
    """One (target × source) matrix from (layers, heads, target, source): a layer's head, or averages."""
    chosen = attention if layer is None else attention[layer : layer + 1]
    chosen = chosen.mean(axis=0)
    return chosen.mean(axis=0) if head is None else chosen[head]


def attention_figures(result: Seq2SeqResult | None, layer: str, head: str) -> tuple[Figure | None, Figure | None]:
    """The cross-attention and encoder self-attention heatmaps for the chosen layer and head."""
    if result is None:
        return None, None
    layer_index = None if layer == "average" else int(layer)
    head_index = None if head == "average" else int(head)
    where = f"layer {layer}, head {head}".replace("layer average", "all layers")
    where = where.replace("head average", "mean of heads")
    cross = attention_heatmap(fuse_heads(result.cross_attention, layer_index, head_index), result.target_tokens,
                              result.source_tokens, f"Cross-attention: output (rows) × input (columns) — {where}")
    # the encoder may have more layers and heads than the decoder: the nearest one that exists
    encoder_layer = None if layer_index is None else min(layer_index, result.encoder_attention.shape[0] - 1)
    encoder_head = None if head_index is None else min(head_index, result.encoder_attention.shape[1] - 1)
    encoder = attention_heatmap(fuse_heads(result.encoder_attention, encoder_layer, encoder_head),
                                result.source_tokens, result.source_tokens, f"Encoder self-attention — {where}")
    return cross, encoder


# --- what the page answers ---------------------------------------------------------------------------------------


def generate_text(services: Services, tasks: dict[str, dict[str, str]], text: str, task: str, model: str,
                  decoding: str, beams: float, max_new_tokens: float) -> tuple[Seq2SeqResult, str, str]:
    """Check the inputs, generate with the chosen model, and say what happened: the result, the notice, the badge."""
    settings = check_settings(max_new_tokens, 1 if decoding == "greedy" else beams)
    source, service = services[model]
    if service is None:
        raise source
    source_text, notice = task_input(text, check_task(task, tasks[model], model))
    result = service.generate(source_text, settings)
    if result.truncated:
        notice = f"{notice or ''} Only the first {MAX_SEQ2SEQ_SOURCE_TOKENS} tokens were read.".strip()
    timing = f"{len(result.output_ids)} tokens in {result.seconds * 1000:.0f} ms ({decoding})"
    return result, (f"ℹ️ {notice} · {timing}" if notice else timing), loaded_badge(service, source)


# --- the panels (each returns the components it makes) ---------------------------------------------------------------


@dataclass
class InputPanel:
    """The text, the task prefix, the button and the note on tasks this model was not trained for."""

    text: gr.Textbox
    task: gr.Dropdown
    run: gr.Button
    other_tasks: gr.Markdown


def input_panel(tasks: dict[str, str]) -> InputPanel:
    """The input, the first model's tasks, and examples that run when clicked."""
    text = gr.Textbox(label="Text", lines=4, placeholder="Type a review, or a sentence with ___ for fill…",
                      max_length=None, elem_id="seq2seq-text")
    task = gr.Dropdown(list(tasks), value=list(tasks)[0], elem_id="seq2seq-task",
                       label="Task (the ones this model was trained for)")
    run = gr.Button("Generate", variant="primary", elem_id="seq2seq-run")
    examples_that_run(EXAMPLES, [text, task], run)
    return InputPanel(text, task, run, gr.Markdown(other_tasks_note(tasks), elem_id="seq2seq-other-tasks"))


@dataclass
class DecodingPanel:
    """Which model (when there are several), greedy or beam search, the beams and the output's length."""

    model: gr.Dropdown
    decoding: gr.Radio
    beams: gr.Slider
    max_new: gr.Slider


def decoding_panel(names: list[str]) -> DecodingPanel:
    """The decoding settings, Beams disabled until beam search is chosen."""
    return DecodingPanel(
        model=gr.Dropdown(names, value=names[0], label="Model", visible=len(names) > 1),
        decoding=gr.Radio(["greedy", "beam search"], value="greedy", label="Decoding", elem_id="seq2seq-decoding"),
        beams=gr.Slider(2, MAX_SEQ2SEQ_BEAMS, value=4, step=1, precision=0, label="Beams (beam search)",
                        elem_id="seq2seq-beams", **beams_setting("greedy")),
        max_new=gr.Slider(1, MAX_SEQ2SEQ_NEW_TOKENS, value=16, step=1, precision=0, label="Max new tokens"))


@dataclass
class ResultsPanel:
    """The notice, the output, the layer and head chosen, both heatmaps, the model badge and the last result."""

    notice: gr.Markdown
    output: gr.Textbox
    layer: gr.Dropdown
    head: gr.Dropdown
    cross_plot: gr.Plot
    encoder_plot: gr.Plot
    badge: gr.Markdown
    result: gr.State


def results_panel(source: ModelSource | ModelLoadError) -> ResultsPanel:
    """The output, then the attention maps with their layer and head, then the badge of `source`."""
    notice = gr.Markdown(label="Notice", elem_id="seq2seq-notice")
    output = gr.Textbox(label="Output", interactive=False, elem_id="seq2seq-output")
    with gr.Row():
        layer = gr.Dropdown(["average"], value="average", label="Layer", elem_id="seq2seq-layer")
        head = gr.Dropdown(["average"], value="average", label="Head", elem_id="seq2seq-head")
    wide = ["tx-wide-figure"]  # on a phone the figure keeps a legible size and scrolls sideways (the gallery's CSS)
    with gr.Tab("Cross-attention (decoder × encoder)"):
        cross_plot = gr.Plot(label="Cross-attention", elem_id="seq2seq-cross", elem_classes=wide)
    with gr.Tab("Encoder self-attention"):
        encoder_plot = gr.Plot(label="Encoder self-attention", elem_id="seq2seq-encoder", elem_classes=wide)
    # under the results it explains
    badge = gr.Markdown(model_badge(source), label="About the model", elem_id="seq2seq-badge")
    return ResultsPanel(notice, output, layer, head, cross_plot, encoder_plot, badge, gr.State(None))


# --- the events ---------------------------------------------------------------------------------------------------


def answer_generate(inputs: InputPanel, controls: DecodingPanel, results: ResultsPanel, services: Services,
                    tasks: dict[str, dict[str, str]]) -> None:
    """Generate on click or Enter, offering the result's layers and heads; redraw when a layer or head is chosen."""

    @user_errors
    def generate(text: str, task: str, model: str, decoding: str, beams: int, max_new_tokens: int):
        """Generate the output of an encoder–decoder model for a text with a task prefix, greedy or by beam search: the
        model's badge, a notice, the output text, the layer and head choices ('average' or an index), and the cross-
        attention and encoder self-attention heatmaps."""
        result, notice, badge = generate_text(services, tasks, text, task, model, decoding, beams, max_new_tokens)
        cross, encoder = attention_figures(result, "average", "average")
        layers, heads = result.cross_attention.shape[:2]
        return (badge, notice, result.text or "(empty)",
                gr.Dropdown(["average", *map(str, range(layers))], value="average"),
                gr.Dropdown(["average", *map(str, range(heads))], value="average"), cross, encoder, result)

    @user_errors
    def redraw(result: Seq2SeqResult | None, layer: str, head: str):
        """The cross-attention and encoder self-attention heatmaps of the session's last /seq2seq_generate for one layer
        and head: 'average', or an index as a string ('0', '1', …) that /seq2seq_generate offered."""
        return attention_figures(result, layer, head)

    gr.on([inputs.run.click, inputs.text.submit], generate,
          inputs=[inputs.text, inputs.task, controls.model, controls.decoding, controls.beams, controls.max_new],
          outputs=[results.badge, results.notice, results.output, results.layer, results.head, results.cross_plot,
                   results.encoder_plot, results.result],
          api_name="seq2seq_generate", concurrency_id="seq2seq")
    gr.on([results.layer.input, results.head.input], redraw, inputs=[results.result, results.layer, results.head],
          outputs=[results.cross_plot, results.encoder_plot], api_name="seq2seq_attention", concurrency_id="seq2seq")


def follow_the_settings(inputs: InputPanel, controls: DecodingPanel, tasks: dict[str, dict[str, str]]) -> None:
    """A model offers its own tasks; Beams is a setting of beam search only."""

    def show_tasks(chosen: str):
        return gr.Dropdown(list(tasks[chosen]), value=list(tasks[chosen])[0]), other_tasks_note(tasks[chosen])

    controls.model.change(show_tasks, controls.model, [inputs.task, inputs.other_tasks], api_name=False)
    # UI only and instant: no queue, no public endpoint; a restored link's Decoding fires it too
    controls.decoding.change(lambda how: gr.update(**beams_setting(how)), controls.decoding, controls.beams,
                             api_name=False, queue=False, show_progress="hidden")


# --- the page -----------------------------------------------------------------------------------------------------


def build(ctx: PageContext) -> gr.Blocks:
    """The text-to-text page: input and task prefix, decoding controls, output, cross- and encoder attention."""
    services = {name: (source, service) for name, source, service in ctx.services(TextToText)}
    tasks = {name: declared_tasks(model_config(source)) for name, (source, _) in services.items()}
    first = next(iter(services))
    with gr.Blocks(title="Encoder–decoder text-to-text") as page:
        with gr.Row():
            with gr.Column(scale=3):
                inputs = input_panel(tasks[first])
            with gr.Column(scale=2):  # the decoding settings beside the input (below it on phones)
                controls = decoding_panel(list(services))
        results = results_panel(services[first][0])
        answer_generate(inputs, controls, results, services, tasks)
        follow_the_settings(inputs, controls, tasks)
        deep_link(page, {"text": inputs.text, "task": inputs.task, "model": controls.model,
                         "decoding": controls.decoding, "beams": controls.beams, "max_new": controls.max_new},
                  run=inputs.run)
    return page


def _first_model_name() -> str:
    return page_context(demo).model().ref  # the name the page's Model dropdown shows first


demo = Demo(
    slug=SLUG,
    order=40,
    title="Encoder–decoder text-to-text",
    description="T5/BART: a prefixed text in, generated text out, and the decoder's cross-attention over the input.",
    build=build,
    tags=("encoder-decoder", "T5", "BART", "text-to-text", "cross-attention", "generation"),
    topic="Encoder–decoder transformers: T5 and BART for text-to-text",
    lesson=LESSON,
    models=(ModelSlot(task=TASK, default="embedded", hub_example="t5-small"),),
    traffic=(ApiCall("seq2seq_generate", lambda: ("A gripping, beautifully acted film.", list(TASK_PREFIXES)[0],
                                                  _first_model_name(), "greedy", 4, 8)),
             ApiCall("seq2seq_generate", lambda: ("The plot is a mess and the jokes fall flat.", list(TASK_PREFIXES)[0],
                                                  _first_model_name(), "beam search", 3, 8))),
)


if __name__ == "__main__":  # `python demos/seq2seq/run.py` serves this demo alone
    from txgallery.gallery import launch_one

    launch_one(demo)
