"""Views of attention shared by the demos: matplotlib heatmaps, and the head view and model view as HTML for `gr.HTML`.

Figures are matplotlib `Figure`s made without pyplot (no global state, safe on server threads); `figure_bytes` saves
any of them as PNG or SVG for downloads.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure

CMAP = "viridis"


def _tick_labels(tokens: Sequence[str], limit: int = 64) -> tuple[list[int], list[str]]:
    """Every token when they fit, else an evenly spaced subset (the hover/zoom of a heatmap is not available)."""
    step = max(1, int(np.ceil(len(tokens) / limit)))
    positions = list(range(0, len(tokens), step))
    return positions, [str(tokens[i]) for i in positions]


def attention_heatmap(matrix, row_tokens: Sequence[str], col_tokens: Sequence[str], title: str = "",
                      vmin: float | None = 0.0, vmax: float | None = None, cmap: str = CMAP,
                      masked: np.ndarray | None = None) -> Figure:
    """A (rows, cols) attention matrix as a heatmap: queries (rows) on the y axis, keys (columns) on the x axis.

    Works for self-attention and for cross-attention (decoder rows, encoder columns). Cells where `masked` is true
    are drawn hatched grey, so a causal mask is visible rather than just dark.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (len(row_tokens), len(col_tokens)):
        raise ValueError(f"matrix {matrix.shape} does not match {len(row_tokens)} row and {len(col_tokens)} column tokens")
    rows, cols = matrix.shape
    side = min(11.0, max(4.0, 0.16 * max(rows, cols) + 2.5))
    # a fixed layout: matplotlib's constrained layout costs seconds with 128 tick labels per axis
    fontsize = 9 if max(rows, cols) <= 32 else 7 if max(rows, cols) <= 64 else 5
    width, height = side * max(0.6, min(1.6, cols / max(rows, 1))) + 1.6, side
    figure = Figure(figsize=(width, height), dpi=100)
    # margins that fit the longest token label (in inches: ~0.6 of the font size per character)
    label_inches = lambda tokens: 0.75 + 0.6 * fontsize / 72 * max((len(str(t)) for t in tokens), default=1)  # noqa: E731
    figure.subplots_adjust(left=label_inches(row_tokens) / width, bottom=label_inches(col_tokens) / height,
                           right=1 - 1.3 / width, top=1 - 0.45 / height)
    axes = figure.add_subplot()
    shown = np.ma.masked_array(matrix, mask=masked) if masked is not None else matrix
    finite = matrix[np.isfinite(matrix)]
    image = axes.imshow(shown, cmap=cmap, vmin=vmin if vmin is not None else (finite.min() if finite.size else 0),
                        vmax=vmax if vmax is not None else (finite.max() if finite.size else 1),
                        aspect="auto", interpolation="nearest")
    if masked is not None:
        axes.set_facecolor("#d9d9d9")
        axes.patch.set_hatch("///")
        axes.patch.set_edgecolor("#9a9a9a")
    for setter, count, tokens in ((axes.set_yticks, rows, row_tokens), (axes.set_xticks, cols, col_tokens)):
        positions, labels = _tick_labels(tokens)
        setter(positions, labels, fontsize=fontsize)
    axes.tick_params(axis="x", labelrotation=90)
    axes.set_ylabel("query (attends from)")
    axes.set_xlabel("key (attends to)")
    if title:
        axes.set_title(title, fontsize=11)
    figure.colorbar(image, cax=figure.add_axes((1 - 1.1 / width, 0.2, 0.15 / width, 0.6)))
    return figure


