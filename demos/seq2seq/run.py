"""Encoder–decoder text-to-text (T5/BART): a prefixed text in, generated text out, and where the decoder looked.

Reads top to bottom: the lesson, the input handling and attention maths as plain functions, one service class
(testable without Gradio), then `build()` that wires the UI. Run alone: `txgallery serve --demo seq2seq` or
`python -m txgallery_demos.seq2seq`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from txgallery.lib.attention_views import attention_heatmap
from txgallery.limits import (
    MAX_SEQ2SEQ_BEAMS,
    MAX_SEQ2SEQ_NEW_TOKENS,
    MAX_SEQ2SEQ_SOURCE_TOKENS,
    InputError,
    truncate_text,
)
from txgallery.models import store
from txgallery.plugin import ApiCall, Demo, ModelSlot, PageContext, page_context
from txgallery.serving.seam import connect
from txgallery.ui import deep_link, examples_that_run, model_badge, user_errors

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
(`t5-small`, `google/flan-t5-small`, `facebook/bart-large-cnn`) when you are online.

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


def declared_tasks(config: dict) -> dict[str, str]:
    """The tasks a model was trained for, label -> prefix, from its config's `task_specific_params` (as T5 and BART
    checkpoints declare them); every known prefix when it declares none."""
    tasks = {}
    for name, params in (config.get("task_specific_params") or {}).items():
        prefix = (params or {}).get("prefix", "")
        tasks[f"{TASK_NAMES.get(name, name.replace('_', ' '))} ({prefix.strip() or 'no prefix'})"] = prefix
    return tasks or dict(TASK_PREFIXES)


def model_config(source: store.ModelSource | store.ModelLoadError) -> dict:
    """A model's config.json as a dict, read without loading the model (empty when it cannot be read)."""
    import json

    from txgallery.paths import WEIGHTS_DIR

    if isinstance(source, store.ModelLoadError):
        return {}
    if source.kind == "hub":
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source.ref, "config.json")
        path = Path(cached) if isinstance(cached, str) else None
    else:
        path = (WEIGHTS_DIR / source.ref if source.kind == "embedded" else Path(source.ref)) / "config.json"
    try:
        return json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        return {}


def check_task(task: str, tasks: dict[str, str], model: str) -> str:
    """The prefix of `task`, or a message that the model was not trained for it and which hub model is."""
    if task not in tasks:
        raise InputError(f"`{model}` was not trained for “{task}”; it knows: {', '.join(tasks)}. Online, a hub model "
                         f"can: `txgallery serve --model {SLUG}=embedded,{HUB_FOR_OTHER_TASKS}`.")
    return tasks[task]


SENTINEL = "<extra_id_0>"
BLANK = "___"

EXAMPLES = [
    ["A gripping, beautifully acted film that stays with you long after the credits.", "sentiment (sst2 sentence:)"],
    ["The plot is a mess and the jokes fall flat; I checked my watch twice.", "sentiment (sst2 sentence:)"],
    ["a ___ film about love , loss and the people we leave behind .", "fill in the blank (fill:)"],
    ["the performances are ___ but the script lets everyone down .", "fill in the blank (fill:)"],
]


# --- input handling (pure functions) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationSettings:
    """How to decode: greedy (one beam) or beam search, and how many tokens at most."""

    max_new_tokens: int = 16
    num_beams: int = 1


def check_settings(max_new_tokens: float | None, num_beams: float | None) -> GenerationSettings:
    """Validate the decoding controls; raises `InputError` beyond the caps."""
    if max_new_tokens is None or int(max_new_tokens) != max_new_tokens or not 1 <= max_new_tokens <= MAX_SEQ2SEQ_NEW_TOKENS:
        raise InputError(f"Max new tokens must be a whole number from 1 to {MAX_SEQ2SEQ_NEW_TOKENS}; got {max_new_tokens}.")
    if num_beams is None or int(num_beams) != num_beams or not 1 <= num_beams <= MAX_SEQ2SEQ_BEAMS:
        raise InputError(f"Beams must be a whole number from 1 to {MAX_SEQ2SEQ_BEAMS}; got {num_beams}.")
    return GenerationSettings(int(max_new_tokens), int(num_beams))


