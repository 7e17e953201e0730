"""The sentiment page's service: a sequence classifier from the model store, its predictions and word attributions.

The page never builds a `SentimentClassifier` itself: it asks `ctx.services(SentimentClassifier)` for one per
configured model, and the serving seam (`txgallery.connect`) decides where each instance lives: in this process, in a
Spaces GPU call, or in a Ray Serve deployment named after the class. The class is plain Python: the tests build it
directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from txgallery.limits import MAX_ATTRIBUTION_TOKENS, MAX_TOKENS, InputError
from txgallery.models.hub import ModelSource
from txgallery.models.store import get_store
from txgallery.ui import model_badge


@dataclass(frozen=True)
class SentimentResult:
    """One prediction: the winning label, every label's probability, and whether the input was cut."""

    label: str
    probabilities: dict[str, float]
    truncated: bool


def merge_word_pieces(tokens: list[str], scores: list[float]) -> list[tuple[str, float]]:
    """Join sub-word pieces back into words, summing their scores.

    WordPiece (BERT) marks continuations with `##`; BPE and SentencePiece (RoBERTa, T5) mark word starts with
    `Ġ` or `▁`, so there an unmarked piece continues the word before it.
    """
    marks_starts = any(t.startswith(("Ġ", "▁")) for t in tokens)
    words: list[list] = []
    for token, score in zip(tokens, scores):
        continues = token.startswith("##") or (marks_starts and not token.startswith(("Ġ", "▁")))
        if continues and words:
            words[-1][0] += token.removeprefix("##")
            words[-1][1] += score
        else:
            words.append([token.lstrip("Ġ▁"), score])
    return [(word, score) for word, score in words]


class SentimentClassifier:
    """A sequence classifier from the model store, with batched prediction and integrated-gradients attribution."""

    batched_methods = ("predict",)  # on Ray Serve, concurrent calls share one forward pass

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.loaded = get_store().load(source)
        self.model, self.tokenizer = self.loaded.model, self.loaded.tokenizer
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    def describe(self) -> str:
        """The model badge for the UI (with the held-out accuracy the model reports)."""
        return model_badge(self.source, self.loaded)

    def _encode(self, texts: list[str], max_tokens: int):
        return self.tokenizer(texts, padding=True, truncation=True, max_length=max_tokens,
                              return_tensors="pt").to(self.loaded.device)

    @torch.inference_mode()
    def predict(self, texts: list[str]) -> list[SentimentResult]:
        """Label every text (one forward pass for the batch)."""
        batch = self._encode(texts, MAX_TOKENS)
        probabilities = self.model(**batch).logits.float().softmax(-1).cpu()
        full_lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]
        return [
            SentimentResult(label=self.labels[int(p.argmax())],
                            probabilities={label: float(v) for label, v in zip(self.labels, p)},
                            truncated=n > MAX_TOKENS)
            for p, n in zip(probabilities, full_lengths)
        ]

    def check_health(self) -> None:
        """A small forward of the model: a replica's health check (`txgallery.serving.ray_serve.ServiceHealth`)."""
        self.predict(["ok"])

    def attribute(self, text: str, steps: int = 24) -> list[tuple[str, float]]:
        """Integrated gradients (captum) of the predicted label w.r.t. the input embeddings, summed per word.

        Token scores are scaled so that the strongest token is ±1; the baseline keeps special tokens, pads the rest.
        """
        from captum.attr import LayerIntegratedGradients

        if getattr(self.model, "txgallery_inference_only", False):
            raise InputError("Word attributions need gradients, which this optimised model (ONNX or int8) has not.")
        batch = self._encode([text], MAX_ATTRIBUTION_TOKENS)
        input_ids = batch["input_ids"]
        special_mask = self.tokenizer.get_special_tokens_mask(input_ids[0].tolist(), already_has_special_tokens=True)
        special = torch.tensor(special_mask, dtype=torch.bool, device=input_ids.device)
        baseline = torch.where(special, input_ids, torch.full_like(input_ids, self.tokenizer.pad_token_id or 0))
        extra = {k: v for k, v in batch.items() if k != "input_ids"}

        def forward(ids):  # captum calls this with the interpolation steps stacked as a batch
            return self.model(input_ids=ids, **{k: v.expand(ids.shape[0], -1) for k, v in extra.items()}
                              ).logits.softmax(-1)

        with torch.no_grad():
            target = int(forward(input_ids).argmax(-1))
        ig = LayerIntegratedGradients(forward, self.model.get_input_embeddings())
        attributions = ig.attribute(input_ids, baselines=baseline, target=target, n_steps=steps,
                                    internal_batch_size=steps)
        scores = attributions.sum(-1)[0].detach().float().cpu()
        scores = scores / scores.abs().max().clamp_min(1e-9)
        tokens = self.tokenizer.convert_ids_to_tokens(input_ids[0].tolist())
        keep = [i for i, s in enumerate(special.tolist()) if not s]
        return merge_word_pieces([tokens[i] for i in keep], [float(scores[i]) for i in keep])
