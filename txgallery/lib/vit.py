"""One image classifier behind one small interface, whichever kind it is (the project's ViT, timm, transformers, a
CNN): its ViT numbers, probabilities, top classes, attention maps and position embeddings. The ViT page and the
attention explorer's ViT tab both serve it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from txgallery import limits
from txgallery.lib.attention import VitAttention, find_timm_vit, vit_attentions
from txgallery.lib.threads import settle_threads_for


@dataclass(frozen=True)
class VitGeometry:
    """The numbers of the ViT recipe for one model: image → patches → tokens → encoder."""

    image_size: int
    patch_size: int
    grid: tuple[int, int]  # patches per column and per row
    channels: int
    embed_dim: int
    depth: int
    heads: int
    prefix_tokens: int  # [CLS] (and any register tokens) before the patch tokens

    @property
    def num_patches(self) -> int:
        """Patch tokens the image becomes."""
        return self.grid[0] * self.grid[1]

    @property
    def patch_values(self) -> int:
        """Numbers in one flattened patch (what the linear projection reads)."""
        return self.patch_size * self.patch_size * self.channels


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities of one image's logits (computed in float64, summing to 1)."""
    shifted = np.exp(np.asarray(logits, dtype=np.float64) - np.max(logits))
    return shifted / shifted.sum()


def held_out_note(metrics: dict) -> str:
    """What a badge adds for a model that ships its held-out accuracy (the embedded ViT's Fashion-MNIST test set)."""
    if "test_accuracy" not in metrics:
        return ""
    return (f" · **held-out accuracy:** {metrics['test_accuracy']:.3f} on {metrics['test_size']:,} Fashion-MNIST test "
            f"images")


class ImageClassifier:
    """A loaded image classifier behind one small interface, whichever kind it is (own ViT, timm, transformers, CNN)."""

    def __init__(self, model: Any, processor: Any, device: str = "cpu") -> None:
        # `processor`: the model's `txgallery.models.image_classifiers.ImageProcessor` (fit, batch, size, labels)
        self.model, self.processor, self.device = model, processor, device
        self.labels = list(processor.labels)
        self._timm_vit = find_timm_vit(model)
        config = getattr(model, "config", None)
        self._hf_vit = config is not None and hasattr(config, "patch_size") and hasattr(config, "num_hidden_layers")

    @classmethod
    def for_service(cls, loaded: Any) -> ImageClassifier:
        """The classifier of a store's `LoadedModel`, run by the calling service thread (a tiny CPU model: on one
        OpenMP thread; see txgallery.lib.threads)."""
        settle_threads_for(loaded.model, loaded.device)
        return cls(loaded.model, loaded.tokenizer, loaded.device)

    @property
    def is_vit(self) -> bool:
        """Whether the model is a vision transformer (patches, attention) rather than a CNN."""
        return self._timm_vit is not None or self._hf_vit

    @property
    def parameters(self) -> int:
        """Number of weights."""
        return sum(p.numel() for p in self.model.parameters())

    def summary(self) -> str:
        """What a badge adds about the network itself: ViT or CNN, and its size."""
        return f" · **{'ViT' if self.is_vit else 'CNN'}**, {self.parameters / 1e6:.2f}M weights"

    def geometry(self) -> VitGeometry | None:
        """Patch size, grid, embedding size, layers and heads of a ViT (None for a CNN)."""
        if self._timm_vit is not None:
            vit = self._timm_vit
            return VitGeometry(image_size=self.processor.size, patch_size=int(vit.patch_embed.patch_size[0]),
                               grid=tuple(int(g) for g in vit.patch_embed.grid_size),
                               channels=int(vit.patch_embed.proj.in_channels), embed_dim=int(vit.embed_dim),
                               depth=len(vit.blocks), heads=int(vit.blocks[0].attn.num_heads),
                               prefix_tokens=int(vit.num_prefix_tokens))
        if self._hf_vit:
            c = self.model.config
            side = c.image_size // c.patch_size
            return VitGeometry(image_size=c.image_size, patch_size=c.patch_size, grid=(side, side),
                               channels=c.num_channels, embed_dim=c.hidden_size, depth=c.num_hidden_layers,
                               heads=c.num_attention_heads, prefix_tokens=1)
        return None

    def pixels(self, images: list[Image.Image], fitted: bool = False):
        """The processor's (N, C, S, S) batch on the model's device (`fitted`: the images are `processor.fit`'s)."""
        return self.processor.batch(images, fitted).to(self.device)

    def predict(self, images: list[Image.Image], fitted: bool = False) -> np.ndarray:
        """Class probabilities (N, classes) for RGB images, in one forward pass."""
        import torch

        with torch.inference_mode():
            out = self.model(self.pixels(images, fitted))
            logits = out.logits if hasattr(out, "logits") else out
            return logits.float().softmax(-1).cpu().numpy()

    def top_k(self, probabilities: np.ndarray, k: int = limits.VIT_TOP_K) -> list[tuple[str, float]]:
        """The k most probable classes of one image's probabilities, best first."""
        order = np.argsort(-probabilities, kind="stable")[:k]
        return [(self.labels[i], float(probabilities[i])) for i in order]

    def attentions(self, image: Image.Image, fitted: bool = False, head_fusion: str | None = None) -> VitAttention:
        """Every layer's attention on one image and the logits of the same forward, its heads fused when asked;
        ViTs only."""
        if not self.is_vit:
            raise limits.InputError("This model is a CNN: it has no attention maps to show.")
        return vit_attentions(self.model, self.pixels([image], fitted), head_fusion)

    def position_embeddings(self) -> np.ndarray | None:
        """The learned position embedding of every patch token, (patches, embed_dim) (None for a CNN)."""
        geometry = self.geometry()
        if geometry is None:
            return None
        if self._timm_vit is not None:
            table = self._timm_vit.pos_embed[0]
            skip = 0 if getattr(self._timm_vit, "no_embed_class", False) else geometry.prefix_tokens
        else:
            table = self.model.base_model.embeddings.position_embeddings[0]
            skip = 1
        return table[skip:].detach().float().cpu().numpy()
