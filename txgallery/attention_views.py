"""Views of attention shared by the demos: matplotlib heatmaps, and the head view and model view as HTML for `gr.HTML`.

Figures are matplotlib `Figure`s made without pyplot (no global state, safe on server threads); `figure_bytes` saves
any of them as PNG or SVG for downloads.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Sequence

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
    figure = Figure(figsize=(side * max(0.6, min(1.6, cols / max(rows, 1))) + 1.2, side), layout="constrained")
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
    fontsize = 9 if max(rows, cols) <= 32 else 7 if max(rows, cols) <= 64 else 5
    for setter, count, tokens in ((axes.set_yticks, rows, row_tokens), (axes.set_xticks, cols, col_tokens)):
        positions, labels = _tick_labels(tokens)
        setter(positions, labels, fontsize=fontsize)
    axes.tick_params(axis="x", labelrotation=90)
    axes.set_ylabel("query (attends from)")
    axes.set_xlabel("key (attends to)")
    if title:
        axes.set_title(title, fontsize=11)
    figure.colorbar(image, ax=axes, shrink=0.8)
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


def png_data_uri(matrix: np.ndarray, size: int = 96) -> str:
    """A small PNG of a [0, 1] matrix (viridis), as a data URI for thumbnails."""
    from matplotlib import colormaps
    from PIL import Image

    matrix = np.asarray(matrix, dtype=np.float64)
    peak = matrix.max() if matrix.size and matrix.max() > 0 else 1.0
    rgba = (colormaps[CMAP](matrix / peak)[..., :3] * 255).astype(np.uint8)
    image = Image.fromarray(rgba).resize((size, size), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
