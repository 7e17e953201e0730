"""CLIP: images and texts in one embedding space — zero-shot classification, search both ways, a similarity matrix.

Reads top to bottom: the lesson, the input handling and maths as plain functions, one service class (testable
without Gradio), then `build()` that wires the UI. Run alone: `txgallery serve --demo clip` or
`python -m txgallery_demos.clip`.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr
import numpy as np
from gradio_client import handle_file
from PIL import Image

from txgallery.lib.images import load_image, load_images, sample_photos
from txgallery.lib.threads import openmp_threads, set_openmp_threads, torch_threads
from txgallery.limits import (
    MAX_CLIP_CACHED_EMBEDDINGS,
    MAX_CLIP_GALLERY_UPLOADS,
    MAX_CLIP_LABELS,
    MAX_CLIP_TEXT_CHARS,
    InputError,
)
from txgallery.models import clip, registry, store
from txgallery.plugin import ApiCall, Demo, ModelSlot, PageContext
from txgallery.serving.seam import connect
from txgallery.ui import (
    deep_link,
    examples_that_run,
    image_input,
    loaded_badge,
    model_badge,
    user_errors,
)

SLUG = "clip"
TASK = clip.TASK

LESSON = f"""
**CLIP: one embedding space for images and texts.** CLIP has two encoders, one for images (a ViT) and one for
texts (a transformer). Trained on hundreds of millions of image–caption pairs, it learned to place an image and its
caption close together: the **cosine similarity** of their embeddings is high.

