"""The generation page's service: a causal language model from the model store, streaming token by token.

The page reaches it through `txgallery.connect`, so the same class runs in the gallery's process, on Spaces or as a
Ray Serve deployment (named after the class: `TextGenerator-…`). No method takes a list, so nothing is batched.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import torch
from txgallery_demos.generation.decoding import (
    GenerationUpdate,
    SamplingSettings,
    fit_prompt,
    interleave,
    stream_generation,
)

from txgallery.limits import InputError
from txgallery.models import store
from txgallery.models.hub import ModelLoadError, ModelSource
from txgallery.ui import model_badge

CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def check_causal_lm(ref: str, config: Any) -> None:
    """Refuse models that cannot continue text left to right (encoder-only, encoder-decoder), with a clear message."""
    architectures = list(getattr(config, "architectures", None) or [])
    model_type = getattr(config, "model_type", "?")
    if getattr(config, "is_encoder_decoder", False):
        raise ModelLoadError(f"{ref!r} is an encoder-decoder model ({model_type}); this page needs a decoder-only "
                             f"(causal) language model such as gpt2 or distilgpt2. Text-to-text models have their own "
                             f"page.", ref=ref)
    if architectures and not any(a.endswith(CAUSAL_SUFFIXES) for a in architectures):
        raise ModelLoadError(f"{ref!r} is a {', '.join(architectures)} checkpoint ({model_type}), not a causal "
                             f"language model: it cannot generate text left to right. Try gpt2, distilgpt2 or "
                             f"'embedded'.", ref=ref)


class TextGenerator:
    """A causal language model from the model store, streaming its generations token by token."""

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        try:
            self.loaded = store.get_store().load(source)
        except ModelLoadError as exc:
            if "Unrecognized configuration class" in str(exc):  # transformers' words for "no causal LM of this type"
                raise ModelLoadError(f"{source.ref!r} is not a causal (decoder-only) language model, so it cannot "
                                     f"generate text left to right. Try gpt2, distilgpt2 or 'embedded'.",
                                     ref=source.ref) from exc
            raise
        self.model, self.tokenizer = self.loaded.model, self.loaded.tokenizer
        check_causal_lm(source.ref, self.model.config)
        config = self.model.config
        self.context = int(getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
                           or 2048)

    def describe(self) -> str:
        """The model badge for the UI, with the held-out figures of a model the project trained."""
        badge = model_badge(self.source, self.loaded)
        metrics = self.loaded.metrics
        if "validation_perplexity" in metrics:
            badge += (f" · **held-out plays:** loss {metrics['validation_loss']:.2f}, perplexity "
                      f"{metrics['validation_perplexity']:.1f}")
        return badge

    def check_health(self) -> None:
        """A small forward of the model: a replica's health check (`txgallery.serving.ray_serve.ServiceHealth`)."""
        store.check_forward(self.loaded)

    def has_chat_template(self) -> bool:
        """Whether the tokenizer knows how to wrap a prompt as a chat turn."""
        return bool(getattr(self.tokenizer, "chat_template", None))

    def encode(self, prompt: str, settings: SamplingSettings) -> tuple[torch.Tensor, list[str]]:
        """Prompt text -> input ids (chat template when asked), cut from the left to fit the context; with notices."""
        if settings.chat:
            if not self.has_chat_template():
                raise InputError(f"{self.source.ref} has no chat template (it is not an instruct model): untick "
                                 f"'chat template'.")
            ids = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                     tokenize=True, return_dict=True)["input_ids"]
        else:
            ids = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        if not ids:
            raise InputError("The prompt encodes to no tokens; please type some text.")
        ids, notice = fit_prompt(list(ids), self.context, settings.max_new_tokens)
        return torch.tensor([ids], device=self.loaded.device), [notice] if notice else []

    def generate(self, prompt: str, settings: SamplingSettings, notices: list[str] | None = None,
                 ) -> Iterator[GenerationUpdate]:
        """Stream one generation (a generator method: the serving seam streams it, and closing it stops it)."""
        started = time.perf_counter()
        input_ids, fit_notices = self.encode(prompt, settings)
        yield from stream_generation(self.model, self.tokenizer, input_ids, settings, [*(notices or []), *fit_notices],
                                     started)

    def compare(self, prompt: str, first: SamplingSettings, second: SamplingSettings,
                ) -> Iterator[tuple[int, GenerationUpdate]]:
        """Two generations of the same prompt, advanced in turn so that both stream: yields (0 or 1, update)."""
        yield from interleave(self.generate(prompt, first), self.generate(prompt, second))
