"""CLIP: images and texts in one embedding space — zero-shot classification, search both ways, a similarity matrix.

Reads top to bottom: the lesson, the input handling and maths as plain functions, what each button runs, then the
page's tabs and `build()` that wires them. The model runs in `service.py` (`ClipMatcher`). Run alone:
`python demos/clip/run.py`, `python -m txgallery_demos.clip` or `txgallery serve --demo clip`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import gradio as gr
import numpy as np
from gradio_client import handle_file
from PIL import Image
from txgallery_demos.clip.service import ClipMatcher, badge_text, is_stand_in, zero_shot

from txgallery import ApiCall, Demo, InputError, ModelSlot, PageContext, connect
from txgallery.lib.images import load_image, load_images, sample_photos
from txgallery.limits import (
    MAX_CLIP_GALLERY_UPLOADS,
    MAX_CLIP_LABELS,
    MAX_CLIP_TEXT_CHARS,
)
from txgallery.models import clip, store
from txgallery.models.hub import ModelLoadError
from txgallery.ui import (
    deep_link,
    examples_that_run,
    image_input,
    loaded_badge,
    user_errors,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
It matches texts through ImageNet's vocabulary only. Online, whoever runs the gallery can configure a real open_clip
model, e.g. `ViT-B-32/laion2b_s34b_b79k` (`--model clip=…`, or `[demos.clip]` in `txgallery.toml`).

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


def similarity_figure(matrix: np.ndarray, image_names: list[str], texts: list[str]) -> Figure:
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


# --- what the page's events run -----------------------------------------------------------------------------------


class Handlers:
    """What the page's events run, on its one model (plain methods: testable without a browser)."""

    def __init__(self, ctx: PageContext) -> None:
        # the page offers no choice of model: only the first configured one is connected (and deployed on Ray)
        self.source = ctx.model()
        self.matcher = None if isinstance(self.source, ModelLoadError) else connect(ClipMatcher, self.source)
        # the page's model never changes, so its badge is made once, on the first page load (an exception is not kept)
        self.badge = functools.lru_cache(maxsize=1)(self.fresh_badge)

    def service(self) -> ClipMatcher:
        """The page's model service, or the reason it cannot run (raised)."""
        if self.matcher is None:
            raise self.source
        return self.matcher

    def fresh_badge(self) -> str:
        """The badge once the model has loaded, with how well it does (or why it cannot run)."""
        return loaded_badge(self.matcher, self.source, badge_text)

    @user_errors
    def classify(self, image: str | None, labels: str, template: str) -> tuple[dict[str, float], list[list]]:
        """Zero-shot label probabilities, and each prompt's cosine and probability, best first."""
        if not image:
            raise InputError("Please upload an image (or pick an example) first.")
        chosen = parse_labels(labels)
        prompts = apply_template(template, chosen)
        result = zero_shot(self.service(), image, prompts)
        rows = [[p, round(s, 4), round(q, 4)] for p, s, q in zip(prompts, result.similarities, result.probabilities)]
        rows.sort(key=lambda row: -row[1])
        return dict(zip(chosen, result.probabilities)), rows

    @user_errors
    def text_to_image(self, text: str, images: list[str] | None) -> list[tuple[Image.Image, str]]:
        """The gallery ranked by how well each picture matches the text."""
        query_text = parse_query(text)
        pictures = gallery_images(images)
        scores = self.service().similarity([array for _, array in pictures], [query_text])[:, 0]
        order = np.argsort(-scores, kind="stable")  # two uploads may share a file name: rank by position
        return [(Image.fromarray(pictures[i][1]), f"{pictures[i][0]}: {scores[i]:.3f}") for i in order]

    @user_errors
    def image_to_text(self, image: str | None, descriptions: str) -> list[list]:
        """The descriptions ranked by how well each matches the picture."""
        if not image:
            raise InputError("Please upload a picture first.")
        candidates = parse_texts(descriptions)
        scores = self.service().similarity([np.asarray(load_image(image))], candidates)[0]
        return [[name, round(score, 4)] for name, score in rank(scores, candidates)]

    @user_errors
    def matrix(self, texts: str, images: list[str] | None) -> Figure:
        """Every gallery picture against every text, as a heatmap."""
        chosen = parse_texts(texts)
        pictures = gallery_images(images)
        values = self.service().similarity([array for _, array in pictures], chosen)
        return similarity_figure(values, [name for name, _ in pictures], chosen)


# --- the page's tabs -------------------------------------------------------------------------------------------------


class ClassifyTab(NamedTuple):
    """The *Zero-shot classification* tab's components."""

    image: gr.Image
    labels: gr.Textbox
    run: gr.Button
    template: gr.Textbox
    prediction: gr.Label
    cosines: gr.Dataframe