def task_input(text: str | None, prefix: str) -> tuple[str, str | None]:
    """The model's input: prefix + text (huge text cut, with a notice); `___` becomes T5's span sentinel."""
    if text is None or not text.strip():
        raise InputError("Please enter some text: the input is empty.")
    text, notice = truncate_text(text.strip())
    text = text.replace(BLANK, SENTINEL)
    if prefix == TASK_PREFIXES["fill in the blank (fill:)"] and SENTINEL not in text:
        raise InputError(f"The fill task needs a gap: write {BLANK} (or {SENTINEL}) where words are missing.")
    return prefix + text, notice


def fuse_heads(attention: np.ndarray, layer: int | None, head: int | None) -> np.ndarray:
    """One (target × source) matrix from (layers, heads, target, source): a layer's head, or averages."""
    chosen = attention if layer is None else attention[layer : layer + 1]
    chosen = chosen.mean(axis=0)
    return chosen.mean(axis=0) if head is None else chosen[head]


# --- the model service ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seq2SeqResult:
    """One generation: the text, its token ids, the tokens on both sides, and the attention maps (numpy)."""

    text: str
    output_ids: list[int]  # generated ids, without the decoder's start token
    source_tokens: list[str]
    target_tokens: list[str]
    cross_attention: np.ndarray  # (layers, heads, target tokens, source tokens)
    encoder_attention: np.ndarray  # (layers, heads, source tokens, source tokens)
    truncated: bool
    seconds: float


class TextToText:
    """An encoder–decoder from the model store: generation, then one teacher-forced pass for the attention maps."""

    def __init__(self, source: store.ModelSource) -> None:
        self.source = source
        self.loaded = store.get_store().load(source, attentions=True)
        self.model, self.tokenizer = self.loaded.model, self.loaded.tokenizer
        if not getattr(self.model.config, "is_encoder_decoder", False):
            raise store.ModelLoadError(f"{source.ref} is not an encoder–decoder model (T5, BART, …); this page "
                                       "needs one with cross-attention.")

    def describe(self) -> str:
        """The model badge for the UI, with the embedded model's held-out scores."""
        badge = model_badge(self.source, self.loaded)
        fill = self.loaded.metrics.get("test", {}).get("fill_exact_match")
        if fill is not None:
            badge += f" (task `sst2 sentence:`) · **fill exact match:** {fill:.3f} (task `fill:`)"
        return badge

    def _encode(self, source_text: str):
        return self.tokenizer([source_text], truncation=True, max_length=MAX_SEQ2SEQ_SOURCE_TOKENS,
                              return_tensors="pt").to(self.loaded.device)

    @torch.inference_mode()
    def generate(self, source_text: str, settings: GenerationSettings = GenerationSettings()) -> Seq2SeqResult:
        """Generate (greedy or beam search), then read the cross- and encoder attention of the chosen output."""
        started = time.perf_counter()
        batch = self._encode(source_text)
        full_length = len(self.tokenizer(source_text)["input_ids"])
        generated = self.model.generate(**batch, max_new_tokens=settings.max_new_tokens, num_beams=settings.num_beams,
                                        do_sample=False)
        seconds = time.perf_counter() - started
        sequence = generated[:1]
        start_id = self.model.config.decoder_start_token_id
        if sequence.shape[1] < 2 or int(sequence[0, 0]) != start_id:  # generate() always starts with it; be explicit
            sequence = torch.cat([torch.full((1, 1), start_id, device=sequence.device), sequence], dim=1)
        # row i of the cross-attention is the step that produced token i + 1: feed the output shifted right
        outputs = self.model(**batch, decoder_input_ids=sequence[:, :-1], output_attentions=True)
        output_ids = [int(i) for i in sequence[0, 1:]]
        return Seq2SeqResult(
            text=self.tokenizer.decode(output_ids, skip_special_tokens=True).strip(),
            output_ids=output_ids,
            source_tokens=self.tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist()),
            target_tokens=self.tokenizer.convert_ids_to_tokens(output_ids),
            cross_attention=torch.stack(outputs.cross_attentions)[:, 0].float().cpu().numpy(),
            encoder_attention=torch.stack(outputs.encoder_attentions)[:, 0].float().cpu().numpy(),
            truncated=full_length > MAX_SEQ2SEQ_SOURCE_TOKENS,
            seconds=seconds,
        )


