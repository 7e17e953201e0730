"""Attention maths shared by the demos: rollout, per-head statistics, positional encodings, and scaled dot-product
attention recomputed step by step from a model's own weights.

Everything here takes and returns plain arrays (numpy, or torch where a model is involved) and never touches Gradio.
"""

from __future__ import annotations

import logging
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from txgallery.lib.threads import is_tiny_cpu_model
from txgallery.limits import MAX_DISCARD_RATIO, InputError

HEAD_FUSIONS = ("mean", "min", "max")

log = logging.getLogger(__name__)


def check_rollout_settings(head_fusion: str, discard_ratio: float) -> tuple[str, float]:
    """A rollout's head fusion and discard ratio, checked (`InputError` says what is allowed)."""
    if not isinstance(head_fusion, str) or head_fusion not in HEAD_FUSIONS:
        raise InputError(f"Head fusion must be one of {', '.join(HEAD_FUSIONS)}.")
    try:
        discard_ratio = float(discard_ratio or 0.0)
    except (TypeError, ValueError):
        raise InputError("The discard ratio must be a number.") from None
    if not 0.0 <= discard_ratio <= MAX_DISCARD_RATIO:
        raise InputError(f"The discard ratio must be between 0 and {MAX_DISCARD_RATIO}.")
    return head_fusion, discard_ratio


# --- attention maps -------------------------------------------------------------------------------------------------