def figure_bytes(figure: Figure, fmt: str = "png", dpi: int = 120) -> bytes:
    """The figure saved as PNG or SVG."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"figures export as png or svg, not {fmt!r}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=dpi)
    return buffer.getvalue()


def escape(token: str) -> str:
    """A token made safe for HTML (tokens come from user text)."""
    return html.escape(str(token), quote=True)


# --- head view and model view (HTML for gr.HTML; the JS that makes them interactive is HEAD_VIEW_JS) ---------------

HEAD_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
               "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd")
SEGMENT_COLORS = ("#e8f0fe", "#fdeee0")  # sentence A, sentence B backgrounds
ROW = 18  # pixels per token row
MIN_LINE_WEIGHT = 0.01  # lines thinner than this are not drawn (invisible anyway; keeps 128 tokens light)


def head_color(head: int) -> str:
    """The colour of head `head` in the head view and its legend."""
    return HEAD_COLORS[head % len(HEAD_COLORS)]


def head_key_html(heads: Sequence[int]) -> str:
    """The head view's key: one swatch per shown head, in that head's line colour, with its number in text colour."""
    # dark-on-light text beside the swatch: white on the palette's light colours (#bcbd22, #17becf) fails contrast
    keys = "".join(f'<span class="txa-key" data-head="{h}" style="display:inline-flex;align-items:center;gap:4px;'
                   f'margin:0 10px 4px 0;font-size:14px;white-space:nowrap"><span class="txa-swatch" '
                   f'style="display:inline-block;width:22px;height:5px;border-radius:2px;background:{head_color(h)}">'
                   f'</span>head {h}</span>' for h in heads)
    return (f'<div class="txa-key-list" role="group" aria-label="line colour of each head" '
            f'style="display:flex;flex-wrap:wrap">{keys}</div>')


def _segment_key_html() -> str:
    swatches = "".join(f'<span style="display:inline-flex;align-items:center;gap:4px;margin-right:10px">'
                       f'<span style="display:inline-block;width:14px;height:14px;border:1px solid #999;background:'
                       f'{colour}"></span>sentence {name}</span>' for name, colour in zip("AB", SEGMENT_COLORS))
    return f'<div class="txa-segment-key" style="font-size:14px">Token background: {swatches}</div>'


def colour_bar_html(cmap: str, low: str, high: str, title: str, stops: int = 11) -> str:
    """A horizontal colour bar for `cmap` (a matplotlib colormap) from `low` to `high`, as HTML beside a view."""
    from matplotlib import colormaps

    colours = [colormaps[cmap](i / (stops - 1)) for i in range(stops)]
    gradient = ", ".join(f"rgb({r * 255:.0f}, {g * 255:.0f}, {b * 255:.0f}) {100 * i / (stops - 1):.0f}%"
                         for i, (r, g, b, _) in enumerate(colours))
    return (f'<div class="txa-colourbar" data-cmap="{escape(cmap)}" style="width:320px;max-width:100%;font-size:13px;'
            f'margin:4px 0 8px">{escape(title)}<div class="txa-colourbar-bar" style="height:14px;border:1px solid #999;'
            f'background:linear-gradient(to right, {gradient})"></div><div style="display:flex;'
            f'justify-content:space-between"><span>{escape(low)}</span><span>{escape(high)}</span></div></div>')


def head_selector_css(selector: str) -> str:
    """CSS that puts each head's colour swatch before its checkbox label in the heads selector at `selector`.

    The choices are "head 0", "head 1", … in order, so the n-th label is head n-1; the rules repeat every
    len(HEAD_COLORS) labels exactly as `head_color` cycles.
    """
    cycle = len(HEAD_COLORS)
    swatch = ('content:"";display:inline-block;width:14px;height:14px;border-radius:3px;margin-right:6px;'
              'vertical-align:-2px;background:')
    return "".join(f"{selector} label:nth-of-type({cycle}n+{h + 1}) span::before{{{swatch}{head_color(h)}}}"
                   for h in range(cycle))


def head_view_html(tokens: Sequence[str], attention: np.ndarray, heads: Sequence[int], layer: int,
                   segments: Sequence[int] | None = None, causal: bool = False,
                   min_weight: float = MIN_LINE_WEIGHT) -> str:
    """One layer's attention as lines from each query token (left) to the key tokens (right), one colour per head,
    opacity = weight. Hovering a token isolates its lines (see HEAD_VIEW_JS); `segments` shades sentence A/B."""
    attention = np.asarray(attention)
    size, width, left, right = len(tokens), 620, 170, 450
    height = size * ROW + 28
    parts = [f'<div class="txa-headview" data-layer="{layer}" data-heads="{",".join(map(str, heads))}">',
             f'<div class="txa-legend"><div style="margin-bottom:4px">Layer {layer} · line colour = head, darker line '
             f'= more attention{" · causal: a token only sees itself and earlier tokens" if causal else ""}</div>'
             + head_key_html(heads) + (_segment_key_html() if segments is not None else "") + "</div>",
             # a narrow screen scrolls the view sideways inside its box: scaled down, its tokens would be unreadable
             '<div class="txa-scroll" style="overflow-x:auto;max-width:100%">'
             f'<svg class="txa-svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'style="max-width:none;display:block" xmlns="http://www.w3.org/2000/svg"><style>'
             ".txa-svg text{font:12px monospace;cursor:pointer}.txa-svg path{fill:none;stroke-width:2}"
             ".txa-svg.focus path{display:none}.txa-svg.focus path.on{display:inline}"
             ".txa-svg text.on{font-weight:bold;fill:#c00}.txa-svg text:focus{outline:none}"
             ".txa-svg text:focus-visible{text-decoration:underline}</style>"]
    lines = []
    for head in heads:  # one group per head and query token keeps each line to ~45 bytes at 128 tokens
        weights = attention[head]
        lines.append(f'<g stroke="{head_color(head)}">')
        for i in range(size):
            keys = np.nonzero(weights[i] >= min_weight)[0]
            if keys.size:
                lines.append(f'<g data-i="{i}">' + "".join(
                    f'<path data-j="{j}" opacity="{weights[i, j]:.2f}" d="M{left + 4} {i * ROW + 24}L{right - 4} '
                    f'{j * ROW + 24}"/>' for j in keys) + "</g>")
        lines.append("</g>")
    parts.extend(lines)
    for i, token in enumerate(tokens):
        y = i * ROW + 28
        if segments is not None:
            fill = SEGMENT_COLORS[int(segments[i]) % 2]
            parts.append(f'<rect x="0" y="{y - 13}" width="{left}" height="{ROW - 2}" fill="{fill}"/>'
                         f'<rect x="{right}" y="{y - 13}" width="{width - right}" height="{ROW - 2}" fill="{fill}"/>')
        label = escape(token)
        # one Tab stop for the whole view (the first query token); the arrow keys move between tokens (HEAD_VIEW_JS)
        parts.append(f'<text data-side="l" data-tok="{i}" x="{left}" y="{y}" text-anchor="end" '
                     f'tabindex="{0 if i == 0 else -1}" aria-label="query token {i}: {label}">{label}</text>'
                     f'<text data-side="r" data-tok="{i}" x="{right}" y="{y}" tabindex="-1" '
                     f'aria-label="key token {i}: {label}">{label}</text>')
    parts.append("</svg></div></div>")
    return "".join(parts)


# Runs once per gr.HTML (js_on_load); delegation keeps working when the server re-renders the SVG.
HEAD_VIEW_JS = """
const isolate = (target) => {
  const svg = element.querySelector('svg.txa-svg');
  if (!svg) return;
  svg.querySelectorAll('.on').forEach((node) => node.classList.remove('on'));
  if (!target) { svg.classList.remove('focus'); return; }
  const side = target.dataset.side, index = target.dataset.tok;
  svg.classList.add('focus');
  target.classList.add('on');
  svg.querySelectorAll(side === 'l' ? `g[data-i="${index}"] > path` : `path[data-j="${index}"]`)
     .forEach((path) => path.classList.add('on'));
};
element.addEventListener('mouseover', (event) => isolate(event.target.closest('text[data-tok]')));
element.addEventListener('mouseleave', () => isolate(null));
// the keyboard does what hovering does: a focused token keeps only its lines; Up/Down move along a side, Left/Right
// cross to the same token on the other side, Escape leaves the view
element.addEventListener('focusin', (event) => isolate(event.target.closest('text[data-tok]')));
element.addEventListener('focusout', (event) => { if (!element.contains(event.relatedTarget)) isolate(null); });
element.addEventListener('keydown', (event) => {
  const token = event.target.closest('text[data-tok]');
  if (!token) return;
  const svg = token.closest('svg');
  const index = Number(token.dataset.tok), side = token.dataset.side;
  const moves = {ArrowDown: [side, index + 1], ArrowUp: [side, index - 1], ArrowLeft: ['l', index],
                 ArrowRight: ['r', index]};
  if (event.key === 'Escape') { token.blur(); return; }
  if (!(event.key in moves)) return;
  const [toSide, toIndex] = moves[event.key];
  const next = svg.querySelector(`text[data-side="${toSide}"][data-tok="${toIndex}"]`);
  event.preventDefault();
  if (!next) return;
  token.tabIndex = -1;
  next.tabIndex = 0;
  next.focus();
});
"""


def model_view_html(attentions: np.ndarray, thumbnail: int = 64, selected: tuple[int, int] | None = None) -> str:
    """Every layer (rows) × head (columns) as a small attention-map thumbnail; clicking one, or Enter or Space on it,
    opens it (MODEL_VIEW_JS).

    The thumbnails are one PNG (one encode instead of layers × heads) under a grid of clickable cells.
    """
    from matplotlib import colormaps
    from PIL import Image

    attentions = np.asarray(attentions, dtype=np.float32)
    layers, heads, size = attentions.shape[:3]
    gap, label_w, label_h = 4, 56, 18
    cell = thumbnail + gap
    # resample each map to thumbnail × thumbnail by nearest index (cheap, and every token keeps a visible band)
    index = np.minimum((np.arange(thumbnail) * size) // thumbnail, size - 1)
    maps = attentions[:, :, index][:, :, :, index]
    peak = maps.max(axis=(2, 3), keepdims=True)
    maps = maps / np.where(peak > 0, peak, 1.0)
    sheet = np.ones((layers * cell, heads * cell, 3), dtype=np.uint8) * 255
    colors = (colormaps[CMAP](maps)[..., :3] * 255).astype(np.uint8)  # (layers, heads, t, t, 3)
    for layer in range(layers):
        for head in range(heads):
            sheet[layer * cell: layer * cell + thumbnail, head * cell: head * cell + thumbnail] = colors[layer, head]
    buffer = io.BytesIO()
    Image.fromarray(sheet).save(buffer, format="PNG", compress_level=3)
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    width, height = label_w + heads * cell, label_h + layers * cell
    # each thumbnail is scaled to its own largest weight, so the bar's top end is per thumbnail, not one number
    parts = [colour_bar_html(CMAP, "0", "the head's largest weight", "Colour = attention weight, each thumbnail "
                             "scaled to its own maximum"),
             f'<div class="txa-modelview" style="position:relative;width:{width}px;height:{height}px;font-size:11px">',
             f'<img alt="attention of every layer and head" src="{uri}" width="{heads * cell}" height="{layers * cell}" '
             f'style="position:absolute;left:{label_w}px;top:{label_h}px;image-rendering:pixelated;max-width:none">']
    parts.extend(f'<span style="position:absolute;left:{label_w + h * cell}px;top:0">head {h}</span>' for h in range(heads))
    parts.extend(f'<span style="position:absolute;left:0;top:{label_h + l * cell + thumbnail // 2 - 7}px">layer {l}</span>'
                 for l in range(layers))
    # one Tab stop for the grid (the open thumbnail, else the first); the arrow keys move between cells (MODEL_VIEW_JS)
    current = selected if selected is not None and selected[0] < layers and selected[1] < heads else (0, 0)
    for layer in range(layers):
        for head in range(heads):
            ring = "outline:3px solid #d62728;" if selected == (layer, head) else ""
            parts.append(f'<div class="txa-thumb" data-layer="{layer}" data-head="{head}" role="button" '
                         f'tabindex="{0 if (layer, head) == current else -1}" aria-label="layer {layer}, head {head}" '
                         f'aria-pressed="{"true" if selected == (layer, head) else "false"}" '
                         f'title="layer {layer}, head {head}: click (or Enter) to open" '
                         f'style="position:absolute;left:{label_w + head * cell}px;top:{label_h + layer * cell}px;'
                         f'width:{thumbnail}px;height:{thumbnail}px;cursor:pointer;{ring}"></div>')
    parts.append("</div>")
    return "".join(parts)


MODEL_VIEW_JS = """
let refocus = null;  // the cell opened from the keyboard: focused again once the server has redrawn the grid
const open = (cell, fromKeyboard) => {
  refocus = fromKeyboard ? [cell.dataset.layer, cell.dataset.head] : null;
  trigger('click', {layer: Number(cell.dataset.layer), head: Number(cell.dataset.head)});
};
element.addEventListener('click', (event) => {
  const cell = event.target.closest('[data-layer]');
  if (cell) open(cell, false);
});
// Enter or Space opens a thumbnail, as a click does; the arrow keys move between thumbnails, Home/End along a row
element.addEventListener('keydown', (event) => {
  const cell = event.target.closest('.txa-thumb');
  if (!cell) return;
  if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); open(cell, true); return; }
  const layer = Number(cell.dataset.layer), head = Number(cell.dataset.head);
  const last = Math.max(...[...element.querySelectorAll('.txa-thumb')].map((c) => Number(c.dataset.head)));
  const moves = {ArrowRight: [layer, head + 1], ArrowLeft: [layer, head - 1], ArrowDown: [layer + 1, head],
                 ArrowUp: [layer - 1, head], Home: [layer, 0], End: [layer, last]};
  if (!(event.key in moves)) return;
  event.preventDefault();
  const [toLayer, toHead] = moves[event.key];
  const next = element.querySelector(`.txa-thumb[data-layer="${toLayer}"][data-head="${toHead}"]`);
  if (!next) return;
  cell.tabIndex = -1;
  next.tabIndex = 0;
  next.focus();
});
new MutationObserver(() => {
  if (!refocus) return;
  const cell = element.querySelector(`.txa-thumb[data-layer="${refocus[0]}"][data-head="${refocus[1]}"]`);
  if (cell && cell.getAttribute('aria-pressed') === 'true') { refocus = null; cell.focus(); }
}).observe(element, {childList: true, subtree: true});
"""


# --- figures for the step-by-step, positional-encoding and ViT views -------------------------------------------------


def steps_figure(steps, tokens: Sequence[str], title: str = "") -> Figure:
    """Q·Kᵀ, the scaled scores, the mask and the softmax of one head side by side (the step-by-step view)."""
    panels = [("1. Q·Kᵀ (raw scores)", steps.scores, None),
              (f"2. × {steps.scale:.4f} (= 1/√d_k for most models)", steps.scaled, None),
              ("3. + mask (grey: −∞, never attended)", steps.scaled + steps.mask, np.isinf(steps.mask)),
              ("4. softmax (each row sums to 1)", steps.weights, None)]
    # fixed layout and one shared tick set: constrained layout with four colorbars costs seconds per figure
    figure = Figure(figsize=(16, 4.8), dpi=100)
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.2, top=0.86, wspace=0.45)
    axes = figure.subplots(1, 4)
    positions, labels = _tick_labels(tokens, limit=24)
    for ax, (name, matrix, masked) in zip(axes, panels):
        shown = np.ma.masked_array(matrix, mask=masked) if masked is not None else matrix
        if masked is not None:
            ax.set_facecolor("#d9d9d9")
        image = ax.imshow(shown, cmap=CMAP if "softmax" in name else "coolwarm", aspect="auto",
                          interpolation="nearest", vmin=0 if "softmax" in name else None)
        ax.set_title(name, fontsize=9)
        ax.set_xticks(positions, labels, fontsize=6, rotation=90)
        ax.set_yticks(positions, labels, fontsize=6)
        figure.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    if title:
        figure.suptitle(title, fontsize=11)
    return figure


def vectors_figure(steps, tokens: Sequence[str], title: str = "") -> Figure:
    """The head's Q, K and V vectors (tokens × d_k), and for RoPE models Q and K before the rotation."""
    panels = [("Q", steps.query), ("K", steps.key), ("V", steps.value), ("output = softmax·V", steps.output)]
    if steps.query_before_rotation is not None:
        panels = [("Q before RoPE", steps.query_before_rotation), ("K before RoPE", steps.key_before_rotation)] + panels
    figure = Figure(figsize=(3.2 * len(panels), 4.2), dpi=100)
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.86, wspace=0.5)
    axes = figure.subplots(1, len(panels))
    positions, labels = _tick_labels(tokens, limit=24)
    for ax, (name, matrix) in zip(axes, panels):
        limit = float(np.abs(matrix).max()) or 1.0
        ax.imshow(matrix, cmap="coolwarm", aspect="auto", interpolation="nearest", vmin=-limit, vmax=limit)
        ax.set_title(name, fontsize=9)
        ax.set_yticks(positions, labels, fontsize=6)
        ax.set_xlabel("dimension", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=11)
    return figure


