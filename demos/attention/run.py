"""Attention explorer: every layer and head of a real encoder, decoder and ViT, and attention recomputed step by step.

Reads top to bottom: the lesson, input handling and the views' data as plain functions (testable without Gradio),
the page's panels, the events, then `build(ctx)`, which wires them; the model services are in `service.py`. Run
alone: `python demos/attention/run.py` or `txgallery serve --demo attention`.
"""

from __future__ import annotations

import functools
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from gradio_client import handle_file
from txgallery_demos.attention.service import (
    DECODER_TASK,
    AttentionExplorer,
    AttentionResult,
    VitExplorer,
    VitResult,
    check_index,
)

from txgallery.lib import attention as att
from txgallery.lib import attention_views as views
from txgallery.lib.images import fashion_mnist_examples, load_image
from txgallery.lib.text import clean_text
from txgallery.limits import (
    MAX_ATTENTION_TOKENS_DECODER,
    MAX_ATTENTION_TOKENS_ENCODER,
    MAX_DISCARD_RATIO,
    MAX_POSITIONS_SHOWN,
    VIT_TOP_K,
    InputError,
)
from txgallery.models.hub import ModelLoadError, ModelSource
from txgallery.plugin import ApiCall, Demo, ModelSlot, PageContext, page_context
from txgallery.ui import (
    announce_first_use,
    deep_link,
    examples_that_run,
    image_input,
    model_badge,
    user_errors,
)

SLUG = "attention"
ENCODER_TASK = "feature-extraction"
VISION_TASK = "image-classification"
DECODER_DEFAULT = "embedded:smollm2-135m"

LESSON = f"""
**Attention(Q, K, V) = softmax(Q·Kᵀ / √d_k) · V.** Every token asks a *query*, every token offers a *key* and a
*value*; a token's new representation is the average of all values, weighted by how well its query matches each key.
A layer runs several such **heads** side by side, each with its own projections, so each can look for something
different. Here they are on real models: **MiniLM-L6** (a 6-layer BERT encoder: every token sees every token),
**SmolLM2-135M** (a 30-layer Llama decoder with rotary positions and grouped-query attention: 9 query heads share
3 key/value heads, and a token only sees the past), and a **ViT** (image patches are the tokens).

- **Head view** — one layer: a line from each token on the left to each token it attends to on the right, one colour
  per head, darker = more attention. *Hover a token* to keep only its lines.
- **Model view** — every layer × head as a thumbnail. Patterns jump out: diagonals (attend to self), the
  sub-diagonal (*previous-token heads*), a bright first or last column (*[CLS]/[SEP] or BOS "sinks"* that heads use
  when they have nothing better to do). *Click a thumbnail* to open it.
- **Heatmap** — one head's matrix: row = the query token, column = the key token; every row sums to 1. For the
  decoder the grey hatched triangle is the **causal mask**.
- **Step by step** — one head recomputed from the model's own weights: Q, K, V, then Q·Kᵀ, the √d_k scaling, the
  mask, the softmax and the weighted sum with V, checked against what the model itself returned (max |difference|).
- **Positional encodings** — attention itself ignores order, so order is added: the original Transformer's
  sinusoids, BERT's learned position vectors, or rotary embeddings (RoPE) that turn Q and K by an angle that grows
  with position, so that Q·K depends only on the *distance* between tokens.
- **Head statistics** — every head's entropy and its attention to the first token, to separators, to the previous
  token and to itself: sort a column to find previous-token heads and [SEP] sinks.
- **Sentence pairs** — give an encoder a second sentence: segment A and B are shaded; watch [SEP] and the heads that
  cross between the sentences.
- **ViT** — attention rollout (Abnar & Zuidema 2020) multiplies the layers' attention (plus the residual path) to
  show which patches the [CLS] token finally draws on; head fusion and the discard ratio change how heads combine.

**Limits:** encoders show up to {MAX_ATTENTION_TOKENS_ENCODER} tokens and the decoder {MAX_ATTENTION_TOKENS_DECODER}
(longer text is cut, with a notice). **Try:** "The animal didn't cross the street because it was too tired." (which
word does *it* attend to in the later layers?), a repeated sentence in the decoder (induction heads copy what came
after the earlier occurrence), and the same sentence with a pair.
"""