**Zero-shot classification** needs no training: write each label into a prompt ("a photo of a {{}}" → "a photo of a
cat"), embed the prompts, and the label whose prompt is nearest to the image wins; a softmax over
`scale × cosine` gives probabilities (CLIP learned its scale, about 100). The same embeddings search **text → image**
(rank pictures by a description) and **image → text** (rank descriptions of a picture); the **similarity matrix**
shows all of them at once.

**Offline**, the page runs an honest **stand-in, not CLIP**: no image–caption data or CLIP weights can be installed
here, so it composes two pretrained models (ConSE): EfficientNet-Lite0 says which of the 1,000 ImageNet classes it
sees, and the image becomes the probability-weighted mean of MiniLM sentence embeddings of "a photo of a {{class}}".
It matches texts through ImageNet's vocabulary only. Online, configure a real open_clip model, e.g.
`txgallery serve --model clip=ViT-B-32/laion2b_s34b_b79k`.

**Try:** the same photo with labels that ImageNet knows ("cat, dog, car") and with ones it does not ("happy,
sad"); change the template ("a drawing of a {{}}"); search the gallery for "something to drink". At most
{MAX_CLIP_LABELS} labels per image.
"""

DEFAULT_LABELS = "cat, dog, car, cup of coffee, rocket, person"
DEFAULT_TEMPLATE = "a photo of a {}"
DEFAULT_TEXTS = "a cat\na cup of coffee\na rocket launch\na woman in uniform\na man in a space suit"


# --- input handling (pure functions) -----------------------------------------------------------------------------


def parse_labels(text: str | None, minimum: int = 2) -> list[str]:
    """Labels separated by commas or new lines; refuses empty, duplicate, overlong and too many labels."""
    text = (text or "").strip().strip(",").strip()
    if not text:
        raise InputError("Please enter some labels, separated by commas or new lines (e.g. cat, dog, car).")
    separator = "\n" if "\n" in text else ","
    labels = [label.strip() for label in text.split(separator)]
    for i, label in enumerate(labels, start=1):
        if not label:
            raise InputError(f"Label {i} is empty: remove the extra separator.")
        if len(label) > MAX_CLIP_TEXT_CHARS:
            raise InputError(f"Label {i} has {len(label)} characters; the limit is {MAX_CLIP_TEXT_CHARS}.")
    seen: dict[str, str] = {}
    for label in labels:
        if label.lower() in seen:
            raise InputError(f"The label {label!r} appears twice; each label must be different.")
        seen[label.lower()] = label
    if len(labels) > MAX_CLIP_LABELS:
        raise InputError(f"There are {len(labels)} labels; the limit is {MAX_CLIP_LABELS} per request.")
    if len(labels) < minimum:
        raise InputError(f"Please give at least {minimum} labels: the probabilities compare labels with each other.")
    return labels


def parse_texts(text: str | None) -> list[str]:
    """Texts one per line (for search and the similarity matrix), with the same checks as labels."""
    return parse_labels("\n".join(line for line in (text or "").splitlines() if line.strip()), minimum=1)


def parse_query(text: str | None) -> str:
    """One search text: not empty, not overlong."""
    text = " ".join((text or "").split())
    if not text:
        raise InputError("Please describe what to look for, e.g. \"something to drink\".")
    if len(text) > MAX_CLIP_TEXT_CHARS:
        raise InputError(f"The text has {len(text)} characters; the limit is {MAX_CLIP_TEXT_CHARS}.")
    return text


def apply_template(template: str | None, labels: list[str]) -> list[str]:
    """Put each label into the prompt template at `{}` ("a photo of a {}" → "a photo of a cat")."""
    template = (template or "").strip()
    if "{}" not in template:
        raise InputError('The prompt template needs a "{}" where the label goes, e.g. "a photo of a {}".')
    if len(template) > MAX_CLIP_TEXT_CHARS:
        raise InputError(f"The template has {len(template)} characters; the limit is {MAX_CLIP_TEXT_CHARS}.")
    return [_article_once(template, label) for label in labels]


ARTICLES = ("a ", "an ", "the ")


def _article_once(template: str, label: str) -> str:
    """`template` with `label` at `{}`, keeping one article: "a photo of a {}" and "a red plate" give "a photo of a
    red plate", not "a photo of a a red plate"."""
    before, _, after = template.partition("{}")
    if before.lower().endswith(ARTICLES) and label.lower().startswith(ARTICLES):
        before = before[: before.rstrip().rfind(" ") + 1] if " " in before.rstrip() else ""
    return before + label + after.replace("{}", label)


def read_images(paths: list[str | Path] | None) -> list[tuple[str, np.ndarray]]:
    """Uploaded image files as (name, RGB array), validated and bounded by `load_image`."""
    paths = list(paths or [])
    if len(paths) > MAX_CLIP_GALLERY_UPLOADS:
        raise InputError(f"{len(paths)} images were uploaded; the gallery takes at most {MAX_CLIP_GALLERY_UPLOADS}.")
    return [(Path(p).name, np.asarray(image)) for p, image in zip(paths, load_images(paths))]


@functools.cache
def sample_pictures() -> tuple[tuple[str, np.ndarray], ...]:
    """The shipped sample photos as (name, RGB array), decoded once per process."""
    photos = sample_photos()
    pictures = [np.array(image) for image in load_images(list(photos.values()))]
    for picture in pictures:
        picture.flags.writeable = False  # shared by every request
    return tuple(zip(photos, pictures))


def gallery_images(uploads: list[str | Path] | None) -> list[tuple[str, np.ndarray]]:
    """The search gallery: the shipped sample photos, then the user's uploads."""
    return list(sample_pictures()) + read_images(uploads)


def rank(scores: np.ndarray, names: list[str]) -> list[tuple[str, float]]:
    """Names with their scores, best first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    return [(names[i], float(scores[i])) for i in order]


def similarity_figure(matrix: np.ndarray, image_names: list[str], texts: list[str]):
    """The N images × M texts cosine similarities as an annotated heatmap (matplotlib figure)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(1.6 + 1.3 * len(texts), 1.0 + 0.55 * len(image_names)), layout="constrained")
    axes = figure.subplots()
    shown = axes.imshow(matrix, cmap="viridis", aspect="auto")
    axes.set_xticks(range(len(texts)), [t if len(t) <= 28 else t[:27] + "…" for t in texts], rotation=30, ha="right")
    axes.set_yticks(range(len(image_names)), image_names)
    middle = (matrix.max() + matrix.min()) / 2
    for (i, j), value in np.ndenumerate(matrix):
        axes.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                  color="black" if value > middle else "white")
    figure.colorbar(shown, ax=axes, label="cosine similarity")
    return figure


def badge_text(source: store.ModelSource | store.ModelLoadError, loaded: store.LoadedModel | None = None) -> str:
    """The model badge, saying plainly when the offline stand-in runs instead of CLIP (and how well it does)."""
    badge = model_badge(source, loaded)
    if isinstance(source, store.ModelSource) and source.kind == "embedded":
        metrics = loaded.metrics if loaded else registry.get_embedded(source.ref).metrics()
        measured = (f" Zero-shot on Fashion-MNIST with its 10 class names: {metrics['fashion_mnist_accuracy']:.1%} "
                    f"({metrics['fashion_mnist_size']:,} test images; chance 10%)."
                    if "fashion_mnist_accuracy" in metrics else "")
        badge += ("\n\n⚠️ **Offline stand-in, not CLIP:** EfficientNet-Lite0's top ImageNet classes placed in "
                  f"MiniLM's sentence space (ConSE).{measured} Texts far from ImageNet's 1,000 classes match poorly; "
                  "configure an open_clip model for the real thing.")
    return badge


