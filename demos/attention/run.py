"""Attention explorer: every layer and head of a real encoder, decoder and ViT, and attention recomputed step by step.

Reads top to bottom: the lesson, input handling and the views' data as plain functions, the two service classes
(text models and ViTs; testable without Gradio), then `build()` that wires the UI. Run alone:
`txgallery serve --demo attention` or `python -m txgallery_demos.attention`.
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
from PIL import Image

from txgallery.lib import attention as att
from txgallery.lib import attention_views as views
from txgallery.lib.images import fashion_mnist_examples
from txgallery.lib.threads import settle_threads_for
from txgallery.limits import (
    MAX_ATTENTION_TOKENS_DECODER,
    MAX_ATTENTION_TOKENS_ENCODER,
    MAX_DISCARD_RATIO,
    MAX_POSITIONS_SHOWN,
    InputError,
    truncate_text,
)
from txgallery.models import registry, store
from txgallery.plugin import ApiCall, Demo, ModelSlot, PageContext, page_context
from txgallery.serving.seam import connect
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
DECODER_TASK = "text-generation"
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


# --- input handling (pure functions) -----------------------------------------------------------------------------


def clean_text(text: str | None, what: str = "text") -> tuple[str, str | None]:
    """Validate one input text; returns it (cut to the character limit) and a notice, or raises `InputError`."""
    if text is None or not text.strip():
        raise InputError(f"Please enter some {what}: the input is empty.")
    if not any(ch.isalnum() for ch in text):
        raise InputError(f"The {what} has no letters or digits (emoji and symbols alone give the model only "
                         f"unknown tokens); type a sentence.")
    text, notice = truncate_text(text.strip())
    return text, notice


def check_index(value, count: int, what: str) -> int:
    """A layer or head index from the UI or the API, checked against the model (raises `InputError`)."""
    try:
        index = int(value)
    except (TypeError, ValueError):
        raise InputError(f"The {what} must be a whole number from 0 to {count - 1}, not {value!r}.") from None
    if not 0 <= index < count:
        raise InputError(f"The model has {count} {what}s (0 to {count - 1}); {what} {index} does not exist.")
    return index


def display_token(token: str) -> str:
    """A sub-word token as people read it: BPE's space mark (Ġ/▁) shown as a leading space, newlines as ⏎."""
    return token.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "⏎").replace("\n", "⏎")


def is_causal(model) -> bool:
    """Whether a transformers model is a decoder whose tokens only see the past."""
    config = model.config
    return bool(getattr(config, "is_decoder", False) or any(
        name.endswith(("ForCausalLM", "LMHeadModel")) for name in (getattr(config, "architectures", None) or ())))


# --- what a run returns, and the data behind the views ---------------------------------------------------------------


@dataclass
class AttentionResult:
    """One text through one model: its tokens and every layer's attention (layers, heads, T, T)."""

    model: str
    tokens: list[str]
    attentions: np.ndarray
    causal: bool
    special: list[bool]
    segments: list[int] | None  # 0 = sentence A, 1 = sentence B (pair mode), else None
    notice: str | None
    text: str
    pair: str

    @property
    def layers(self) -> int:
        """How many layers the model has."""
        return self.attentions.shape[0]

    @property
    def heads(self) -> int:
        """How many (query) heads each layer has."""
        return self.attentions.shape[1]


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


# --- the model services ------------------------------------------------------------------------------------------------


