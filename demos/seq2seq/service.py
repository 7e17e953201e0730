"""The text-to-text page's service: an encoder–decoder from the model store, its generation and attention maps.

The page reaches `TextToText` through `ctx.services(TextToText)` (the serving seam), so the same class runs in this
process, in a Spaces GPU call, or as a Ray Serve deployment named after it. `generate` takes one text: nothing to
batch, so the class declares no `batched_methods`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from txgallery.limits import MAX_SEQ2SEQ_SOURCE_TOKENS
from txgallery.models.hub import ModelLoadError, ModelSource
from txgallery.models.store import check_forward, get_store
from txgallery.paths import WEIGHTS_DIR
from txgallery.ui import model_badge


@dataclass(frozen=True)
class GenerationSettings:
    """How to decode: greedy (one beam) or beam search, and how many tokens at most."""

    max_new_tokens: int = 16
    num_beams: int = 1


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


def model_config(source: ModelSource | ModelLoadError) -> dict:
    """A model's config.json as a dict, read without loading the model (empty when it cannot be read)."""
    if isinstance(source, ModelLoadError):
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


class TextToText:
    """An encoder–decoder from the model store: generation, then one teacher-forced pass for the attention maps."""

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.loaded = get_store().load(source, attentions=True)
        self.model, self.tokenizer = self.loaded.model, self.loaded.tokenizer
        if not getattr(self.model.config, "is_encoder_decoder", False):
            raise ModelLoadError(f"{source.ref} is not an encoder–decoder model (T5, BART, …); this page "
                                 "needs one with cross-attention.")

    def describe(self) -> str:
        """The model badge for the UI, with the embedded model's held-out scores."""
        badge = model_badge(self.source, self.loaded)
        fill = self.loaded.metrics.get("test", {}).get("fill_exact_match")
        if fill is not None:
            badge += f" (task `sst2 sentence:`) · **fill exact match:** {fill:.3f} (task `fill:`)"
        return badge

    def check_health(self) -> None:
        """A small forward of the model: a replica's health check (`txgallery.serving.ray_serve.ServiceHealth`)."""
        check_forward(self.loaded)

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