# --- the model service -------------------------------------------------------------------------------------------


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


SIDE_BY_SIDE_MAX_WEIGHTS = 60_000_000  # the stand-in has 27M (EfficientNet-Lite0 + MiniLM-L6), ViT-B-32 151M


class ClipMatcher:
    """An image–text model from the model store: embeddings, zero-shot classification and similarity matrices."""

    batched_methods = ("embed_images", "embed_texts")  # on Ray Serve, concurrent calls share one forward pass

    def __init__(self, source: store.ModelSource) -> None:
        self.source = source
        self.loaded = store.get_store().load(source)
        self.scale = clip.logit_scale(self.loaded.model)
        self._weights = sum(p.numel() for p in self.loaded.model.parameters())
        # the gallery's photos and the user's labels come back request after request: each is embedded once
        self._images, self._texts = EmbeddingCache(), EmbeddingCache()
        # the text encoder's thread beside the image encoder (`similarity`); OpenMP's team size is per thread, so it
        # is set once there, when the thread starts
        half = max(1, torch_threads() // 2)
        self._text_thread = ThreadPoolExecutor(1, thread_name_prefix="clip-text", initializer=lambda: set_openmp_threads(half))

    def describe(self) -> str:
        """The model badge for the UI."""
        return badge_text(self.source, self.loaded)

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

    # One picture and new prompts (zero-shot with new labels, image → text): on the CPU a small model's two encoders
    # run side by side, each on half of this thread's OpenMP threads. Small encoders scale poorly over threads, so one
    # after the other on 2 cores wasted most of the second core: the stand-in's text and image took 98 ms that way
    # and 70 ms side by side (BENCHMARKS.md). Large encoders scale well, and halving the threads of the larger one
    # costs more than the overlap gains (open_clip ViT-B-32: 1.26× raw side by side). Many pictures keep all threads
    # too: their encoder is the whole cost.
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


# --- the UI ------------------------------------------------------------------------------------------------------


def _matcher(ctx: PageContext) -> tuple[store.ModelSource | store.ModelLoadError, ClipMatcher | None]:
    """The first configured model (or why it cannot run) and its service."""
    source = ctx.model()
    if isinstance(source, store.ModelLoadError):
        return source, None
    return source, connect(ClipMatcher, source)


def build(ctx: PageContext) -> gr.Blocks:
    """The CLIP page: zero-shot classification, text ↔ image search, similarity matrix."""
    source, matcher = _matcher(ctx)
    examples = [str(path) for path in sample_photos().values()]

    def service() -> ClipMatcher:
        if matcher is None:
            raise source
        return matcher

    @functools.lru_cache(maxsize=1)  # a failure is not cached: the next page load tries again
    def page_badge() -> str:
        """The badge once the model has loaded (with how well it does); the page's model never changes, so it is
        filled when the page loads rather than sent with every answer."""
        return loaded_badge(matcher, source, badge_text)

    with gr.Blocks(title="CLIP") as page:
        if isinstance(source, store.ModelSource) and source.kind == "embedded":  # what runs, before any result
            gr.Markdown("⚠️ **Offline stand-in, not CLIP** (details below)")
        with gr.Tab("Zero-shot classification"):
            with gr.Row():
                with gr.Column():
                    image = image_input(label="Image", sources=["upload", "webcam", "clipboard"],
                                     elem_id="clip-image")
                with gr.Column():
                    labels = gr.Textbox(label="Labels (comma or line separated)", value=DEFAULT_LABELS, lines=1)
                    run = gr.Button("Classify", variant="primary", elem_id="clip-run")
                    examples_that_run(examples, image, run)
                    template = gr.Textbox(label="Prompt template ({} is replaced by each label)",
                                          value=DEFAULT_TEMPLATE)
                    prediction = gr.Label(label="Zero-shot prediction", num_top_classes=5, elem_id="clip-label")
                    cosines = gr.Dataframe(headers=["prompt", "cosine", "probability"], label="Prompts and scores")
        with gr.Tab("Search"):
            uploads = gr.File(label=f"Add images to the gallery (at most {MAX_CLIP_GALLERY_UPLOADS}; the sample "
                                    "photos are always in it)", file_count="multiple", file_types=["image"])
            with gr.Row():
                with gr.Column():
                    query = gr.Textbox(label="Text → image: describe what you are looking for",
                                       value="something to drink")
                    search = gr.Button("Search the gallery", variant="primary")
                    found = gr.Gallery(label="Gallery ranked by cosine similarity", columns=3, height="auto")
                with gr.Column():
                    probe = image_input(label="Image → text: a picture")
                    candidates = gr.Textbox(label="Candidate descriptions, one per line", value=DEFAULT_TEXTS,
                                            lines=5)
                    describe = gr.Button("Rank the descriptions", variant="primary")
                    described = gr.Dataframe(headers=["text", "cosine"], label="Descriptions ranked")
        with gr.Tab("Similarity matrix"):
            gr.Markdown("Every gallery image (sample photos + the images added under *Search*) against every text.")
            texts = gr.Textbox(label="Texts, one per line", value=DEFAULT_TEXTS, lines=5)
            compute = gr.Button("Compute the matrix", variant="primary")
            heatmap = gr.Plot(label="Cosine similarity: images × texts")
        badge = gr.Markdown(badge_text(source), elem_id="clip-badge")  # the loaded model's figures follow

        @user_errors
        def classify(image: str | None, labels: str, template: str):
            if not image:
                raise InputError("Please upload an image (or pick an example) first.")
            chosen = parse_labels(labels)
            prompts = apply_template(template, chosen)
            result = zero_shot(service(), image, prompts)
            rows = [[p, round(s, 4), round(q, 4)] for p, s, q in zip(prompts, result.similarities, result.probabilities)]
            rows.sort(key=lambda row: -row[1])
            return dict(zip(chosen, result.probabilities)), rows

        @user_errors
        def text_to_image(text: str, images: list[str] | None):
            query_text = parse_query(text)
            pictures = gallery_images(images)
            scores = service().similarity([array for _, array in pictures], [query_text])[:, 0]
            order = np.argsort(-scores, kind="stable")  # two uploads may share a file name: rank by position
            return [(Image.fromarray(pictures[i][1]), f"{pictures[i][0]}: {scores[i]:.3f}") for i in order]

        @user_errors
        def image_to_text(image: str | None, descriptions: str):
            if not image:
                raise InputError("Please upload a picture first.")
            candidates_list = parse_texts(descriptions)
            scores = service().similarity([np.asarray(load_image(image))], candidates_list)[0]
            return [[name, round(score, 4)] for name, score in rank(scores, candidates_list)]

        @user_errors
        def matrix(texts: str, images: list[str] | None):
            chosen = parse_texts(texts)
            pictures = gallery_images(images)
            values = service().similarity([array for _, array in pictures], chosen)
            return similarity_figure(values, [name for name, _ in pictures], chosen)

        gr.on([run.click, image.upload], classify, inputs=[image, labels, template],
              outputs=[prediction, cosines], api_name="clip_classify", concurrency_id="clip")
        gr.on([search.click, query.submit], text_to_image, inputs=[query, uploads], outputs=found,
              api_name="clip_search", concurrency_id="clip")
        describe.click(image_to_text, inputs=[probe, candidates], outputs=described, api_name="clip_describe",
                       concurrency_id="clip")
        compute.click(matrix, inputs=[texts, uploads], outputs=heatmap, api_name="clip_matrix", concurrency_id="clip")
        # on the first visit, not while the gallery starts: the page is up before any model has loaded
        page.load(page_badge, None, badge, api_name=False, show_progress="hidden")
        deep_link(page, {"image": image, "labels": labels, "template": template}, run=run,
                  examples={"image": {Path(file).stem: file for file in examples}})
    return page


demo = Demo(
    slug=SLUG,
    order=60,
    title="CLIP zero-shot",
    description="Match images and texts in one embedding space: zero-shot labels, search both ways, a similarity matrix.",
    build=build,
    tags=("multimodal", "CLIP", "zero-shot", "contrastive", "retrieval"),
    topic="Multimodal transformers: CLIP",
    lesson=LESSON,
    models=(ModelSlot(task=TASK, default="embedded", hub_example=store.TASKS[TASK].hub_default),),
    traffic=(ApiCall("clip_classify", lambda: (handle_file(str(sample_photos()["coffee"])), DEFAULT_LABELS,
                                               DEFAULT_TEMPLATE)),
             ApiCall("clip_search", ("a cat", None)),
             ApiCall("clip_describe", lambda: (handle_file(str(sample_photos()["chelsea"])), DEFAULT_TEXTS)),
             ApiCall("clip_matrix", (DEFAULT_TEXTS, None))),
)


if __name__ == "__main__":  # `python demos/clip/run.py` serves this demo alone
    from txgallery.gallery import launch_one

    launch_one(demo)