def positions_figure(encoding: np.ndarray, similarity: np.ndarray, title: str, encoding_label: str) -> Figure:
    """A positional encoding (positions × dimensions) beside its position-to-position similarity."""
    figure = Figure(figsize=(12, 4.8), layout="constrained")
    left, right = figure.subplots(1, 2)
    # a few outlier dimensions (BERT's learned vectors have them) would wash every other value grey: beyond twice the
    # 99th percentile of |value| the colours stop there, and the colour bar's arrows say that values are clipped
    largest, typical = float(np.abs(encoding).max()), float(np.percentile(np.abs(encoding), 99))
    clipped = largest > 2 * typical > 0
    limit = (typical if clipped else largest) or 1.0
    image = left.imshow(encoding, cmap="coolwarm", aspect="auto", interpolation="nearest", vmin=-limit, vmax=limit)
    left.set_xlabel(encoding_label)
    left.set_ylabel("position")
    left.set_title(title + (" (colours clipped at the 99th percentile)" if clipped else ""), fontsize=10)
    figure.colorbar(image, ax=left, shrink=0.8, extend="both" if clipped else "neither")
    image = right.imshow(similarity, cmap=CMAP, aspect="equal", interpolation="nearest")
    right.set_xlabel("position")
    right.set_ylabel("position")
    right.set_title("position-to-position similarity", fontsize=10)
    figure.colorbar(image, ax=right, shrink=0.8)
    return figure