class AttentionExplorer:
    """A text model from the store (eager attention), its attention maps, and one head recomputed by hand."""

    def __init__(self, source: store.ModelSource) -> None:
        self.source = source
        self.loaded = store.get_store().load(source, attentions=True)
        self.model, self.tokenizer = self.loaded.model, self.loaded.tokenizer
        self.causal = is_causal(self.model) or source.task == DECODER_TASK
        self.max_tokens = MAX_ATTENTION_TOKENS_DECODER if self.causal else MAX_ATTENTION_TOKENS_ENCODER
        self._last: tuple | None = None  # (text, pair) -> trace: layer/head changes reuse the forward pass

    def describe(self) -> str:
        """The model badge for the UI."""
        return model_badge(self.source, self.loaded)

    def _trace(self, text: str, pair: str = ""):
        if self._last is not None and self._last[0] == (text, pair):
            return self._last[1:]
        if pair and self.causal:
            raise InputError("Sentence pairs are for encoders; a decoder reads one text (put both in it).")
        kwargs = dict(truncation=True, max_length=self.max_tokens, return_tensors="pt")
        encoding = self.tokenizer(text, pair, **kwargs) if pair else self.tokenizer(text, **kwargs)
        full = len(self.tokenizer(text, pair)["input_ids"] if pair else self.tokenizer(text)["input_ids"])
        notice = (f"The text has {full} tokens; the attention of the first {self.max_tokens} is shown "
                  f"(the limit for {'decoders' if self.causal else 'encoders'}).") if full > self.max_tokens else None
        ids = encoding["input_ids"][0].tolist()
        segments = None
        if pair:  # segment of each token; special tokens take the segment of the token before them
            sequence_ids, current = encoding.sequence_ids(0), 0
            segments = []
            for sid in sequence_ids:
                current = sid if sid is not None else current
                segments.append(int(current))
        inputs = {k: v.to(self.loaded.device) for k, v in encoding.items() if k in ("input_ids", "attention_mask",
                                                                                   "token_type_ids")}
        trace = att.trace_attention(self.model, inputs, self.causal)
        special = self.tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
        tokens = [display_token(t) for t in self.tokenizer.convert_ids_to_tokens(ids)]
        self._last = ((text, pair), trace, tokens, [bool(s) for s in special], segments, notice)
        return self._last[1:]

    def analyse(self, text: str, pair: str = "") -> AttentionResult:
        """Every layer's attention for `text` (and a second sentence `pair`, for encoders)."""
        trace, tokens, special, segments, notice = self._trace(text, pair)
        attentions = np.stack([a.cpu().numpy() for a in trace.attentions]).astype(np.float32)
        return AttentionResult(self.source.ref, tokens, attentions, self.causal, special, segments, notice, text, pair)

    def steps(self, text: str, pair: str, layer: int, head: int) -> att.AttentionSteps:
        """One head recomputed from the model's weights; `extras["max_abs_diff"]` compares it with the model's own."""
        trace = self._trace(text, pair)[0]
        layer = check_index(layer, len(trace.attentions), "layer")
        head = check_index(head, trace.attentions[layer].shape[0], "head")
        return att.recompute_head(trace, self.model, layer, head)

    def recomputation_errors(self, text: str, pair: str = "") -> list[float]:
        """Per layer, the largest |recomputed − returned| attention weight over all heads."""
        trace = self._trace(text, pair)[0]
        return [att.recompute_layer_error(trace, self.model, layer) for layer in range(len(trace.attentions))]

    def position_info(self) -> dict:
        """What the positional-encoding view needs: the model width, learned position vectors or RoPE frequencies."""
        info: dict = {"dim": int(self.model.config.hidden_size), "learned": None, "inv_freq": None}
        for name, module in self.model.named_modules():
            if name.endswith(("position_embeddings", "wpe")) and hasattr(module, "weight"):
                weight = module.weight.detach().float().cpu().numpy()
                # RoBERTa counts positions from padding_idx + 1
                info["learned"] = weight[(getattr(module, "padding_idx", None) or -1) + 1:]
                break
            if name.endswith("rotary_emb") and hasattr(module, "inv_freq"):
                info["inv_freq"] = module.inv_freq.detach().float().cpu().numpy()
                break
        return info


@dataclass
class VitResult:
    """A ViT's attention on one image, the patch grid, the picture as the model saw it and its top labels."""

    attentions: list
    grid: tuple[int, int]
    prefix_tokens: int
    picture: np.ndarray
    top: dict[str, float]


def load_picture(path) -> Image.Image:
    """Open an upload as an RGB image (txgallery.lib.images's safe loader), with a clear message when it is not one."""
    from txgallery.lib.images import load_image

    return load_image(path or None)


