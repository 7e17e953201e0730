"""The attention explorer's services: a text model's attention maps, one head recomputed by hand, and a ViT's
attention on one image. Plain Python over the model store; the page reaches them through `connect`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from txgallery.lib import attention as att
from txgallery.lib.vit import ImageClassifier, held_out_note, softmax
from txgallery.limits import (
    MAX_ATTENTION_TOKENS_DECODER,
    MAX_ATTENTION_TOKENS_ENCODER,
    VIT_TOP_K,
    InputError,
)
from txgallery.models import store
from txgallery.ui import model_badge

DECODER_TASK = "text-generation"


# --- what the services take and return ------------------------------------------------------------------------------


def check_index(value: object, count: int, what: str) -> int:
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


def is_causal(model: Any) -> bool:
    """Whether a transformers model is a decoder whose tokens only see the past."""
    config = model.config
    return bool(getattr(config, "is_decoder", False) or any(
        name.endswith(("ForCausalLM", "LMHeadModel")) for name in (getattr(config, "architectures", None) or ())))


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


# --- the services --------------------------------------------------------------------------------------------------


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

    def check_health(self) -> None:
        """A small forward of the model: a replica's health check (`txgallery.serving.ray_serve.ServiceHealth`)."""
        store.check_forward(self.loaded)

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

    attentions: list  # per layer, (heads, T, T)
    grid: tuple[int, int]
    prefix_tokens: int
    picture: np.ndarray
    top: dict[str, float]


class VitExplorer:
    """A ViT image classifier from the store and every layer's attention on one image."""

    def __init__(self, source: store.ModelSource) -> None:
        self.source = source
        self.loaded = store.get_store().load(source, attentions=True)
        self.classifier = ImageClassifier.for_service(self.loaded)
        if not self.classifier.is_vit:
            raise InputError(f"{source.ref} is not a vision transformer: attention views need a ViT.")

    def describe(self) -> str:
        """The model badge: which model, where from, why, its size and its held-out accuracy when it has one."""
        return model_badge(self.source) + self.classifier.summary() + held_out_note(self.loaded.metrics)

    def check_health(self) -> None:
        """A small forward of the model: a replica's health check (`txgallery.serving.ray_serve.ServiceHealth`)."""
        self.classifier.predict([Image.new("RGB", (16, 16))])

    def analyse(self, image: Any) -> VitResult:
        """Every layer's attention of the ViT on `image` (a PIL image) and its most likely labels."""
        fitted = self.classifier.processor.fit(image)  # the picture exactly as the model sees it
        run = self.classifier.attentions(fitted, fitted=True)
        top = dict(self.classifier.top_k(softmax(run.logits), VIT_TOP_K))
        return VitResult(run.attentions, run.grid, run.prefix_tokens, np.asarray(fitted), top)
