"""The ViT page's service: any image classifier from the store (a ViT or a CNN), answering with plain data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from txgallery.lib.attention import cls_patch_map, rollout_row
from txgallery.lib.vit import ImageClassifier, VitGeometry, held_out_note, softmax
from txgallery.limits import VIT_TOP_K
from txgallery.models import store
from txgallery.ui import model_badge


@dataclass(frozen=True)
class VitResult:
    """One image through one classifier: top classes, the picture it saw and, for a ViT, the rollout per patch."""

    top: list[tuple[str, float]]
    seen: np.ndarray  # the picture after resizing/cropping, as the model saw it (uint8)
    geometry: VitGeometry | None
    rollout: np.ndarray | None  # (rows, cols), sums to 1


class ImageService:
    """An image classifier from the model store (ViT or CNN): its top classes, rollout and ViT numbers."""

    batched_methods = ("predict",)  # on Ray Serve, concurrent calls share one forward pass

    def __init__(self, source: store.ModelSource) -> None:
        self.source = source
        self.loaded = store.get_store().load(source, attentions=True)
        self.classifier = ImageClassifier.for_service(self.loaded)

    def describe(self) -> str:
        """The model badge: which model, where from, why, ViT or CNN, and its held-out accuracy when it has one."""
        return model_badge(self.source) + self.classifier.summary() + held_out_note(self.loaded.metrics)

    def check_health(self) -> None:
        """A small forward of the model: a replica's health check (`txgallery.serving.ray_serve.ServiceHealth`)."""
        self.predict([np.zeros((16, 16, 3), np.uint8)])

    def predict(self, pictures: list[np.ndarray]) -> np.ndarray:
        """Class probabilities (N, classes) for RGB pictures (uint8 arrays)."""
        return self.classifier.predict([Image.fromarray(p) for p in pictures])

    def classify(self, picture: np.ndarray, head_fusion: str = "mean", discard_ratio: float = 0.0) -> VitResult:
        """Top classes of one RGB picture and, for a ViT, its attention rollout over the patches."""
        fitted = self.classifier.processor.fit(Image.fromarray(picture))  # resized once: shown and classified
        seen = np.asarray(fitted)
        geometry = self.classifier.geometry()
        if geometry is None:
            probabilities = self.classifier.predict([fitted], fitted=True)[0]
            return VitResult(self.classifier.top_k(probabilities, VIT_TOP_K), seen, None, None)
        # one forward gives the logits and every layer's attention, heads already fused on the model's device
        attention = self.classifier.attentions(fitted, fitted=True, head_fusion=head_fusion)
        cls_row = rollout_row(attention.attentions, head_fusion, discard_ratio)  # only [CLS]'s row is drawn
        return VitResult(self.classifier.top_k(softmax(attention.logits), VIT_TOP_K), seen, geometry,
                         cls_patch_map(cls_row, attention.grid, attention.prefix_tokens))

    def geometry(self) -> VitGeometry | None:
        """The model's patch and token numbers; None for a CNN."""
        return self.classifier.geometry()

    def position_embeddings(self) -> np.ndarray | None:
        """The learned position embedding of each patch, (patches, embed_dim); None for a CNN."""
        return self.classifier.position_embeddings()