EXAMPLES = [
    ["The animal didn't cross the street because it was too tired.", ""],
    ["The cat sat on the mat.", "The dog lay on the rug."],
    ["Once upon a time there was a little girl. Once upon a time there was a little girl.", ""],
]

STAT_COLUMNS = {"entropy": "entropy (nats)", "to_first": "to first token ([CLS]/BOS)",
                "to_separators": "to [SEP]/EOS", "to_previous": "to previous token", "to_self": "to itself"}
Services = list[tuple[str, "ModelSource | ModelLoadError", "AttentionExplorer | VitExplorer | None"]]  # ctx.services


# --- input handling (pure functions) --------------------------------------------------------------------------------


def clean_inputs(text: object, pair: object) -> tuple[str, str, list[str]]:
    """The text and the optional second sentence, checked and cleaned, with a notice per change (or `InputError`)."""
    text, notice = clean_text(text, what="text", need_letters=True)
    second, second_notice = "", None
    if not (pair is None or (isinstance(pair, str) and not pair.strip())):
        second, second_notice = clean_text(pair, what="second sentence", need_letters=True)
    return text, second, [n for n in (notice, second_notice) if n]


def choices(count: int, what: str) -> list[tuple[str, int]]:
    """Dropdown choices for `count` layers or heads: ("layer 0", 0), …"""
    return [(f"{what} {i}", i) for i in range(count)]


def documented_as_indices(component: gr.Dropdown | gr.CheckboxGroup) -> gr.Dropdown | gr.CheckboxGroup:
    """Document a layer or head choice in the API as the whole number(s) the server takes: Gradio documents every
    Dropdown and CheckboxGroup choice as a string, whatever its value (`gr.Dropdown.api_info`)."""

    def schema() -> dict:
        values = [value for _, value in component.choices]  # the choices of a new session: 0 … count - 1
        index = {"type": "integer", "minimum": min(values), "maximum": max(values)}
        return {"type": "array", "items": index} if isinstance(component, gr.CheckboxGroup) else index

    component.api_info = schema  # read when the page's config and API page are made
    return component


def analysed(result: AttentionResult | None) -> AttentionResult:
    """The page's last analysis, for the views that follow it (`InputError` before the first)."""
    if result is None:
        raise InputError("Press “Show attention” first.")
    return result


# --- the data behind the views (pure functions) ---------------------------------------------------------------------


def statistics_table(result: AttentionResult) -> pd.DataFrame:
    """Per-head statistics of a run as a sortable table (one row per layer and head)."""
    rows = [asdict(s) for s in att.head_statistics(result.attentions, result.special)]
    frame = pd.DataFrame(rows).rename(columns=STAT_COLUMNS)
    return frame.round(3)


def export_tensors(result: AttentionResult, fmt: str, directory: Path | None = None) -> Path:
    """Write the run's tokens and attention tensors as NPZ (float32) or JSON (rounded to 4 decimals)."""
    directory = Path(directory or tempfile.mkdtemp(prefix="txgallery-"))
    stem = directory / f"attention_{result.layers}x{result.heads}x{len(result.tokens)}"
    if fmt == "npz":
        path = stem.with_suffix(".npz")
        np.savez_compressed(path, attentions=result.attentions.astype(np.float32), tokens=np.array(result.tokens),
                            segments=np.array(result.segments if result.segments is not None else []))
    elif fmt == "json":
        path = stem.with_suffix(".json")
        path.write_text(json.dumps({"model": result.model, "tokens": result.tokens, "causal": result.causal,
                                    "segments": result.segments, "shape": list(result.attentions.shape),
                                    "attentions": np.round(result.attentions, 4).tolist()}))
    else:
        raise InputError(f"Tensors export as npz or json, not {fmt!r}.")
    return path


def export_figure(figure, fmt: str, name: str, directory: Path | None = None) -> Path:
    """Save a figure as PNG or SVG for download."""
    if fmt not in ("png", "svg"):
        raise InputError(f"Figures export as png or svg, not {fmt!r}.")
    path = Path(directory or tempfile.mkdtemp(prefix="txgallery-")) / f"{name}.{fmt}"
    path.write_bytes(views.figure_bytes(figure, fmt))
    return path