def classify_tab(examples: list[str]) -> ClassifyTab:
    """A picture, labels and a prompt template; the prediction and each prompt's scores."""
    with gr.Tab("Zero-shot classification"):
        with gr.Row():
            with gr.Column():
                image = image_input(label="Image", sources=["upload", "webcam", "clipboard"], elem_id="clip-image")
            with gr.Column():
                labels = gr.Textbox(label="Labels (comma or line separated)", value=DEFAULT_LABELS, lines=1)
                run = gr.Button("Classify", variant="primary", elem_id="clip-run")
                examples_that_run(examples, image, run)
                template = gr.Textbox(label="Prompt template ({} is replaced by each label)", value=DEFAULT_TEMPLATE)
                prediction = gr.Label(label="Zero-shot prediction", num_top_classes=5, elem_id="clip-label")
                cosines = gr.Dataframe(headers=["prompt", "cosine", "probability"], label="Prompts and scores")
    return ClassifyTab(image, labels, run, template, prediction, cosines)


class SearchTab(NamedTuple):
    """The *Search* tab's components: text → image on the left, image → text on the right."""

    uploads: gr.File
    query: gr.Textbox
    find: gr.Button
    found: gr.Gallery
    probe: gr.Image
    candidates: gr.Textbox
    describe: gr.Button
    described: gr.Dataframe


def search_tab() -> SearchTab:
    """Search the gallery by a text, and rank descriptions of a picture."""
    with gr.Tab("Search"):
        uploads = gr.File(label=f"Add images to the gallery (at most {MAX_CLIP_GALLERY_UPLOADS}; the sample "
                                "photos are always in it)", file_count="multiple", file_types=["image"])
        with gr.Row():
            with gr.Column():
                query = gr.Textbox(label="Text → image: describe what you are looking for",
                                   value="something to drink")
                find = gr.Button("Search the gallery", variant="primary")
                found = gr.Gallery(label="Gallery ranked by cosine similarity", columns=3, height="auto")
            with gr.Column():
                probe = image_input(label="Image → text: a picture")
                candidates = gr.Textbox(label="Candidate descriptions, one per line", value=DEFAULT_TEXTS, lines=5)
                describe = gr.Button("Rank the descriptions", variant="primary")
                described = gr.Dataframe(headers=["text", "cosine"], label="Descriptions ranked")
    return SearchTab(uploads, query, find, found, probe, candidates, describe, described)


def matrix_tab() -> tuple[gr.Textbox, gr.Button, gr.Plot]:
    """Every gallery picture against every text: (texts, button, heatmap)."""
    with gr.Tab("Similarity matrix"):
        gr.Markdown("Every gallery image (sample photos + the images added under *Search*) against every text.")
        texts = gr.Textbox(label="Texts, one per line", value=DEFAULT_TEXTS, lines=5)
        compute = gr.Button("Compute the matrix", variant="primary")
        heatmap = gr.Plot(label="Cosine similarity: images × texts")
    return texts, compute, heatmap


# --- the page ---------------------------------------------------------------------------------------------------------


def build(ctx: PageContext) -> gr.Blocks:
    """The CLIP page: zero-shot classification, text ↔ image search, similarity matrix."""
    handlers = Handlers(ctx)
    examples = [str(path) for path in sample_photos().values()]
    with gr.Blocks(title="CLIP") as page:
        if is_stand_in(handlers.source):  # what runs, before any result
            gr.Markdown("⚠️ **Offline stand-in, not CLIP** (details below)")
        classify, search = classify_tab(examples), search_tab()
        texts, compute, heatmap = matrix_tab()
        badge = gr.Markdown(badge_text(handlers.source), elem_id="clip-badge")  # the loaded model's figures follow

        gr.on([classify.run.click, classify.image.upload], handlers.classify,
              inputs=[classify.image, classify.labels, classify.template],
              outputs=[classify.prediction, classify.cosines], api_name="clip_classify", concurrency_id="clip")
        gr.on([search.find.click, search.query.submit], handlers.text_to_image, inputs=[search.query, search.uploads],
              outputs=search.found, api_name="clip_search", concurrency_id="clip")
        search.describe.click(handlers.image_to_text, inputs=[search.probe, search.candidates],
                              outputs=search.described, api_name="clip_describe", concurrency_id="clip")
        compute.click(handlers.matrix, inputs=[texts, search.uploads], outputs=heatmap, api_name="clip_matrix",
                      concurrency_id="clip")
        # on the first visit, not while the gallery starts: the page is up before any model has loaded
        page.load(handlers.badge, None, badge, api_name=False, show_progress="hidden")
        deep_link(page, {"image": classify.image, "labels": classify.labels, "template": classify.template},
                  run=classify.run, examples={"image": {Path(file).stem: file for file in examples}})
    return page


demo = Demo(
    slug=SLUG,
    order=60,
    title="CLIP zero-shot",
    description=("Match images and texts in one embedding space: zero-shot labels, search both ways, a similarity "
                 "matrix."),
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