# --- the UI ---------------------------------------------------------------------------------------------------------


def _services(ctx: PageContext) -> dict[str, tuple[store.ModelSource | store.ModelLoadError, object]]:
    """Every configured model by name: (source or error, service or None)."""
    named = {}
    for source in ctx.models["model"]:
        if isinstance(source, store.ModelLoadError):
            named[source.ref] = (source, None)
        else:
            named[source.ref] = (source, connect(TextToText, source))
    return named


def _layer_head(layer: str, head: str) -> tuple[int | None, int | None]:
    return (None if layer == "average" else int(layer)), (None if head == "average" else int(head))


def attention_figures(result: Seq2SeqResult | None, layer: str, head: str):
    """The cross-attention and encoder self-attention heatmaps for the chosen layer and head."""
    if result is None:
        return None, None
    layer_index, head_index = _layer_head(layer, head)
    where = f"layer {layer}, head {head}".replace("layer average", "all layers").replace("head average", "mean of heads")
    cross = attention_heatmap(fuse_heads(result.cross_attention, layer_index, head_index), result.target_tokens,
                              result.source_tokens, f"Cross-attention: output (rows) × input (columns) — {where}")
    encoder_layer = None if layer_index is None else min(layer_index, result.encoder_attention.shape[0] - 1)
    encoder_head = None if head_index is None else min(head_index, result.encoder_attention.shape[1] - 1)
    encoder = attention_heatmap(fuse_heads(result.encoder_attention, encoder_layer, encoder_head),
                                result.source_tokens, result.source_tokens, f"Encoder self-attention — {where}")
    return cross, encoder


def _other_tasks_note(tasks: dict[str, str]) -> str:
    missing = [label.split(" (")[0] for label in TASK_PREFIXES if label not in tasks and "no prefix" not in label]
    return (f"This model was not trained to {' or '.join(missing)}: online, add a hub model that was, "
            f"`txgallery serve --model {SLUG}=embedded,{HUB_FOR_OTHER_TASKS}`." if missing else "")


def beams_setting(how: str) -> dict:
    """The Beams slider for a decoding mode: interactive in beam search only (greedy keeps one beam), saying so."""
    beam = how == "beam search"
    return {"interactive": beam, "info": "used in beam search" if beam else "not used in greedy decoding (one beam)"}