def heatmap_figure(result: AttentionResult, layer: int, head: int, interactive: bool = True):
    """One head's attention as a heatmap, the causal mask greyed for decoders: plotly for the page (the browser
    draws it, hover shows values), matplotlib for PNG/SVG downloads."""
    layer, head = check_index(layer, result.layers, "layer"), check_index(head, result.heads, "head")
    size = len(result.tokens)
    masked = np.isinf(att.causal_mask(size)) if result.causal else None
    draw = views.interactive_heatmap if interactive else views.attention_heatmap
    return draw(result.attentions[layer, head], result.tokens, result.tokens,
                f"{result.model} · layer {layer}, head {head}", masked=masked)


def head_view(result: AttentionResult, layer: int, heads: list[int] | None) -> str:
    """The head view HTML of one layer for the chosen heads (all when none are chosen)."""
    layer = check_index(layer, result.layers, "layer")
    heads = [check_index(h, result.heads, "head") for h in heads] if heads else list(range(result.heads))
    return views.head_view_html(result.tokens, result.attentions[layer], heads, layer, result.segments, result.causal)


def positional_figures(dim: int, positions: int, learned: np.ndarray | None, inv_freq: np.ndarray | None,
                       model: str) -> list:
    """The sinusoidal encoding, and the model's own (learned vectors or rotary angles) when it has one."""
    positions = max(2, min(int(positions), MAX_POSITIONS_SHOWN))
    sinusoid = att.sinusoidal_encoding(positions, dim)
    figures = [views.positions_figure(sinusoid, att.cosine_similarity(sinusoid),
                                      f"sinusoidal (Vaswani et al. 2017), d = {dim}", "dimension")]
    if learned is not None:
        learned = learned[:positions]
        figures.append(views.positions_figure(learned, att.cosine_similarity(learned),
                                              f"{model}: learned position embeddings", "dimension"))
    if inv_freq is not None:
        angles = att.rope_angles(positions, inv_freq)
        figures.append(views.positions_figure(np.cos(angles), att.rope_similarity(positions, inv_freq),
                                              f"{model}: RoPE, cos(position · θ_i)", "frequency pair i"))
    return figures


