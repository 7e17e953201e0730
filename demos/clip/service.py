"""The CLIP page's service: an image–text model from the model store, its embeddings cached, and zero-shot scores.

The page reaches it through `txgallery.connect`, so the same class runs in the gallery's process, on Spaces or as a
Ray Serve deployment (named after the class: `ClipMatcher-…`), where `batched_methods` let concurrent calls share
one forward pass.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from txgallery.lib.images import load_image
from txgallery.lib.threads import openmp_threads, set_openmp_threads, torch_threads
from txgallery.limits import MAX_CLIP_CACHED_EMBEDDINGS
from txgallery.models import clip, registry, store
from txgallery.models.hub import ModelLoadError, ModelSource
from txgallery.ui import model_badge

SIDE_BY_SIDE_MAX_WEIGHTS = 60_000_000  # the stand-in has 27M (EfficientNet-Lite0 + MiniLM-L6), ViT-B-32 151M


def is_stand_in(source: ModelSource | ModelLoadError) -> bool:
    """Whether `source` is the offline stand-in (the embedded ConSE model) rather than a real CLIP."""
    return isinstance(source, ModelSource) and source.kind == "embedded"


def badge_text(source: ModelSource | ModelLoadError, loaded: store.LoadedModel | None = None) -> str:
    """`ui.model_badge`, saying plainly when the offline stand-in runs instead of CLIP (and how well it does)."""
    badge = model_badge(source, loaded)
    if is_stand_in(source):
        metrics = loaded.metrics if loaded else registry.get_embedded(source.ref).metrics()
        measured = (f" Zero-shot on Fashion-MNIST with its 10 class names: {metrics['fashion_mnist_accuracy']:.1%} "
                    f"({metrics['fashion_mnist_size']:,} test images; chance 10%)."
                    if "fashion_mnist_accuracy" in metrics else "")
        badge += ("\n\n⚠️ **Offline stand-in, not CLIP:** EfficientNet-Lite0's top ImageNet classes placed in "
                  f"MiniLM's sentence space (ConSE).{measured} Texts far from ImageNet's 1,000 classes match poorly; "
                  "whoever runs the gallery can configure a real open_clip model (README, \"Configuration\").")
    return badge


@dataclass(frozen=True)
class ZeroShotResult:
    """One image against several prompts: probabilities (softmax of scaled cosines) and the cosines themselves."""

    probabilities: list[float]
    similarities: list[float]


class EmbeddingCache:
    """Embeddings by key, computed once; beyond `size` entries the least recently used go."""

    def __init__(self, size: int = MAX_CLIP_CACHED_EMBEDDINGS) -> None:
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._guard = threading.Lock()  # a Ray replica may run two requests of one service at once

    def __len__(self) -> int:
        return len(self._vectors)

    def missing(self, keys: list[str]) -> int:
        """How many of `keys` are not cached."""
        with self._guard:
            return sum(key not in self._vectors for key in keys)

    def get(self, keys: list[str], compute: Callable[[list[int]], np.ndarray]) -> np.ndarray:
        """The vectors of `keys` (K, D); `compute(indices)` embeds, in one batch, the ones not cached."""
        with self._guard:
            found = {key: self._vectors[key] for key in keys if key in self._vectors}
            for key in found:
                self._vectors.move_to_end(key)
        missing = [i for i, key in enumerate(keys) if key not in found]
        if missing:
            computed = compute(missing)
            found.update({keys[i]: vector for i, vector in zip(missing, computed)})
            with self._guard:
                for i, vector in zip(missing, computed):
                    self._vectors[keys[i]] = vector
                    self._vectors.move_to_end(keys[i])
                while len(self._vectors) > self.size:
                    self._vectors.popitem(last=False)
        return np.stack([found[key] for key in keys])


class ClipMatcher:
    """An image–text model from the model store: embeddings, zero-shot classification and similarity matrices."""

    batched_methods = ("embed_images", "embed_texts")  # on Ray Serve, concurrent calls share one forward pass

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.loaded = store.get_store().load(source)
        self.scale = clip.logit_scale(self.loaded.model)
        self._weights = sum(p.numel() for p in self.loaded.model.parameters())
        # the gallery's photos and the user's labels come back request after request: each is embedded once
        self._images, self._texts = EmbeddingCache(), EmbeddingCache()
        # the text encoder's thread beside the image encoder (`similarity`); OpenMP's team size is per thread, so it
        # is set once there, when the thread starts
        half = max(1, torch_threads() // 2)
        self._text_thread = ThreadPoolExecutor(1, thread_name_prefix="clip-text",
                                               initializer=lambda: set_openmp_threads(half))

    def describe(self) -> str:
        """The model badge for the UI."""
        return badge_text(self.source, self.loaded)

    def check_health(self) -> None:
        """A small forward of the model: a replica's health check (`txgallery.serving.ray_serve.ServiceHealth`)."""
        clip.embed_texts(self.loaded, ["a photo"])  # past the cache, which would answer without the model

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        """L2-normalised embeddings (N, D) of RGB arrays, reusing those computed before."""
        keys = [hashlib.sha1(image.tobytes() + str(image.shape).encode()).hexdigest() for image in images]
        return self._images.get(keys, lambda missing: clip.embed_images(
            self.loaded, [Image.fromarray(images[i]) for i in missing]))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """L2-normalised embeddings (M, D) of texts, reusing those computed before."""
        return self._texts.get(list(texts), lambda missing: clip.embed_texts(
            self.loaded, [texts[i] for i in missing]))

    def similarity(self, images: list[np.ndarray], texts: list[str]) -> np.ndarray:
        """Cosine similarity of every image with every text, shape (N, M)."""
        if self._side_by_side(images, texts):
            return self._similarity_side_by_side(images, texts)
        return clip.cosine_matrix(self.embed_images(images), self.embed_texts(texts))

    # One picture and new prompts on the CPU: a small model's two encoders scale poorly over threads, so they run side
    # by side on half the threads each; a large one's do not gain, nor do many pictures, whose encoder is the whole
    # cost (measured: BENCHMARKS.md, CLIP, "The encoders side by side").
    def _side_by_side(self, images: list[np.ndarray], texts: list[str]) -> bool:
        return (len(images) == 1 and self.loaded.device == "cpu" and self._weights < SIDE_BY_SIDE_MAX_WEIGHTS
                and torch_threads() >= 2 and self._texts.missing(list(texts)) > 0)

    def _similarity_side_by_side(self, images: list[np.ndarray], texts: list[str]) -> np.ndarray:
        with openmp_threads(max(1, torch_threads() // 2)):  # restored after
            text_vectors = self._text_thread.submit(self.embed_texts, texts)
            image_vectors = self.embed_images(images)
        return clip.cosine_matrix(image_vectors, text_vectors.result())

    def classify(self, image: np.ndarray, prompts: list[str]) -> ZeroShotResult:
        """Zero-shot classification of one image among the prompts."""
        similarities = self.similarity([image], prompts)
        probabilities = clip.zero_shot_probabilities(similarities, self.scale)[0]
        return ZeroShotResult(probabilities=probabilities.tolist(), similarities=similarities[0].tolist())


def zero_shot(matcher: ClipMatcher, path: str | Path, prompts: list[str]) -> ZeroShotResult:
    """Zero-shot classification of an uploaded image file among the prompts (new prompts are embedded beside the
    picture, see `ClipMatcher.similarity`)."""
    return matcher.classify(np.asarray(load_image(path)), prompts)