def rollout_maps(result: VitResult, head_fusion: str, discard_ratio: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """The rollout's [CLS]-to-patch map and, per layer, that layer's own [CLS] attention to the patches."""
    head_fusion, discard_ratio = att.check_rollout_settings(head_fusion, discard_ratio)
    fused = [att.fuse_heads(att.as_heads(a), head_fusion) for a in result.attentions]  # once, for both views
    cls_row = att.rollout_row(fused, head_fusion, float(discard_ratio))  # fusing one head again changes nothing
    per_layer = [att.cls_patch_map(layer, result.grid, result.prefix_tokens) for layer in fused]
    return att.cls_patch_map(cls_row, result.grid, result.prefix_tokens), per_layer


class VitExplorer:
    """A ViT image classifier from the store and its attention on one image."""

    def __init__(self, source: store.ModelSource) -> None:
        self.source = source
        self.loaded = store.get_store().load(source, attentions=True)
        self.model, self.processor = self.loaded.model, self.loaded.tokenizer  # a txgallery.models.image_classifiers.ImageProcessor
        settle_threads_for(self.loaded.model, self.loaded.device)  # the embedded ViT: one OpenMP thread on this service's thread
        if att.find_timm_vit(self.model) is None and not hasattr(getattr(self.model, "config", None), "patch_size"):
            raise InputError(f"{source.ref} is not a vision transformer: attention views need a ViT.")

    def describe(self) -> str:
        """The model badge for the UI."""
        return model_badge(self.source, self.loaded)

    def analyse(self, image) -> VitResult:
        """Every layer's attention of the ViT on `image` (a PIL image) and its five most likely labels."""
        fitted = self.processor.fit(image)  # the picture exactly as the model sees it
        run = att.vit_attentions(self.model, self.processor.tensor(fitted)[None].to(self.loaded.device))
        probabilities = np.exp(run.logits - run.logits.max())
        probabilities /= probabilities.sum()
        labels = list(self.processor.labels)
        top = {labels[i]: float(probabilities[i]) for i in np.argsort(-probabilities)[:5]}
        return VitResult(run.attentions, run.grid, run.prefix_tokens, np.asarray(fitted), top)


# --- the UI ---------------------------------------------------------------------------------------------------------


def text_models(ctx: PageContext) -> list[tuple[str, store.ModelSource | store.ModelLoadError]]:
    """(choice label, source or error) for the text models: the encoders (MiniLM by default), then the decoders."""
    return [(source.ref, source) for source in ctx.models["encoder"] + ctx.models["decoder"]]


def vision_model() -> store.ModelSource | store.ModelLoadError:
    """The embedded ViT when the gallery ships one, else the reason there is none."""
    names = [n for n in registry.list_embedded(task=VISION_TASK) if "vit" in n]
    if not names:
        return store.ModelLoadError("No embedded ViT is installed yet (the vision demo's `vit-fashion-mnist`).")
    return store.resolve(f"embedded:{names[0]}", VISION_TASK, "the gallery's embedded ViT")


def fashion_examples() -> list[str]:
    """One Fashion-MNIST test image per class for the ViT tab (none when the Debian dataset is not installed)."""
    from txgallery.lib.images import fashion_mnist_examples

    try:
        return [str(path) for path in fashion_mnist_examples().values()]
    except FileNotFoundError:
        return []


def _choices(count: int, what: str) -> list[tuple[str, int]]:
    return [(f"{what} {i}", i) for i in range(count)]


def build(ctx: PageContext) -> gr.Blocks:
    """The attention explorer page: text models (head, model, heatmap, step-by-step, positions, statistics) and ViT."""
    models = dict(text_models(ctx))
    names = list(models)
    with gr.Blocks(title="Attention explorer") as page:
        result_state = gr.State(None)
        with gr.Row():
            model_choice = gr.Dropdown(names, value=names[0], label="Model", elem_id="attention-model", scale=1)
            badge = gr.Markdown(model_badge(models[names[0]]), label="About the model", elem_id="attention-badge")
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
            layer = gr.Dropdown(_choices(6, "layer"), value=0, label="Layer", elem_id="attention-layer")
            head = gr.Dropdown(_choices(12, "head"), value=0, label="Head (heatmap, step by step)",
                               elem_id="attention-head")
            heads = gr.CheckboxGroup(_choices(12, "head"), value=[], label="Heads in the head view (none = all)",
                                     elem_id="attention-heads")
        with gr.Tabs():
            with gr.Tab("Head view"):
                gr.Markdown("Lines from each token (left) to the tokens it attends to (right); one colour per head, "
                            "darker = more attention. **Hover a token** to keep only its lines.")
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
                positions = gr.Slider(8, MAX_POSITIONS_SHOWN, value=64, step=8, label="Positions")
                show_positions = gr.Button("Show positional encodings")
                positions_note = gr.Markdown(label="Which positional encoding")
                position_plots = [gr.Image(label=label, type="numpy", format="png", interactive=False)
                                  for label in ("Sinusoidal", "The model's own")]
            with gr.Tab("Head statistics"):
                gr.Markdown("Averaged over query tokens; attention shares are between 0 and 1, entropy is in nats "
                            "(0 = one token gets everything). **Click a column header to sort.**")
                stats = gr.Dataframe(label="Per-head statistics", elem_id="attention-stats", wrap=False)
            with gr.Tab("ViT"):
                vit_source = vision_model()
                # declared here, at build time, so that on Ray Serve the ViT gets a deployment of its own
                vit_explorer = None if isinstance(vit_source, store.ModelLoadError) else connect(VitExplorer, vit_source)
                gr.Markdown(model_badge(vit_source))
                with gr.Row():
                    image = image_input(label="Image", elem_id="attention-image")
                    with gr.Column():
                        fusion = gr.Radio(list(att.HEAD_FUSIONS), value="mean", label="Head fusion")
                        discard = gr.Slider(0.0, MAX_DISCARD_RATIO, value=0.0, step=0.05, label="Discard ratio (weakest weights)")
                        run_vit = gr.Button("Show ViT attention", variant="primary", elem_id="attention-vit-run")
                        examples = fashion_examples()
                        if examples:
                            examples_that_run(examples, image, run_vit, label="Fashion-MNIST test images")
                        vit_label = gr.Label(label="Prediction", num_top_classes=5)
                vit_rollout = gr.Image(label="Attention rollout ([CLS] → patches)", type="numpy",
                                       format=views.OVERLAY_FORMAT, interactive=False, elem_id="attention-vit-rollout")
                vit_layers = gr.Image(label="[CLS] attention of each layer", type="numpy", format=views.OVERLAY_FORMAT,
                                      interactive=False)
                # patch_map_overlay scales each map from its own lowest to its highest patch, in inferno
                gr.HTML(views.colour_bar_html("inferno", "lowest patch", "highest patch", "Colour laid over the "
                                              "picture: attention, each map scaled to its own range"),
                        elem_id="attention-vit-key")
            with gr.Tab("Export"):
                gr.Markdown("Figures as PNG or SVG, and every layer's attention as NPZ (float32) or JSON. The "
                            "interactive figures also download as PNG from the camera button in their toolbar; the "
                            "positional and ViT figures are images (right-click to save).")
                with gr.Row():
                    figure_choice = gr.Radio(["heatmap", "step by step", "Q, K, V"], value="heatmap", label="Figure")
                    figure_format = gr.Radio(["png", "svg"], value="png", label="Format")
                    export_fig = gr.Button("Download figure")
                with gr.Row():
                    tensor_format = gr.Radio(["npz", "json"], value="npz", label="Attention tensors")
                    export_npz = gr.Button("Download tensors")
                download = gr.File(label="Download", elem_id="attention-download")

        # connected here, at build time, so that on Ray Serve each text model is a deployment of its own (a service
        # first connected inside an event runs in the UI replica)
        explorers = {name: connect(AttentionExplorer, source) for name, source in models.items()
                     if not isinstance(source, store.ModelLoadError)}

        def explorer(name: str):
            source = models.get(name)
            if source is None:
                raise InputError(f"Unknown model {name!r}; choose one of {', '.join(models)}.")
            if isinstance(source, store.ModelLoadError):
                raise source
            return explorers[name]

        @user_errors
        def analyse(model: str, text: str, pair: str, layer: int, head: int, heads: list[int]):
            cleaned, message = clean_text(text)
            second_clean = clean_text(pair, "second sentence")[0] if pair and pair.strip() else ""
            service = explorer(model)
            announce_first_use(models.get(model))
            result = service.analyse(cleaned, second_clean)
            layer_index = min(int(layer or 0), result.layers - 1)
            head_index = min(int(head or 0), result.heads - 1)
            chosen = [h for h in (heads or []) if h < result.heads]
            messages = [m for m in (message, result.notice) if m]
            return (result, service.describe(), "\n\n".join(f"ℹ️ {m}" for m in messages),
                    gr.Dropdown(choices=_choices(result.layers, "layer"), value=layer_index),
                    gr.Dropdown(choices=_choices(result.heads, "head"), value=head_index),
                    gr.CheckboxGroup(choices=_choices(result.heads, "head"), value=chosen),
                    views.model_view_html(result.attentions, selected=(layer_index, head_index)),
                    statistics_table(result))

        def _result(result: AttentionResult | None) -> AttentionResult:
            if result is None:
                raise InputError("Press “Show attention” first.")
            return result

        @user_errors
        def layer_views(result, layer: int, head: int, heads: list[int]):
            result = _result(result)
            return head_view(result, layer, heads), heatmap_figure(result, layer, head)

        @user_errors
        def step_views(model: str, result, layer: int, head: int):
            result = _result(result)
            steps = explorer(model).steps(result.text, result.pair, layer, head)
            diff = steps.extras["max_abs_diff"]
            note = (f"**Layer {layer}, head {head}** · d_k = {steps.query.shape[1]} · scale = "
                    f"{steps.scale:.4f} · mask: {'causal' if result.causal else 'none (every token sees every token)'}"
                    f"{' · RoPE applied to Q and K' if steps.query_before_rotation is not None else ''}\n\n"
                    f"Recomputed from the model's own weights vs the attention the model returned: "
                    f"**max |difference| = {diff:.2e}** {'✅' if diff <= 1e-5 else '⚠️'}")
            title = f"{result.model} · layer {layer}, head {head}"
            return (note, views.interactive_steps(steps, result.tokens, title),
                    views.interactive_vectors(steps, result.tokens, title))

        @user_errors
        def open_thumbnail(result, evt: gr.EventData):
            result = _result(result)
            layer_index = check_index(getattr(evt, "layer", None), result.layers, "layer")
            head_index = check_index(getattr(evt, "head", None), result.heads, "head")
            return (layer_index, head_index, heatmap_figure(result, layer_index, head_index),
                    views.model_view_html(result.attentions, selected=(layer_index, head_index)))

        @functools.lru_cache(maxsize=8)  # the same model and count always give the same pictures
        def position_pictures(name: str, count: int) -> tuple[str, np.ndarray, np.ndarray | None]:
            info = explorer(name).position_info()
            figures = positional_figures(info["dim"], count, info["learned"], info["inv_freq"], name)
            own = "learned position vectors" if info["learned"] is not None else "rotary embeddings (RoPE)" \
                if info["inv_freq"] is not None else "no positional encoding this view can read"
            note = (f"**{name}** uses {own}. Choose the other model above to see its kind "
                    f"(MiniLM: learned; SmolLM2: RoPE).")
            pictures = [views.figure_picture(figure) for figure in figures]
            return note, pictures[0], pictures[1] if len(pictures) > 1 else None

        @user_errors
        def position_views(model: str, positions: int):
            return position_pictures(model, max(2, min(int(positions), MAX_POSITIONS_SHOWN)))

        @user_errors
        def vit_views(image, head_fusion: str, discard_ratio: float):
            if vit_explorer is None:
                raise vit_source
            result = vit_explorer.analyse(load_picture(image))
            rollout, per_layer = rollout_maps(result, head_fusion, discard_ratio)
            return (result.top,
                    views.patch_maps_picture(result.picture, [rollout],
                                             [f"rollout ({head_fusion}, discard {discard_ratio:.2f})"]),
                    views.patch_maps_picture(result.picture, per_layer, [f"layer {i}" for i in range(len(per_layer))]))

        @user_errors
        def download_figure(model: str, result, figure: str, file_format: str, layer: int, head: int):
            result = _result(result)
            if figure == "heatmap":
                drawn = heatmap_figure(result, layer, head, interactive=False)
            else:
                steps = explorer(model).steps(result.text, result.pair, layer, head)
                drawn = (views.steps_figure if figure == "step by step" else views.vectors_figure)(steps, result.tokens)
            return str(export_figure(drawn, file_format, f"attention_{figure.replace(' ', '_').replace(',', '')}_"
                                                         f"L{layer}_H{head}"))

        @user_errors
        def download_tensors(result, file_format: str):
            return str(export_tensors(_result(result), file_format))

        @user_errors
        def switch_model(name: str):
            source = models[name]
            return model_badge(source), gr.Textbox(interactive=not (name == names[-1]))

        model_choice.change(switch_model, model_choice, [badge, pair], api_name=False)
        analysed = gr.on([run.click, text.submit], analyse, inputs=[model_choice, text, pair, layer, head, heads],
                         outputs=[result_state, badge, notice, layer, head, heads, model_html, stats],
                         api_name="attention_analyse", concurrency_id=SLUG)
        view_inputs = [result_state, layer, head, heads]
        analysed.then(layer_views, view_inputs, [head_html, heatmap], api_name="attention_views", concurrency_id=SLUG
                      ).then(step_views, [model_choice, result_state, layer, head],
                             [steps_note, steps_plot, vectors_plot], api_name="attention_steps", concurrency_id=SLUG)
        for control in (layer, head, heads):
            control.input(layer_views, view_inputs, [head_html, heatmap], api_name=False, concurrency_id=SLUG)
        for control in (layer, head):
            control.input(step_views, [model_choice, result_state, layer, head], [steps_note, steps_plot, vectors_plot],
                          api_name=False, concurrency_id=SLUG)
        model_html.click(open_thumbnail, result_state, [layer, head, opened, model_html], api_name=False,
                         concurrency_id=SLUG).then(layer_views, view_inputs, [head_html, heatmap], api_name=False,
                                                   concurrency_id=SLUG)
        show_positions.click(position_views, [model_choice, positions], [positions_note, *position_plots],
                             api_name="attention_positions", concurrency_id=SLUG)
        run_vit.click(vit_views, [image, fusion, discard], [vit_label, vit_rollout, vit_layers],
                      api_name="attention_vit", concurrency_id=SLUG)
        export_fig.click(download_figure, [model_choice, result_state, figure_choice, figure_format, layer, head],
                         download, api_name="attention_figure", concurrency_id=SLUG)
        export_npz.click(download_tensors, [result_state, tensor_format], download, api_name="attention_tensors",
                         concurrency_id=SLUG)
        deep_link(page, {"model": model_choice, "text": text, "pair": pair, "layer": layer, "head": head}, run=run)
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
            ModelSlot(task=DECODER_TASK, default=DECODER_DEFAULT, hub_example="gpt2", name="decoder")),
    # the encoder's views and a ViT picture (the views that follow an analysis need the page's session state)
    traffic=(ApiCall("attention_analyse", lambda: (text_models(page_context(demo))[0][0], EXAMPLES[0][0], "", 0, 0, [])),
             ApiCall("attention_analyse", lambda: (text_models(page_context(demo))[0][0], EXAMPLES[1][0], EXAMPLES[1][1], 2, 3, [0, 1])),
             ApiCall("attention_positions", lambda: (text_models(page_context(demo))[0][0], 64)),
             ApiCall("attention_vit", lambda: (handle_file(str(next(iter(fashion_mnist_examples().values())))),
                                               "mean", 0.0))),
)


if __name__ == "__main__":  # `python demos/attention/run.py` serves this demo alone
    from txgallery.gallery import launch_one

    launch_one(demo)