def as_heads(attention: Any, dtype: type = np.float64) -> np.ndarray:
    """One layer's attention as a (heads, T, T) array of `dtype`; accepts torch or numpy, with or without a batch
    axis."""
    array = attention.detach().float().cpu().numpy() if hasattr(attention, "detach") else np.asarray(attention)
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise ValueError(f"expected a batch of one, got attention of shape {array.shape}")
        array = array[0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[-1] != array.shape[-2]:
        raise ValueError(f"expected (heads, T, T) attention, got shape {array.shape}")
    return array.astype(dtype, copy=False)


def fuse_heads(attention: np.ndarray, head_fusion: str = "mean") -> np.ndarray:
    """Combine a layer's heads (heads, T, T) into one (T, T) map by their mean, min or max."""
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, not {head_fusion!r}")
    return getattr(np, head_fusion)(attention, axis=0)


def _weakest(values: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` smallest values, ties broken by position (what a stable argsort gives), in O(n)."""
    if count <= 0:
        return np.zeros(0, dtype=np.intp)
    threshold = np.partition(values, count - 1)[count - 1]
    below = np.flatnonzero(values < threshold)
    tied = np.flatnonzero(values == threshold)[: count - below.size]
    return np.concatenate([below, tied])


def rollout_layers(attentions: Sequence[Any], head_fusion: str = "mean",
                   discard_ratio: float = 0.0) -> list[np.ndarray]:
    """Each layer's step of attention rollout: heads fused, the weakest weights dropped, the residual added, rows
    normalised to 1 (float64 (T, T) each)."""
    if not attentions:
        raise ValueError("attention rollout needs at least one layer")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), not {discard_ratio}")
    layers = []
    for attention in attentions:
        # fuse the heads in the model's precision, then work in float64 (ViT-B: 12 heads of 197×197 per layer)
        fused = fuse_heads(as_heads(attention, np.float32), head_fusion).astype(np.float64)
        size = fused.shape[-1]
        if discard_ratio > 0:
            flat = fused.reshape(-1)
            drop = _weakest(flat, int(flat.size * discard_ratio))
            flat[drop[drop != 0]] = 0.0
        layer = fused + np.eye(size)  # the residual connection (halving it would cancel in the normalisation)
        layers.append(layer / layer.sum(axis=-1, keepdims=True))
    return layers


def attention_rollout(attentions: Sequence[Any], head_fusion: str = "mean", discard_ratio: float = 0.0) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020): how much each token's final representation draws on each input token.

    Each layer's heads are fused, the weakest `discard_ratio` of its weights are dropped (never the first token's
    attention to itself, as in Gildenblat's ViT explainability recipe), the residual connection is added as an
    identity, rows are re-normalised, and the layers are multiplied from the first to the last. Returns (T, T) with
    rows summing to 1; row 0 of a ViT is the [CLS] token's view of every patch.
    """
    rollout = None
    for layer in rollout_layers(attentions, head_fusion, discard_ratio):
        rollout = layer if rollout is None else layer @ rollout
    return rollout / rollout.sum(axis=-1, keepdims=True)


def rollout_row(attentions: Sequence[Any], head_fusion: str = "mean", discard_ratio: float = 0.0,
                token: int = 0) -> np.ndarray:
    """One row of `attention_rollout` (default: the [CLS] token's), (T,): vector × matrix products from the last
    layer down, instead of the whole matrix product (ViT-B: 0.5 instead of 92 million multiply-adds)."""
    layers = rollout_layers(attentions, head_fusion, discard_ratio)
    row = np.zeros(layers[0].shape[-1])
    row[token] = 1.0
    for layer in reversed(layers):
        row = row @ layer
    return row / row.sum()


def cls_patch_map(matrix: np.ndarray, grid: tuple[int, int], prefix_tokens: int = 1) -> np.ndarray:
    """Row 0 ([CLS]) of a (T, T) rollout or attention map (or that row alone, (T,)), without the prefix tokens, as a
    (rows, cols) patch grid summing to 1."""
    matrix = np.asarray(matrix, dtype=np.float64)
    patches = (matrix if matrix.ndim == 1 else matrix[0])[prefix_tokens:]
    if patches.size != grid[0] * grid[1]:
        raise ValueError(f"{patches.size} patch tokens do not fill a {grid[0]}×{grid[1]} grid")
    total = patches.sum()
    return (patches / total if total > 0 else np.full_like(patches, 1.0 / patches.size)).reshape(grid)


def causal_mask(size: int) -> np.ndarray:
    """The additive causal mask of a decoder: 0 on and below the diagonal, -inf above (no peeking at the future)."""
    return np.triu(np.full((size, size), -np.inf), k=1)


# --- per-head statistics ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadStats:
    """What one head does, averaged over query positions (attention shares are in [0, 1])."""

    layer: int
    head: int
    entropy: float  # nats; low = focused on few tokens
    to_first: float  # to position 0: [CLS] for BERT, BOS or the first token for decoders
    to_separators: float  # to [SEP] / EOS / other special tokens after position 0
    to_previous: float  # to the token just before
    to_self: float  # to the query token itself


def head_statistics(attentions: np.ndarray, special: Sequence[bool] | None = None) -> list[HeadStats]:
    """Statistics of every head of a (layers, heads, T, T) attention stack; `special` marks separator tokens."""
    attentions = np.asarray(attentions, dtype=np.float64)
    layers, heads, size, _ = attentions.shape
    separators = np.zeros(size, dtype=bool) if special is None else np.asarray(special, dtype=bool).copy()
    separators[:1] = False  # position 0 has its own column
    p = np.clip(attentions, 1e-12, 1.0)
    entropy = -(attentions * np.log(p)).sum(-1).mean(-1)
    to_first = attentions[..., :, 0].mean(-1)
    to_separators = attentions[..., :, separators].sum(-1).mean(-1)
    rows = np.arange(1, size)
    to_previous = attentions[..., rows, rows - 1].mean(-1) if size > 1 else np.zeros((layers, heads))
    to_self = np.diagonal(attentions, axis1=-2, axis2=-1).mean(-1)
    return [HeadStats(layer, head, float(entropy[layer, head]), float(to_first[layer, head]),
                      float(to_separators[layer, head]), float(to_previous[layer, head]), float(to_self[layer, head]))
            for layer in range(layers) for head in range(heads)]


# --- positional encodings ---------------------------------------------------------------------------------------------


def sinusoidal_encoding(positions: int, dim: int, base: float = 10_000.0) -> np.ndarray:
    """The original Transformer's encoding: PE[p, 2i] = sin(p / base^(2i/d)), PE[p, 2i+1] = cos(same); (positions, dim)."""
    angles = np.arange(positions)[:, None] / base ** (np.arange(0, dim, 2)[None, :] / dim)
    encoding = np.zeros((positions, dim))
    encoding[:, 0::2] = np.sin(angles)
    encoding[:, 1::2] = np.cos(angles[:, : dim // 2])
    return encoding


def rope_angles(positions: int, inv_freq: np.ndarray) -> np.ndarray:
    """Rotary embeddings: the angle p·θ_i by which position p turns the i-th pair of query/key dimensions."""
    return np.arange(positions)[:, None] * np.asarray(inv_freq, dtype=np.float64)[None, :]


def rope_similarity(positions: int, inv_freq: np.ndarray) -> np.ndarray:
    """q·k of the same unit vector rotated to positions m and n: mean_i cos((m−n)·θ_i); depends only on m − n."""
    angles = rope_angles(positions, inv_freq)
    return np.cos(angles[:, None, :] - angles[None, :, :]).mean(-1)


def cosine_similarity(vectors: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of the rows of `vectors`."""
    vectors = np.asarray(vectors, dtype=np.float64)
    unit = vectors / np.clip(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12, None)
    return unit @ unit.T


# --- scaled dot-product attention, step by step -------------------------------------------------------------------------


@dataclass
class AttentionSteps:
    """softmax(Q·Kᵀ/√d_k + mask)·V for one head, every intermediate kept (arrays are (T, d_k) or (T, T))."""

    query: np.ndarray
    key: np.ndarray
    value: np.ndarray
    scores: np.ndarray  # Q·Kᵀ
    scale: float  # the factor the scores are multiplied by, 1/√d_k for most models
    scaled: np.ndarray
    mask: np.ndarray  # additive: 0 where allowed, -inf where not
    weights: np.ndarray  # the softmax: the attention map
    output: np.ndarray  # weights·V
    query_before_rotation: np.ndarray | None = None  # RoPE models: Q and K before the rotation
    key_before_rotation: np.ndarray | None = None
    extras: dict = field(default_factory=dict)


def scaled_dot_product_steps(query, key, value, mask=None, scale: float | None = None) -> AttentionSteps:
    """Scaled dot-product attention of one head, computed in plain steps (torch tensors or arrays, (T, d_k))."""
    import torch

    q, k, v = (torch.as_tensor(x).float() for x in (query, key, value))
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = q @ k.transpose(-1, -2)
    scaled = scores * scale
    additive = torch.zeros_like(scaled) if mask is None else torch.as_tensor(mask, dtype=scaled.dtype)
    weights = torch.softmax(scaled + additive, dim=-1)
    output = weights @ v
    as_np = lambda t: t.detach().cpu().numpy()  # noqa: E731
    return AttentionSteps(as_np(q), as_np(k), as_np(v), as_np(scores), float(scale), as_np(scaled), as_np(additive),
                          as_np(weights), as_np(output))


# --- reading a model's own attention layers -------------------------------------------------------------------------


def attention_modules(model) -> list:
    """The self-attention modules of a BERT/RoBERTa, Llama-style or GPT-2 model, in layer order."""
    found = []
    for module in model.modules():
        names = set(dict(module.named_children()))
        if {"query", "key", "value"} <= names or {"q_proj", "k_proj", "v_proj"} <= names or "c_attn" in names:
            found.append(module)
    return found


def project_qkv(module, hidden_states, position_embeddings=None) -> dict:
    """Q, K, V of every head, projected from `hidden_states` (1, T, d_model) with the module's own weights.

    Returns (heads, T, d_k) tensors: "query"/"key"/"value" as the scores use them (after RoPE, with grouped K/V
    heads repeated for their query heads), and for RoPE models also "query_before_rotation"/"key_before_rotation".
    """
    import torch

    with torch.no_grad():
        return _project_qkv(module, hidden_states[0], position_embeddings)


def _project_qkv(module, x, position_embeddings) -> dict:
    import torch

    if hasattr(module, "c_attn"):  # GPT-2: one Conv1D (weight stored as in × out) makes Q, K and V at once
        head_dim = module.head_dim
        q, k, v = (x @ module.c_attn.weight + module.c_attn.bias).split(module.split_size, dim=-1)
    elif hasattr(module, "q_proj"):  # Llama family
        head_dim = module.head_dim
        q, k, v = module.q_proj(x), module.k_proj(x), module.v_proj(x)
    else:  # BERT family
        head_dim = module.attention_head_size
        q, k, v = module.query(x), module.key(x), module.value(x)
    q, k, v = (t.view(t.shape[0], -1, head_dim).transpose(0, 1) for t in (q, k, v))  # (heads, T, d_k)
    out: dict[str, Any] = {}
    if position_embeddings is not None:
        cos, sin = (t[0] for t in position_embeddings)  # (T, d_k)
        out["query_before_rotation"], out["key_before_rotation"] = q, k
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
    groups = q.shape[0] // k.shape[0]  # grouped-query attention: each K/V head serves `groups` query heads
    out["query"], out["key"], out["value"] = q, torch.repeat_interleave(k, groups, 0), torch.repeat_interleave(v, groups, 0)
    out["scale"] = float(getattr(module, "scaling", head_dim ** -0.5))
    return out


def rotate_half(x):
    """RoPE's rotation by 90° of each (x_i, x_{i+d/2}) pair: (x1, x2) → (−x2, x1)."""
    import torch

    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


@dataclass
class AttentionTrace:
    """One forward pass: the model's attention maps and, per layer, what its attention module was given."""

    attentions: list  # per layer, (heads, T, T) torch tensors as the model returned them
    inputs: list  # per layer, the hidden states entering the attention module (1, T, d_model)
    position_embeddings: list  # per layer, (cos, sin) for RoPE models, else None
    causal: bool


def trace_attention(model, inputs: dict, causal: bool) -> AttentionTrace:
    """Run `model` once (eager attention) and record every layer's attention maps and attention-module inputs."""
    import torch

    modules = attention_modules(model)
    if not modules:
        raise ValueError(f"{type(model).__name__} has no attention layers this explorer can read")
    captured: list[tuple] = [None] * len(modules)
    owner = threading.get_ident()  # the store shares model objects: ignore other threads' forwards

    def recorder(index: int):
        def hook(module, args, kwargs):
            if threading.get_ident() != owner:
                return
            hidden = kwargs.get("hidden_states", args[0] if args else None)
            captured[index] = (hidden.detach(), kwargs.get("position_embeddings"))

        return hook

    handles = [m.register_forward_pre_hook(recorder(i), with_kwargs=True) for i, m in enumerate(modules)]
    try:
        with torch.no_grad():  # not inference_mode: the recorded inputs are reused in later computations
            outputs = model(**inputs, output_attentions=True)
    finally:
        for handle in handles:
            handle.remove()
    attentions = [a[0].float() for a in outputs.attentions]
    if any(a is None for a in captured) or len(attentions) != len(modules):
        raise ValueError(f"could not read the attention layers of {type(model).__name__}")
    return AttentionTrace(attentions, [c[0] for c in captured], [c[1] for c in captured], causal)


def recompute_head(trace: AttentionTrace, model, layer: int, head: int) -> AttentionSteps:
    """Recompute one head's attention from the model's own weights and compare it with what the model returned."""
    module = attention_modules(model)[layer]
    projected = project_qkv(module, trace.inputs[layer], trace.position_embeddings[layer])
    size = projected["query"].shape[1]
    steps = scaled_dot_product_steps(projected["query"][head], projected["key"][head], projected["value"][head],
                                     causal_mask(size) if trace.causal else None, projected["scale"])
    if "query_before_rotation" in projected:
        groups = projected["query"].shape[0] // projected["key_before_rotation"].shape[0]
        steps.query_before_rotation = projected["query_before_rotation"][head].cpu().numpy()
        steps.key_before_rotation = projected["key_before_rotation"][head // groups].cpu().numpy()
    steps.extras["max_abs_diff"] = float(np.abs(steps.weights - trace.attentions[layer][head].cpu().numpy()).max())
    return steps


def recompute_layer_error(trace: AttentionTrace, model, layer: int) -> float:
    """Largest |recomputed − returned| attention weight over every head of one layer."""
    import torch

    with torch.no_grad():
        return _recompute_layer_error(trace, model, layer)


def _recompute_layer_error(trace: AttentionTrace, model, layer: int) -> float:
    import torch

    module = attention_modules(model)[layer]
    projected = project_qkv(module, trace.inputs[layer], trace.position_embeddings[layer])
    scores = projected["query"] @ projected["key"].transpose(-1, -2) * projected["scale"]
    if trace.causal:
        scores = scores + torch.as_tensor(causal_mask(scores.shape[-1]), dtype=scores.dtype, device=scores.device)
    weights = torch.softmax(scores.float(), dim=-1)
    return float((weights - trace.attentions[layer]).abs().max())


# --- vision transformers ---------------------------------------------------------------------------------------------


@dataclass
class VitAttention:
    """Every layer's attention of a ViT on one image, and how its tokens map to patches."""

    attentions: list  # per layer, (heads, T, T) numpy arrays
    grid: tuple[int, int]  # patches per column and per row
    prefix_tokens: int  # [CLS] (and register/distillation tokens) before the patches
    logits: np.ndarray


def find_timm_vit(model):
    """The timm VisionTransformer inside `model` (itself, or a wrapper's submodule), or None."""
    for module in model.modules():
        if hasattr(module, "blocks") and hasattr(module, "patch_embed") and hasattr(module, "num_prefix_tokens"):
            return module
    return None


def vit_attentions(model, pixel_values, head_fusion: str | None = None) -> VitAttention:
    """Run a ViT on a (1, C, H, W) batch and return each layer's attention maps.

    timm computes attention with a fused kernel that never materialises the weights. For its standard `Attention`
    block the forward stays fused (as fast as a plain forward) and only each block's qkv projection is kept; the
    weights softmax(q·kᵀ·scale) of all layers are then computed from it after the forward. Other attention blocks
    are switched to their eager path for this one call and read where the softmax enters the attention dropout.
    transformers ViTs return their attentions when asked (loaded with eager attention).

    With `head_fusion` ("mean", "min", "max") each layer's heads are fused on the model's device and every layer
    comes back as one (1, T, T) map: a twelfth of ViT-B's 22 MB to move off a GPU, for callers that need no heads.
    """
    import torch

    vit = find_timm_vit(model)
    with torch.inference_mode():
        if vit is None:  # a transformers ViT
            outputs = model(pixel_values=pixel_values, output_attentions=True)
            attentions, logits = [a[0] for a in outputs.attentions], outputs.logits
            side = model.config.image_size // model.config.patch_size
            grid, prefix_tokens = (side, side), 1
        else:
            from timm.layers import Attention

            uniform = len({(b.attn.num_heads, b.attn.head_dim) for b in vit.blocks}) == 1
            if not (uniform and all(type(b.attn) is Attention for b in vit.blocks)):
                attentions, logits = _timm_attentions_eager(model, vit, pixel_values)
            elif (graph := _attention_graph(model, vit, pixel_values)) is not None:
                attentions, logits = graph(pixel_values)
            else:
                attentions, logits = _timm_attentions_from_qkv(model, vit, pixel_values)
            grid, prefix_tokens = tuple(vit.patch_embed.grid_size), vit.num_prefix_tokens
        # (layers, heads, T, T) in one tensor, or a list of (heads, T, T) where heads differ between layers
        if head_fusion is not None:  # -> (1, T, T) per layer
            if head_fusion not in HEAD_FUSIONS:
                raise ValueError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, not {head_fusion!r}")
            fuse = {"mean": torch.mean, "min": torch.amin, "max": torch.amax}[head_fusion]
            attentions = (fuse(attentions, dim=1, keepdim=True) if torch.is_tensor(attentions)
                          else [fuse(layer, dim=0, keepdim=True) for layer in attentions])
        if not torch.is_tensor(attentions) and len({layer.shape for layer in attentions}) == 1:
            attentions = torch.stack(attentions)
        if torch.is_tensor(attentions):
            arrays = list(attentions.float().cpu().numpy())  # one copy off the device
        else:
            arrays = [layer.float().cpu().numpy() for layer in attentions]
    return VitAttention(arrays, grid, prefix_tokens, logits[0].float().cpu().numpy())


def _keep_this_threads(kept: list):
    """A forward hook that keeps a module's output only for forwards run by the calling thread.

    The store hands one model object to every service that asks for it (the ViT page and the attention explorer's
    ViT tab share the embedded ViT, each on its own thread), so another thread's forward runs through these hooks
    too; seen as 6 or 7 kept layers of a 4-layer ViT under the 32-client load test.
    """
    owner = threading.get_ident()

    def hook(module, inputs, output):
        if threading.get_ident() == owner:
            kept.append(output[0])

    return hook


def _timm_attentions_from_qkv(model, vit, pixel_values):
    """((layers, heads, T, T) weights, logits): a fused forward that keeps each block's qkv projection.

    The weights of all layers come from one batched product and one softmax: layer by layer, the dozens of tiny ops
    cost more than the forward itself for a small ViT on a CPU.
    """
    import torch

    kept: list = []
    handles = [block.attn.qkv.register_forward_hook(_keep_this_threads(kept)) for block in vit.blocks]
    try:
        logits = model(pixel_values)
    finally:
        for handle in handles:
            handle.remove()
    first = vit.blocks[0].attn
    heads, head_dim = first.num_heads, first.head_dim
    qkv = torch.stack(kept)  # (layers, T, 3 · heads · head_dim); every block has the same shape in a timm ViT
    qkv = qkv.reshape(len(kept), qkv.shape[1], 3, heads, head_dim).permute(2, 0, 3, 1, 4)  # (3, layers, heads, T, d)
    query, key = qkv[0], qkv[1]
    if any(not isinstance(b.attn.q_norm, torch.nn.Identity) or not isinstance(b.attn.k_norm, torch.nn.Identity)
           for b in vit.blocks):  # qk-norm (e.g. some DINOv2 / EVA-style ViTs): each layer's own norm
        query = torch.stack([b.attn.q_norm(q) for b, q in zip(vit.blocks, query)])
        key = torch.stack([b.attn.k_norm(k) for b, k in zip(vit.blocks, key)])
    scale = torch.tensor([b.attn.scale for b in vit.blocks], dtype=query.dtype, device=query.device)
    return torch.softmax(query @ key.transpose(-2, -1) * scale[:, None, None, None], dim=-1), logits


# model -> {(input shape, dtype): graph, or None where tracing failed}; None for a model that gets no graph
_graphs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_graphs_guard = threading.Lock()


def _attention_graph(model, vit, pixel_values):
    """`_timm_attentions_from_qkv` of this model as a traced TorchScript graph, for a tiny ViT on the CPU
    (`txgallery.lib.threads.is_tiny_cpu_model`); else None.

    For a model this small the eager forward is nearly all Python, which the graph skips (BENCHMARKS.md, "ViT attention
    graph", with the alternatives measured). Traced once per model and input shape, checked against the eager result,
    and the graph reads the model's own parameters, not a copy. Where tracing is unavailable (TorchScript is deprecated
    in torch) or disagrees, the eager path runs and the log says why.
    """
    key = (tuple(pixel_values.shape), pixel_values.dtype)
    with _graphs_guard:
        if model not in _graphs:
            _graphs[model] = {} if is_tiny_cpu_model(model, pixel_values.device.type) else None
        graphs = _graphs[model]
        if graphs is None:
            return None
        if key not in graphs:
            graphs[key] = _trace_attention_graph(model, vit, pixel_values)
        return graphs[key]


def _trace_attention_graph(model, vit, pixel_values):
    """Trace `_timm_attentions_from_qkv(model, vit, ·)` on `pixel_values`; the graph, or None (logged) if it fails."""
    import torch

    class LogitsAndAttentions(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model  # registered, so the graph reads these parameters

        def forward(self, pixels):
            return _timm_attentions_from_qkv(self.model, vit, pixels)

    # TorchScript's deprecation notice, and tracer notes on shape checks that are constant for one input shape
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    try:
        with torch.inference_mode(False), torch.no_grad():
            example = pixel_values.clone()
            graph = torch.jit.trace(LogitsAndAttentions(), example, check_trace=False)
            agree = all(torch.allclose(traced, eager, atol=1e-5)
                        for traced, eager in zip(graph(example), _timm_attentions_from_qkv(model, vit, example)))
    except Exception as exc:  # noqa: BLE001 - any tracing failure leaves the eager path, which is correct
        log.warning("Reading ViT attention eagerly: tracing the model failed (%s).", exc)
        return None
    if not agree:
        log.warning("Reading ViT attention eagerly: the traced graph disagreed with the model.")
        return None
    log.info("ViT attention: a traced graph for %s, input %s.", type(model).__name__, tuple(pixel_values.shape))
    return graph


_eager_switch = threading.Lock()  # one eager read at a time: the switch is on modules other threads may be running


def _timm_attentions_eager(model, vit, pixel_values):
    """(per-layer (heads, T, T) weights, logits) read inside each block's eager attention.

    While switched, another thread's forward of the same model runs eager too: slower, and still correct.
    """
    captured: list = []
    with _eager_switch:
        handles, fused = [], []
        for block in vit.blocks:
            fused.append(block.attn.fused_attn)
            block.attn.fused_attn = False
            handles.append(block.attn.attn_drop.register_forward_hook(_keep_this_threads(captured)))
        try:
            logits = model(pixel_values)
        finally:
            for handle, block, was in zip(handles, vit.blocks, fused):
                handle.remove()
                block.attn.fused_attn = was
    return captured, logits