def rollout_maps(result: VitResult, head_fusion: str, discard_ratio: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """The rollout's [CLS]-to-patch map and, per layer, that layer's own [CLS] attention to the patches."""
    head_fusion, discard_ratio = att.check_rollout_settings(head_fusion, discard_ratio)
    fused = [att.fuse_heads(att.as_heads(a), head_fusion) for a in result.attentions]  # once, for both views
    cls_row = att.rollout_row(fused, head_fusion, float(discard_ratio))  # fusing one head again changes nothing
    per_layer = [att.cls_patch_map(layer, result.grid, result.prefix_tokens) for layer in fused]
    return att.cls_patch_map(cls_row, result.grid, result.prefix_tokens), per_layer


def steps_note(steps: att.AttentionSteps, layer: int, head: int, causal: bool) -> str:
    """What the step-by-step view shows for one head, and how far its recomputation is from the model's own."""
    diff = steps.extras["max_abs_diff"]
    return (f"**Layer {layer}, head {head}** · d_k = {steps.query.shape[1]} · scale = {steps.scale:.4f} · mask: "
            f"{'causal' if causal else 'none (every token sees every token)'}"
            f"{' · RoPE applied to Q and K' if steps.query_before_rotation is not None else ''}\n\n"
            f"Recomputed from the model's own weights vs the attention the model returned: "
            f"**max |difference| = {diff:.2e}** {'✅' if diff <= 1e-5 else '⚠️'}")


def positions_note(name: str, info: dict) -> str:
    """Which positional encoding the model uses, and where to see the other kind."""
    own = ("learned position vectors" if info["learned"] is not None else "rotary embeddings (RoPE)"
           if info["inv_freq"] is not None else "no positional encoding this view can read")
    return f"**{name}** uses {own}. Choose the other model above to see its kind (MiniLM: learned; SmolLM2: RoPE)."


def fashion_examples() -> list[str]:
    """One Fashion-MNIST test image per class for the ViT tab (they ship with txgallery)."""
    return [str(path) for path in fashion_mnist_examples().values()]


# --- the page's models ----------------------------------------------------------------------------------------------


class TextModels:
    """The page's text models by their choice label (the encoders, then the decoders), each connected at build time so
    that on Ray Serve each is a deployment of its own (a service first connected inside an event runs in the UI
    replica)."""

    def __init__(self, encoders: Services, decoders: Services) -> None:
        self.sources = {name: source for name, source, _ in encoders + decoders}
        self.decoders = {name for name, _, _ in decoders}
        self._explorers = {name: service for name, _, service in encoders + decoders if service is not None}

    @property
    def names(self) -> list[str]:
        """The choice labels, in the dropdown's order."""
        return list(self.sources)

    def explorer(self, name: str) -> AttentionExplorer:
        """The service of the chosen model, or why there is none (`InputError`, `ModelLoadError`)."""
        source = self.sources.get(name)
        if source is None:
            raise InputError(f"Unknown model {name!r}; choose one of {', '.join(self.sources)}.")
        if isinstance(source, ModelLoadError):
            raise source
        return self._explorers[name]


def first_encoder() -> str:
    """The choice label of the page's first encoder under the process's settings (what load tests send)."""
    return page_context(demo).model("encoder").ref


# --- the panels -----------------------------------------------------------------------------------------------------


@dataclass
class TextControls:
    """Above the tabs: the model, the text (and a second sentence), and which layer and heads the views show."""

    model: gr.Dropdown
    badge: gr.Markdown
    text: gr.Textbox
    pair: gr.Textbox
    run: gr.Button
    notice: gr.Markdown
    layer: gr.Dropdown
    head: gr.Dropdown
    heads: gr.CheckboxGroup
    result: gr.State  # the last analysis, which every view draws from


def text_controls(models: TextModels) -> TextControls:
    """The model and its badge, the text and the pair with their examples, the limits, and the layer and heads."""
    result = gr.State(None)
    first = models.names[0]
    with gr.Row():
        model = gr.Dropdown(models.names, value=first, label="Model", elem_id="attention-model", scale=1)
        badge = gr.Markdown(model_badge(models.sources[first]), label="About the model", elem_id="attention-badge")
    with gr.Row():
        text = gr.Textbox(label="Text", lines=2, value=EXAMPLES[0][0], elem_id="attention-text", scale=3)
        pair = gr.Textbox(label="Second sentence (optional, encoders: sentence-pair mode)", lines=2, scale=2,
                          elem_id="attention-pair")
    run = gr.Button("Show attention", variant="primary", elem_id="attention-run")
    examples_that_run(EXAMPLES, [text, pair], run)
    gr.Markdown(f"Limits: {MAX_ATTENTION_TOKENS_ENCODER} tokens for encoders (specials included), "
                f"{MAX_ATTENTION_TOKENS_DECODER} for the decoder; longer text is cut, with a notice.")
    notice = gr.Markdown(label="Notice", elem_id="attention-notice")
    with gr.Row():
        layer = documented_as_indices(gr.Dropdown(choices(6, "layer"), value=0, label="Layer",
                                                  elem_id="attention-layer"))
        head = documented_as_indices(gr.Dropdown(choices(12, "head"), value=0, label="Head (heatmap, step by step)",
                                                 elem_id="attention-head"))
        heads = documented_as_indices(gr.CheckboxGroup(choices(12, "head"), value=[],
                                                       label="Heads in the head view (none = all)",
                                                       elem_id="attention-heads"))
    return TextControls(model, badge, text, pair, run, notice, layer, head, heads, result)


@dataclass
class TextViews:
    """The text models' tabs: head view, model view, heatmap, step by step, positional encodings, head statistics."""

    head_html: gr.HTML
    model_html: gr.HTML
    opened: gr.Plot
    heatmap: gr.Plot
    steps_note: gr.Markdown
    steps_plot: gr.Plot
    vectors_plot: gr.Plot
    positions: gr.Slider
    show_positions: gr.Button
    positions_note: gr.Markdown
    position_plots: list[gr.Image]
    stats: gr.Dataframe


def text_view_tabs() -> TextViews:
    """One tab per view of the text models' attention."""
    with gr.Tab("Head view"):
        gr.Markdown("Lines from each token (left) to the tokens it attends to (right); one colour per head, darker = "
                    "more attention. **Hover a token** to keep only its lines.")
        # `head` adds the style to the document: the selector's checkboxes get the head view's colours
        head_html = gr.HTML(label="Head view", elem_id="attention-headview", js_on_load=views.HEAD_VIEW_JS,
                            head=f"<style>{views.head_selector_css('#attention-heads')}</style>")
    with gr.Tab("Model view"):
        gr.Markdown("Every layer (rows) × head (columns). **Click a thumbnail** to open it below.")
        model_html = gr.HTML(label="Model view", elem_id="attention-modelview", js_on_load=views.MODEL_VIEW_JS)
        opened = gr.Plot(label="Opened head", elem_id="attention-opened")
    with gr.Tab("Heatmap"):
        heatmap = gr.Plot(label="Attention matrix", elem_id="attention-heatmap")
    with gr.Tab("Step by step"):
        steps_note = gr.Markdown(label="This head, step by step", elem_id="attention-steps-note")
        steps_plot = gr.Plot(label="Q·Kᵀ → scale → mask → softmax", elem_id="attention-steps")
        vectors_plot = gr.Plot(label="Q, K, V and the output of this head", elem_id="attention-vectors")
    with gr.Tab("Positional encodings"):
        positions = gr.Slider(8, MAX_POSITIONS_SHOWN, value=64, step=8, precision=0, label="Positions")
        show_positions = gr.Button("Show positional encodings")
        positions_note = gr.Markdown(label="Which positional encoding")
        position_plots = [gr.Image(label=label, type="numpy", format="png", interactive=False)
                          for label in ("Sinusoidal", "The model's own")]
    with gr.Tab("Head statistics"):
        gr.Markdown("Averaged over query tokens; attention shares are between 0 and 1, entropy is in nats (0 = one "
                    "token gets everything). **Click a column header to sort.**")
        stats = gr.Dataframe(label="Per-head statistics", elem_id="attention-stats", wrap=False)
    return TextViews(head_html, model_html, opened, heatmap, steps_note, steps_plot, vectors_plot, positions,
                     show_positions, positions_note, position_plots, stats)


@dataclass
class VitPanel:
    """The ViT tab: a picture and the rollout's settings in; the prediction, the rollout and each layer's map out."""

    image: gr.Image
    fusion: gr.Radio
    discard: gr.Slider
    run: gr.Button
    label: gr.Label
    rollout: gr.Image
    layers: gr.Image


def vit_panel(source: ModelSource | ModelLoadError) -> VitPanel:
    """The ViT's badge, the picture with its examples and settings, then the rollout and the per-layer maps."""
    gr.Markdown(model_badge(source))
    with gr.Row():
        image = image_input(label="Image", elem_id="attention-image")
        with gr.Column():
            fusion = gr.Radio(list(att.HEAD_FUSIONS), value="mean", label="Head fusion")
            discard = gr.Slider(0.0, MAX_DISCARD_RATIO, value=0.0, step=0.05, label="Discard ratio (weakest weights)")
            run = gr.Button("Show ViT attention", variant="primary", elem_id="attention-vit-run")
            examples_that_run(fashion_examples(), image, run, label="Fashion-MNIST test images")
            label = gr.Label(label="Prediction", num_top_classes=VIT_TOP_K)
    rollout = gr.Image(label="Attention rollout ([CLS] → patches)", type="numpy", format=views.OVERLAY_FORMAT,
                       interactive=False, elem_id="attention-vit-rollout")
    layers = gr.Image(label="[CLS] attention of each layer", type="numpy", format=views.OVERLAY_FORMAT,
                      interactive=False)
    # patch_map_overlay scales each map from its own lowest to its highest patch, in inferno
    gr.HTML(views.colour_bar_html("inferno", "lowest patch", "highest patch", "Colour laid over the picture: "
                                  "attention, each map scaled to its own range"), elem_id="attention-vit-key")
    return VitPanel(image, fusion, discard, run, label, rollout, layers)


@dataclass
class ExportPanel:
    """The Export tab: which figure in which format, or the attention tensors; one download."""

    figure: gr.Radio
    figure_format: gr.Radio
    figure_button: gr.Button
    tensor_format: gr.Radio
    tensors_button: gr.Button
    download: gr.File


def export_panel() -> ExportPanel:
    """The figure and tensor choices, their buttons and the download."""
    gr.Markdown("Figures as PNG or SVG, and every layer's attention as NPZ (float32) or JSON. The interactive figures "
                "also download as PNG from the camera button in their toolbar; the positional and ViT figures are "
                "images (right-click to save).")
    with gr.Row():
        figure = gr.Radio(["heatmap", "step by step", "Q, K, V"], value="heatmap", label="Figure")
        figure_format = gr.Radio(["png", "svg"], value="png", label="Format")
        figure_button = gr.Button("Download figure")
    with gr.Row():
        tensor_format = gr.Radio(["npz", "json"], value="npz", label="Attention tensors")
        tensors_button = gr.Button("Download tensors")
    download = gr.File(label="Download", elem_id="attention-download")
    return ExportPanel(figure, figure_format, figure_button, tensor_format, tensors_button, download)


# --- the events -----------------------------------------------------------------------------------------------------


def answer_analysis(controls: TextControls, shown: TextViews, models: TextModels) -> None:
    """Analyse on click or Enter, then draw the layer's views and the head's steps; redraw them when the layer, the
    head or the heads change, or a thumbnail is clicked."""
    c = controls

    @user_errors
    def switch_model(name: str):
        return model_badge(models.sources[name]), gr.Textbox(interactive=name not in models.decoders)

    @user_errors
    def analyse(model: str, text: str, pair: str, layer: int, head: int, heads: list[int]):
        """Analyse a text (and an optional second sentence, encoders only) with the chosen model: its badge, notices,
        its layer and head choices, the model view (HTML) and per-head statistics. The session's later calls
        (/attention_views, /attention_steps, /attention_figure, /attention_tensors) draw from this analysis."""
        text, pair, notices = clean_inputs(text, pair)
        service = models.explorer(model)
        announce_first_use(models.sources.get(model))
        result = service.analyse(text, pair)
        layer_index, head_index = min(int(layer or 0), result.layers - 1), min(int(head or 0), result.heads - 1)
        if (layer_index, head_index) != (int(layer or 0), int(head or 0)):  # e.g. a link made with a larger model
            notices.append(f"{model} has {result.layers} layers and {result.heads} heads: showing layer {layer_index}, "
                           f"head {head_index}.")
        chosen = [h for h in (heads or []) if h < result.heads]
        return (result, service.describe(), "\n\n".join(f"ℹ️ {m}" for m in [*notices, result.notice] if m),
                gr.Dropdown(choices=choices(result.layers, "layer"), value=layer_index),
                gr.Dropdown(choices=choices(result.heads, "head"), value=head_index),
                gr.CheckboxGroup(choices=choices(result.heads, "head"), value=chosen),
                views.model_view_html(result.attentions, selected=(layer_index, head_index)),
                statistics_table(result))

    @user_errors
    def layer_views(result, layer: int, head: int, heads: list[int]):
        """The head view (HTML) of one layer for the chosen heads (none = all) and the heatmap of one head, from the
        session's last /attention_analyse."""
        result = analysed(result)
        return head_view(result, layer, heads), heatmap_figure(result, layer, head)

    @user_errors
    def step_views(model: str, result, layer: int, head: int):
        """One head recomputed from the model's own weights (Q·Kᵀ, scale, mask, softmax, · V), from the session's last
        /attention_analyse: a note with the difference from the model's attention, and two figures."""
        result = analysed(result)
        steps = models.explorer(model).steps(result.text, result.pair, layer, head)
        title = f"{result.model} · layer {layer}, head {head}"
        return (steps_note(steps, layer, head, result.causal), views.interactive_steps(steps, result.tokens, title),
                views.interactive_vectors(steps, result.tokens, title))

    @user_errors
    def open_thumbnail(result, evt: gr.EventData):
        result = analysed(result)
        layer_index = check_index(getattr(evt, "layer", None), result.layers, "layer")
        head_index = check_index(getattr(evt, "head", None), result.heads, "head")
        return (layer_index, head_index, heatmap_figure(result, layer_index, head_index),
                views.model_view_html(result.attentions, selected=(layer_index, head_index)))

    c.model.change(switch_model, c.model, [c.badge, c.pair], api_name=False)
    layer_inputs, layer_outputs = [c.result, c.layer, c.head, c.heads], [shown.head_html, shown.heatmap]
    step_inputs, step_outputs = [c.model, c.result, c.layer, c.head], [shown.steps_note, shown.steps_plot,
                                                                         shown.vectors_plot]
    gr.on([c.run.click, c.text.submit], analyse, inputs=[c.model, c.text, c.pair, c.layer, c.head, c.heads],
          outputs=[c.result, c.badge, c.notice, c.layer, c.head, c.heads, shown.model_html, shown.stats],
          api_name="attention_analyse", concurrency_id=SLUG
          ).then(layer_views, layer_inputs, layer_outputs, api_name="attention_views", concurrency_id=SLUG
                 ).then(step_views, step_inputs, step_outputs, api_name="attention_steps", concurrency_id=SLUG)
    for control in (c.layer, c.head, c.heads):
        control.input(layer_views, layer_inputs, layer_outputs, api_name=False, concurrency_id=SLUG)
    for control in (c.layer, c.head):
        control.input(step_views, step_inputs, step_outputs, api_name=False, concurrency_id=SLUG)
    shown.model_html.click(open_thumbnail, c.result, [c.layer, c.head, shown.opened, shown.model_html],
                           api_name=False, concurrency_id=SLUG
                           ).then(layer_views, layer_inputs, layer_outputs, api_name=False, concurrency_id=SLUG)


def answer_positions(controls: TextControls, shown: TextViews, models: TextModels) -> None:
    """Draw the sinusoidal encoding beside the chosen model's own, once per model and count."""

    @functools.lru_cache(maxsize=8)  # the same model and count always give the same pictures
    def pictures(name: str, count: int) -> tuple[str, np.ndarray, np.ndarray | None]:
        info = models.explorer(name).position_info()
        drawn = [views.figure_picture(figure) for figure in
                 positional_figures(info["dim"], count, info["learned"], info["inv_freq"], name)]
        return positions_note(name, info), drawn[0], drawn[1] if len(drawn) > 1 else None

    @user_errors
    def position_views(model: str, positions: int):
        """The sinusoidal positional encoding beside the chosen model's own (learned vectors or RoPE) over the first
        `positions` positions: a note and two pictures."""
        return pictures(model, max(2, min(int(positions), MAX_POSITIONS_SHOWN)))

    shown.show_positions.click(position_views, [controls.model, shown.positions],
                               [shown.positions_note, *shown.position_plots], api_name="attention_positions",
                               concurrency_id=SLUG)


def answer_vit(panel: VitPanel, source: ModelSource | ModelLoadError, service: VitExplorer | None) -> None:
    """The ViT's prediction, its rollout and each layer's [CLS] map, for one picture."""

    @user_errors
    def vit_views(image, head_fusion: str, discard_ratio: float):
        """A ViT's top classes for a picture, its attention rollout from [CLS] to the patches, and each layer's own
        [CLS] attention, laid over the picture."""
        if service is None:
            raise source
        result = service.analyse(load_image(image or None))
        rollout, per_layer = rollout_maps(result, head_fusion, discard_ratio)
        return (result.top,
                views.patch_maps_picture(result.picture, [rollout],
                                         [f"rollout ({head_fusion}, discard {discard_ratio:.2f})"]),
                views.patch_maps_picture(result.picture, per_layer, [f"layer {i}" for i in range(len(per_layer))]))

    panel.run.click(vit_views, [panel.image, panel.fusion, panel.discard], [panel.label, panel.rollout, panel.layers],
                    api_name="attention_vit", concurrency_id=SLUG)


def answer_exports(controls: TextControls, panel: ExportPanel, models: TextModels) -> None:
    """The chosen figure of the chosen layer and head, or every layer's attention, as a file to download."""
    c = controls

    @user_errors
    def download_figure(model: str, result, figure: str, file_format: str, layer: int, head: int):
        """One figure of a head (heatmap, step by step, or Q, K, V) from the session's last /attention_analyse, as a PNG
        or SVG file."""
        result = analysed(result)
        if figure == "heatmap":
            drawn = heatmap_figure(result, layer, head, interactive=False)
        else:
            steps = models.explorer(model).steps(result.text, result.pair, layer, head)
            drawn = (views.steps_figure if figure == "step by step" else views.vectors_figure)(steps, result.tokens)
        name = f"attention_{figure.replace(' ', '_').replace(',', '')}_L{layer}_H{head}"
        return str(export_figure(drawn, file_format, name))

    @user_errors
    def download_tensors(result, file_format: str):
        """Every layer's attention from the session's last /attention_analyse, with its tokens, as an NPZ (float32) or
        JSON file."""
        return str(export_tensors(analysed(result), file_format))

    panel.figure_button.click(download_figure, [c.model, c.result, panel.figure, panel.figure_format, c.layer, c.head],
                              panel.download, api_name="attention_figure", concurrency_id=SLUG)
    panel.tensors_button.click(download_tensors, [c.result, panel.tensor_format], panel.download,
                               api_name="attention_tensors", concurrency_id=SLUG)


# --- the page -------------------------------------------------------------------------------------------------------


def build(ctx: PageContext) -> gr.Blocks:
    """The attention explorer page: text models (head, model, heatmap, step-by-step, positions, statistics) and ViT."""
    models = TextModels(ctx.services(AttentionExplorer, slot="encoder"),
                        ctx.services(AttentionExplorer, slot="decoder"))
    _, vit_source, vit_explorer = ctx.services(VitExplorer, slot="vision")[0]
    with gr.Blocks(title="Attention explorer") as page:
        controls = text_controls(models)
        with gr.Tabs():
            shown = text_view_tabs()
            with gr.Tab("ViT"):
                vit = vit_panel(vit_source)
            with gr.Tab("Export"):
                export = export_panel()
        answer_analysis(controls, shown, models)
        answer_positions(controls, shown, models)
        answer_vit(vit, vit_source, vit_explorer)
        answer_exports(controls, export, models)
        deep_link(page, {"model": controls.model, "text": controls.text, "pair": controls.pair,
                         "layer": controls.layer, "head": controls.head}, run=controls.run,
                  indices={"layer": lambda count: choices(count, "layer"), "head": lambda count: choices(count, "head")})
    return page


demo = Demo(
    slug=SLUG,
    order=10,
    title="Attention explorer",
    description="Every layer and head of a real encoder, decoder and ViT, and attention recomputed step by step.",
    build=build,
    tags=("attention", "encoder", "decoder", "ViT", "RoPE", "interpretability"),
    topic="Self-attention, multi-head attention and positional encoding",
    lesson=LESSON,
    models=(ModelSlot(task=ENCODER_TASK, default="embedded", hub_example="bert-base-uncased", name="encoder"),
            ModelSlot(task=DECODER_TASK, default=DECODER_DEFAULT, hub_example="gpt2", name="decoder"),
            ModelSlot(task=VISION_TASK, default="embedded", name="vision")),  # the ViT tab's model
    # the encoder's views and a ViT picture (the views that follow an analysis need the page's session state)
    traffic=(ApiCall("attention_analyse", lambda: (first_encoder(), EXAMPLES[0][0], "", 0, 0, [])),
             ApiCall("attention_analyse", lambda: (first_encoder(), EXAMPLES[1][0], EXAMPLES[1][1], 2, 3, [0, 1])),
             ApiCall("attention_positions", lambda: (first_encoder(), 64)),
             ApiCall("attention_vit", lambda: (handle_file(fashion_examples()[0]), "mean", 0.0))),
)


if __name__ == "__main__":  # `python demos/attention/run.py` serves this demo alone
    from txgallery.gallery import launch_one

    launch_one(demo)