def build(ctx: PageContext) -> gr.Blocks:
    """The text-to-text page: input and task prefix, decoding controls, output, cross- and encoder attention."""
    services = _services(ctx)
    names = list(services)
    tasks = {name: declared_tasks(model_config(source)) for name, (source, _) in services.items()}
    with gr.Blocks(title="Encoder–decoder text-to-text") as page:
        first_source, _ = services[names[0]]
        with gr.Row():
            with gr.Column(scale=3):
                text = gr.Textbox(label="Text", lines=4, placeholder="Type a review, or a sentence with ___ for fill…",
                                  max_length=None, elem_id="seq2seq-text")
                prefix = gr.Dropdown(list(tasks[names[0]]), value=list(tasks[names[0]])[0], elem_id="seq2seq-task",
                                     label="Task (the ones this model was trained for)")
                run = gr.Button("Generate", variant="primary", elem_id="seq2seq-run")
                examples_that_run(EXAMPLES, [text, prefix], run)
                other_tasks = gr.Markdown(_other_tasks_note(tasks[names[0]]), elem_id="seq2seq-other-tasks")
            with gr.Column(scale=2):  # the decoding settings beside the input (below it on phones)
                model_name = gr.Dropdown(names, value=names[0], label="Model", visible=len(names) > 1)
                decoding = gr.Radio(["greedy", "beam search"], value="greedy", label="Decoding",
                                    elem_id="seq2seq-decoding")
                beams = gr.Slider(2, MAX_SEQ2SEQ_BEAMS, value=4, step=1, label="Beams (beam search)",
                                  elem_id="seq2seq-beams", **beams_setting("greedy"))
                max_new = gr.Slider(1, MAX_SEQ2SEQ_NEW_TOKENS, value=16, step=1, label="Max new tokens")
        notice = gr.Markdown(label="Notice", elem_id="seq2seq-notice")
        output = gr.Textbox(label="Output", interactive=False, elem_id="seq2seq-output")
        with gr.Row():
            layer = gr.Dropdown(["average"], value="average", label="Layer", elem_id="seq2seq-layer")
            head = gr.Dropdown(["average"], value="average", label="Head", elem_id="seq2seq-head")
        with gr.Tab("Cross-attention (decoder × encoder)"):
            cross_plot = gr.Plot(label="Cross-attention", elem_id="seq2seq-cross")
        with gr.Tab("Encoder self-attention"):
            encoder_plot = gr.Plot(label="Encoder self-attention", elem_id="seq2seq-encoder")
        # under the results it explains
        badge = gr.Markdown(model_badge(first_source), label="About the model", elem_id="seq2seq-badge")
        state = gr.State(None)

        @user_errors
        def generate(text: str, task: str, model: str, decoding: str, beams: int, max_new_tokens: int):
            settings = check_settings(max_new_tokens, 1 if decoding == "greedy" else beams)
            source, service = services[model]
            if service is None:
                raise source
            source_text, message = task_input(text, check_task(task, tasks[model], model))
            result = service.generate(source_text, settings)
            if result.truncated:
                message = f"{message or ''} Only the first {MAX_SEQ2SEQ_SOURCE_TOKENS} tokens were read.".strip()
            cross, encoder = attention_figures(result, "average", "average")
            layers, heads = result.cross_attention.shape[:2]
            timing = f"{len(result.output_ids)} tokens in {result.seconds * 1000:.0f} ms ({decoding})"
            return (service.describe(), f"ℹ️ {message} · {timing}" if message else timing, result.text or "(empty)",
                    gr.Dropdown(["average", *map(str, range(layers))], value="average"),
                    gr.Dropdown(["average", *map(str, range(heads))], value="average"), cross, encoder, result)

        @user_errors
        def redraw(result: Seq2SeqResult | None, layer: str, head: str):
            return attention_figures(result, layer, head)

        gr.on([run.click, text.submit], generate, inputs=[text, prefix, model_name, decoding, beams, max_new],
              outputs=[badge, notice, output, layer, head, cross_plot, encoder_plot, state],
              api_name="seq2seq_generate", concurrency_id="seq2seq")
        def show_tasks(chosen: str):
            return gr.Dropdown(list(tasks[chosen]), value=list(tasks[chosen])[0]), _other_tasks_note(tasks[chosen])

        model_name.change(show_tasks, model_name, [prefix, other_tasks], api_name=False)
        # UI only and instant: no queue, no public endpoint; a restored link's Decoding fires it too
        decoding.change(lambda how: gr.update(**beams_setting(how)), decoding, beams, api_name=False, queue=False,
                        show_progress="hidden")
        gr.on([layer.input, head.input], redraw, inputs=[state, layer, head], outputs=[cross_plot, encoder_plot],
              api_name="seq2seq_attention", concurrency_id="seq2seq")
        deep_link(page, {"text": text, "task": prefix, "model": model_name, "decoding": decoding, "beams": beams,
                         "max_new": max_new}, run=run)
    return page


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
                                                  list(_services(page_context(demo)))[0], "greedy", 4, 8)),
             ApiCall("seq2seq_generate", lambda: ("The plot is a mess and the jokes fall flat.", list(TASK_PREFIXES)[0],
                                                  list(_services(page_context(demo)))[0], "beam search", 3, 8))),
)


if __name__ == "__main__":  # `python demos/seq2seq/run.py` serves this demo alone
    from txgallery.gallery import launch_one

    launch_one(demo)