def figure_picture(figure: Figure) -> np.ndarray:
    """A matplotlib figure rendered once to an RGB array, so a page can reuse it instead of Gradio drawing it again
    on every request."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


# Gradio's format for pictures drawn over a photo: JPEG, far cheaper than PNG per request (BENCHMARKS.md, "ViT")
OVERLAY_FORMAT = "jpeg"


def enlarged_picture(picture: np.ndarray, side: int = 336) -> Any:
    """A picture as an RGB PIL image, scaled with sharp pixels to `side`×`side` (at least its own size)."""
    from PIL import Image

    side = max(side, *np.asarray(picture).shape[:2])
    return Image.fromarray(np.asarray(picture)).convert("RGB").resize((side, side), Image.Resampling.NEAREST)


def patch_map_overlay(picture: np.ndarray, patch_map: np.ndarray, side: int = 336, alpha: float = 0.55) -> np.ndarray:
    """A per-patch map (rollout, one layer's [CLS] attention) in inferno colours, min to max, blended over the picture.

    Drawn with PIL: Gradio would re-render a matplotlib figure on every request (BENCHMARKS.md, "ViT").
    """
    from matplotlib import colormaps
    from PIL import Image

    image = enlarged_picture(picture, side)
    values = np.asarray(patch_map, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    colours = (colormaps["inferno"](scaled)[..., :3] * 255).astype(np.uint8)
    overlay = Image.fromarray(colours).resize(image.size, Image.Resampling.NEAREST)
    return np.asarray(Image.blend(image, overlay, alpha))


def patch_maps_picture(picture: np.ndarray, maps: Sequence[np.ndarray], titles: Sequence[str],
                       side: int = 224) -> np.ndarray:
    """The picture beside one or more per-patch maps laid over it, each titled: one RGB array."""
    from PIL import Image, ImageDraw

    panels = [np.asarray(enlarged_picture(picture, side))] + [patch_map_overlay(picture, m, side) for m in maps]
    titled = ["input", *titles]
    strip, gap = 22, 6
    size = panels[0].shape[0]
    sheet = Image.new("RGB", (len(panels) * (size + gap) - gap, size + strip), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (panel, title) in enumerate(zip(panels, titled)):
        x = i * (size + gap)
        sheet.paste(Image.fromarray(panel), (x, strip))
        draw.text((x + size / 2, strip / 2), title, fill="black", anchor="mm")
    return np.asarray(sheet)


# --- interactive (plotly) versions for the page: the browser draws them, hover shows the values ------------------------


def _plotly_axis(tokens: Sequence[str]) -> dict:
    # numeric axes with token tick labels: a categorical axis would merge repeated tokens ("the", "the")
    return {"tickmode": "array", "tickvals": list(range(len(tokens))), "ticktext": [str(t) for t in tokens],
            "tickfont": {"size": 11 if len(tokens) <= 32 else 8 if len(tokens) <= 64 else 6}}


def _plotly_trace(matrix: np.ndarray, masked: np.ndarray | None, colorscale: str, **kwargs):
    import plotly.graph_objects as go

    z = np.asarray(matrix, dtype=np.float32).copy()
    if masked is not None:
        z[masked] = np.nan  # masked cells show the grey background: the mask is visible, not just dark
    z[~np.isfinite(z)] = np.nan
    return go.Heatmap(z=z, colorscale=colorscale, hoverongaps=False,
                      hovertemplate="query %{y} → key %{x}<br>%{z:.4f}<extra></extra>", **kwargs)


def _panel_colorbar(figure, column: int) -> dict:
    # plotly puts every colour bar at the figure's right edge unless told: this one sits just right of its panel
    domain = figure.layout[f"xaxis{column if column > 1 else ''}"].domain
    return {"x": domain[1] + 0.004, "xanchor": "left", "thickness": 8, "xpad": 2, "len": 0.85,
            "tickfont": {"size": 9}}


def interactive_heatmap(matrix, row_tokens: Sequence[str], col_tokens: Sequence[str], title: str = "",
                        masked: np.ndarray | None = None):
    """`attention_heatmap` as a plotly figure for the page (queries as rows, keys as columns; hover for values)."""
    import plotly.graph_objects as go

    matrix = np.asarray(matrix)
    if matrix.shape != (len(row_tokens), len(col_tokens)):
        raise ValueError(f"matrix {matrix.shape} does not match {len(row_tokens)} row and {len(col_tokens)} column tokens")
    figure = go.Figure(_plotly_trace(matrix, masked, "Viridis", zmin=0,
                                     colorbar={"title": {"text": "attention<br>weight", "side": "top"}}))
    side = min(900, max(420, 14 * max(matrix.shape) + 160))
    figure.update_layout(title=title, height=side, width=side + 80, plot_bgcolor="#d9d9d9",
                         xaxis={**_plotly_axis(col_tokens), "title": "key (attends to)", "tickangle": -90},
                         yaxis={**_plotly_axis(row_tokens), "title": "query (attends from)", "autorange": "reversed"},
                         margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure


def interactive_steps(steps, tokens: Sequence[str], title: str = ""):
    """The step-by-step panels (Q·Kᵀ, scaled, masked, softmax) as one plotly figure."""
    from plotly.subplots import make_subplots

    masked = np.isinf(steps.mask)
    panels = [("1. Q·Kᵀ", steps.scores, None, "RdBu_r"), (f"2. × {steps.scale:.4f}", steps.scaled, None, "RdBu_r"),
              ("3. + mask (grey = −∞)", steps.scaled + steps.mask, masked, "RdBu_r"),
              ("4. softmax (rows sum to 1)", steps.weights, None, "Viridis")]
    figure = make_subplots(1, 4, subplot_titles=[p[0] for p in panels], horizontal_spacing=0.08)
    for column, (_, matrix, mask, colorscale) in enumerate(panels, start=1):
        # every panel has its own range (scores, scaled scores, weights): one colour bar each
        figure.add_trace(_plotly_trace(matrix, mask, colorscale, colorbar=_panel_colorbar(figure, column)), 1, column)
        figure.update_xaxes(_plotly_axis(tokens) | {"tickangle": -90}, row=1, col=column)
        figure.update_yaxes(_plotly_axis(tokens) | {"autorange": "reversed"}, row=1, col=column)
    figure.update_layout(title=title, height=460, plot_bgcolor="#d9d9d9", margin={"l": 10, "r": 10, "t": 70, "b": 10})
    return figure


def interactive_vectors(steps, tokens: Sequence[str], title: str = ""):
    """The head's Q, K, V (and, for RoPE, Q and K before the rotation) and its output as one plotly figure."""
    from plotly.subplots import make_subplots

    panels = [("Q", steps.query), ("K", steps.key), ("V", steps.value), ("output = softmax·V", steps.output)]
    if steps.query_before_rotation is not None:
        panels = [("Q before RoPE", steps.query_before_rotation), ("K before RoPE", steps.key_before_rotation)] + panels
    figure = make_subplots(1, len(panels), subplot_titles=[p[0] for p in panels], horizontal_spacing=0.06)
    for column, (_, matrix) in enumerate(panels, start=1):
        limit = float(np.abs(matrix).max()) or 1.0
        figure.add_trace(_plotly_trace(matrix, None, "RdBu_r", zmin=-limit, zmax=limit,
                                       colorbar=_panel_colorbar(figure, column)), 1, column)
        figure.update_yaxes(_plotly_axis(tokens) | {"autorange": "reversed", "showticklabels": column == 1},
                            row=1, col=column)
    figure.update_layout(title=title, height=420, margin={"l": 10, "r": 10, "t": 70, "b": 10})
    return figure
