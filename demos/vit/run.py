"""Vision Transformer: an image becomes a sequence of patch tokens, and a plain transformer encoder classifies it.

Reads top to bottom: the lesson, the pictures and numbers as plain functions (testable without Gradio), the page's
panels, the events, then `build(ctx)`, which wires them; the model service is in `service.py`. Run alone:
`python demos/vit/run.py` or `txgallery serve --demo vit`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from gradio_client import handle_file
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from txgallery_demos.vit.service import ImageService, VitGeometry, VitResult

from txgallery.lib.attention import HEAD_FUSIONS, check_rollout_settings
from txgallery.lib.attention_views import (
    OVERLAY_FORMAT,
    enlarged_picture,
    figure_picture,
    patch_map_overlay,
)
from txgallery.lib.fashion_mnist import FASHION_MNIST_LABELS
from txgallery.lib.images import fashion_mnist_examples, load_image, sample_photos
from txgallery.limits import MAX_DISCARD_RATIO, VIT_TOP_K, InputError
from txgallery.models.hub import ModelLoadError, ModelSource
from txgallery.plugin import ApiCall, Demo, ModelSlot, PageContext
from txgallery.serving.seam import ServiceUnavailable
from txgallery.ui import (
    bar_plot_value,
    deep_link,
    examples_that_run,
    image_input,
    loaded_badge,
    model_badge,
    shown_value,
    upload_path,
    user_errors,
)

SLUG = "vit"
TASK = "image-classification"
CNN_REF = "embedded:efficientnet-lite0"  # the convolutional network the comparison tab puts beside the ViTs
HUB_VIT = "google/vit-base-patch16-224"

LESSON = f"""
**Vision Transformers (ViT).** A transformer reads a sequence of tokens; a ViT makes one from an image. The image
is cut into square **patches** (ViT-B/16: a 224×224 image, 16×16 patches, 14 × 14 = **196 patches**); each patch's
pixels are flattened (16·16·3 = 768 numbers) and a **linear projection** turns them into an embedding (768 numbers
for ViT-B). A learned **[CLS] token** is put in front, a learned **position embedding** is added to every token (the
encoder itself does not know where a patch was), and the encoder's output at [CLS] goes to the classification head.

The embedded model is a small ViT that `txgallery train vit` trains from scratch on **Fashion-MNIST** (28×28
grayscale pictures of 10 kinds of clothing: {", ".join(FASHION_MNIST_LABELS)}). It knows nothing else: shown a cat,
it still answers with a piece of clothing. For natural photos, the *ViT vs CNN* tab puts the ImageNet
**EfficientNet-Lite0** CNN beside it, and online you can add `{HUB_VIT}` (a ViT-B/16 trained on ImageNet).

**Attention rollout** multiplies the layers' attention maps (plus the residual connection) to estimate how much
the [CLS] token's final state draws on each patch; *discard ratio* drops the weakest attention weights first.

**Try:** a Fashion-MNIST example, then a photo; a shoe photographed on a dark background; a grayscale, transparent
(RGBA) or CMYK image; your webcam.
"""

SEED_RECIPE = VitGeometry(image_size=224, patch_size=16, grid=(14, 14), channels=3, embed_dim=768, depth=12, heads=12,
                          prefix_tokens=1)  # ViT-B/16, the numbers of the seed's tutorial
SHOWN_SIDE = 336  # pixels of the pictures drawn per request, with PIL rather than a figure (why: BENCHMARKS.md, ViT)
GRID_COLOUR = (255, 214, 0)
BAR = dict(x="class", y="probability", y_lim=[0, 1], sort="-y", height=260)  # every top-classes bar plot
Services = list[tuple[str, "ModelSource | ModelLoadError", "ImageService | None"]]  # what ctx.services gives


# --- pictures and numbers (pure functions) --------------------------------------------------------------------------


def recipe_table(geometry: VitGeometry) -> pd.DataFrame:
    """This model's ViT numbers beside ViT-B/16's, one row per step of the recipe."""
    rows = [
        ("input image", "{0}×{0}×{1}"),
        ("patch size", "{2}×{2}"),
        ("patches (tokens)", "{3}×{4} = {5}"),
        ("numbers per patch", "{2}·{2}·{1} = {6}"),
        ("embedding size (linear projection)", "{7}"),
        ("sequence length with [CLS]", "{8}"),
        ("encoder layers × heads", "{9} × {10}"),
    ]

    def values(g: VitGeometry) -> list:
        return [g.image_size, g.channels, g.patch_size, g.grid[0], g.grid[1], g.num_patches, g.patch_values,
                g.embed_dim, g.num_patches + g.prefix_tokens, g.depth, g.heads]

    ours, seed = values(geometry), values(SEED_RECIPE)
    return pd.DataFrame({"step": [name for name, _ in rows],
                         "this model": [fmt.format(*ours) for _, fmt in rows],
                         "ViT-B/16 (the paper's base model)": [fmt.format(*seed) for _, fmt in rows]})


def patch_grid_title(geometry: VitGeometry) -> str:
    """What the patch grid shows, in the seed's words."""
    return (f"{geometry.num_patches} patches of {geometry.patch_size}×{geometry.patch_size} → "
            f"{geometry.num_patches} tokens of size {geometry.embed_dim}")


def patch_grid_picture(picture: np.ndarray, geometry: VitGeometry) -> np.ndarray:
    """The picture as the model sees it, cut into its patches, each numbered in token order (an RGB array)."""
    image = enlarged_picture(picture, SHOWN_SIDE).convert("RGBA")
    return np.asarray(Image.alpha_composite(image, _patch_grid_lines(geometry.grid, image.size)).convert("RGB"))


@functools.lru_cache(maxsize=8)  # the same for every picture of a model: drawn once (why: BENCHMARKS.md, ViT)
def _patch_grid_lines(grid: tuple[int, int], size: tuple[int, int]) -> Image.Image:
    """The grid lines and patch numbers alone, on a transparent (RGBA) layer of `size`."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    rows, cols = grid
    cell_w, cell_h = layer.width / cols, layer.height / rows
    for i in range(1, cols):
        draw.line([(round(i * cell_w), 0), (round(i * cell_w), layer.height)], fill=GRID_COLOUR, width=1)
    for i in range(1, rows):
        draw.line([(0, round(i * cell_h)), (layer.width, round(i * cell_h))], fill=GRID_COLOUR, width=1)
    if rows * cols <= 256:  # beyond that the numbers are unreadable
        font = ImageFont.load_default(size=max(7, int(min(cell_w, cell_h) * 0.4)))
        for r in range(rows):
            for c in range(cols):
                draw.text(((c + 0.5) * cell_w, (r + 0.5) * cell_h), str(r * cols + c + 1), fill=GRID_COLOUR,
                          anchor="mm", font=font)
    return layer


def rollout_picture(picture: np.ndarray, patch_map: np.ndarray) -> np.ndarray:
    """The [CLS] token's rollout over the patches, blended over the picture (the attention explorer's drawing)."""
    return patch_map_overlay(picture, patch_map, SHOWN_SIDE)


def position_similarity(embeddings: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Cosine similarity of each patch's position embedding with every other: (rows, cols, rows, cols)."""
    unit = embeddings / np.linalg.norm(embeddings, axis=-1, keepdims=True).clip(1e-9)
    return (unit @ unit.T).reshape(grid[0], grid[1], grid[0], grid[1])


def position_figure(similarity: np.ndarray) -> Figure:
    """One small map per patch: how similar its position embedding is to every other patch's (as in the ViT paper)."""
    rows, cols = similarity.shape[:2]
    step = max(1, max(rows, cols) // 7)  # at most 7×7 small maps stay readable
    shown_rows, shown_cols = range(0, rows, step), range(0, cols, step)
    figure = Figure(figsize=(4.6, 4.6), layout="constrained")
    grid = figure.subplots(len(shown_rows), len(shown_cols), squeeze=False)
    for i, r in enumerate(shown_rows):
        for j, c in enumerate(shown_cols):
            grid[i][j].imshow(similarity[r, c], cmap="viridis", vmin=-1, vmax=1)
            grid[i][j].set_axis_off()
    figure.suptitle("position-embedding similarity (one map per patch position)", fontsize=9)
    return figure


def top_rows(top: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Top classes with their probabilities rounded for the bar plot (best first)."""
    return [(name, round(p, 4)) for name, p in top]


def top_frame(top: list[tuple[str, float]]) -> pd.DataFrame:
    """Top classes as a table for the bar plot (best first)."""
    return pd.DataFrame(top_rows(top), columns=["class", "probability"])


def example_groups(source: ModelSource | ModelLoadError) -> list[tuple[str, list[str]]]:
    """(label, files) per group of examples: the embedded ViT's own task first, then photos outside it."""
    fashion = [str(p) for p in fashion_mnist_examples().values()]
    photos = [str(p) for p in sample_photos().values()]
    if getattr(source, "kind", None) == "embedded":
        return [("Fashion-MNIST test images: the model's own task (10 clothing classes)", fashion),
                ("Outside its training data: natural photos. The model only knows clothing, so it still answers "
                 "with a clothing class, often confidently", photos)]
    return [("Natural photos", photos), ("Fashion-MNIST test images (small grey clothing pictures)", fashion)]


def pictures_caption(geometry: VitGeometry, head_fusion: str, discard_ratio: float) -> str:
    """What the patch grid and the rollout under it show, in one line."""
    return (f"**The patch grid:** {patch_grid_title(geometry)}. **Attention rollout of [CLS]:** "
            f"{head_fusion} over heads, discard ratio {discard_ratio:.0%}.")


def position_picture(embeddings: np.ndarray | None) -> np.ndarray:
    """The position-embedding similarity of a square patch grid, as a picture (`InputError` for a CNN)."""
    if embeddings is None:
        raise InputError("This model is a CNN: it has no position embeddings.")
    side = int(round(len(embeddings) ** 0.5))
    return figure_picture(position_figure(position_similarity(embeddings, (side, len(embeddings) // side))))


# --- the panels -----------------------------------------------------------------------------------------------------


@dataclass
class ClassifyPanel:
    """The first tab: a picture and the rollout's settings in; the answer, its pictures and the model's numbers out."""

    image: gr.Image
    run: gr.Button
    fusion: gr.Radio
    discard: gr.Slider
    badge: gr.Markdown
    top_class: gr.Markdown
    top5: gr.BarPlot
    grid_plot: gr.Image
    rollout_plot: gr.Image
    captions: gr.Markdown
    recipe: gr.Dataframe
    show_positions: gr.Button
    positions: gr.Image


def classify_panel(source: ModelSource | ModelLoadError, groups: list[tuple[str, list[str]]]) -> ClassifyPanel:
    """The picture, its examples and the rollout's settings beside the answer; the patch grid and rollout below."""
    with gr.Row():
        with gr.Column():
            # image_mode=None: Gradio hands over the uploaded file untouched; load_image converts any mode
            image = image_input(label="Image (upload, webcam or paste)", sources=["upload", "webcam", "clipboard"],
                                height=300, elem_id="vit-image")
            run = gr.Button("Classify", variant="primary", elem_id="vit-run")
            for label, files in groups:
                examples_that_run(files, image, run, label=label, examples_per_page=len(files))
            with gr.Row():  # the rollout's settings, after the picture, the button and the examples
                fusion = gr.Radio(list(HEAD_FUSIONS), value="mean", label="Head fusion")
                discard = gr.Slider(0.0, MAX_DISCARD_RATIO, value=0.0, step=0.05, label="Discard ratio")
        with gr.Column():
            badge = gr.Markdown(model_badge(source), label="About the model")  # the loaded model's figures follow
            top_class = gr.Markdown(label="Top class", elem_id="vit-top-class")
            top5 = gr.BarPlot(label=f"Top {VIT_TOP_K} classes", elem_id="vit-top5", **BAR)
    with gr.Row():
        grid_plot = gr.Image(label="The patch grid", type="numpy", format=OVERLAY_FORMAT, interactive=False,
                             elem_id="vit-patch-grid")
        rollout_plot = gr.Image(label="Attention rollout of [CLS]", type="numpy", format=OVERLAY_FORMAT,
                                interactive=False, elem_id="vit-rollout")
    # a caption, not new labels: relabelling a component costs more (BENCHMARKS.md, ViT)
    captions = gr.Markdown(label="About the pictures", elem_id="vit-captions")
    recipe = gr.Dataframe(label="The recipe, in numbers", interactive=False)
    with gr.Accordion("The [CLS] token and position embeddings", open=False):
        gr.Markdown(
            "The **[CLS] token** is a learned vector placed before the patch tokens. It is no patch: it starts the "
            "same for every image and, layer by layer, gathers what the classifier needs by attending to the "
            "patches; the head reads only its final state. **Position embeddings** are learned vectors added to the "
            "tokens so that the encoder, which treats its input as a set, knows where each patch was. After "
            "training, neighbouring positions end up with similar embeddings: each small map below shows one "
            "position's similarity to all the others.")
        show_positions = gr.Button("Show the position embeddings")
        positions = gr.Image(label="Position-embedding similarity", type="numpy", format="png", interactive=False)
    return ClassifyPanel(image, run, fusion, discard, badge, top_class, top5, grid_plot, rollout_plot, captions,
                         recipe, show_positions, positions)


@dataclass
class ComparePanel:
    """The second tab: one photo in; a badge and the top classes of each model out."""

    photo: gr.Image
    run: gr.Button
    badges: list[gr.Markdown]
    plots: list[gr.BarPlot]


def compare_panel(compared: Services) -> ComparePanel:
    """A photo and one column per model: the configured ViTs, then the CNN."""
    gr.Markdown("The same photo through every configured ViT and the ImageNet CNN EfficientNet-Lite0. The embedded "
                f"ViT only knows Fashion-MNIST's 10 clothing classes; add `--model vit=embedded,{HUB_VIT}` when online "
                "for an ImageNet ViT.")
    with gr.Row():
        photo = image_input(label="Photo", sources=["upload", "webcam", "clipboard"], height=260,
                            elem_id="vit-compare-image")
        run = gr.Button("Compare", variant="primary", elem_id="vit-compare-run")
    examples_that_run([str(p) for p in sample_photos().values()], photo, run, label="Natural photos")
    badges, plots = [], []
    with gr.Row():
        for i, (name, source, _) in enumerate(compared):
            with gr.Column():
                badges.append(gr.Markdown(model_badge(source), label=f"Model — {name}"))
                plots.append(gr.BarPlot(label=name, elem_id=f"vit-compare-{i}", **BAR))
    return ComparePanel(photo, run, badges, plots)


# --- the events -----------------------------------------------------------------------------------------------------


def answer_then_draw(panel: ClassifyPanel, source: ModelSource | ModelLoadError, service: ImageService | None) -> None:
    """Classify on upload or click and answer first; the patch grid and the rollout follow, from the same result."""

    # one picture with one setting is classified once; a Gradio upload's path names its content, so it is a fair key
    @functools.lru_cache(maxsize=32)
    def classified(path: str, head_fusion: str, discard_ratio: float) -> VitResult:
        if service is None:
            raise source
        return service.classify(np.asarray(load_image(path)), head_fusion, discard_ratio)

    @user_errors
    def classify(image: dict | str | None, head_fusion: str, discard_ratio: float):
        """Classify a picture with the page's ViT (or CNN): the top class with its probability (Markdown) and the top 5
        as a bar plot."""
        head_fusion, discard_ratio = check_rollout_settings(head_fusion, discard_ratio)
        result = classified(upload_path(image), head_fusion, discard_ratio)
        name, probability = result.top[0]
        return f"### {name} · {probability:.1%}", bar_plot_value(top_rows(result.top), BAR["x"], BAR["y"])

    @user_errors
    def explain(image: dict | str | None, head_fusion: str, discard_ratio: float):
        """What the ViT saw of a picture: its patch grid and the attention rollout of [CLS] laid over it (pictures), and
        a caption; empty for a CNN."""
        head_fusion, discard_ratio = check_rollout_settings(head_fusion, discard_ratio)
        result = classified(upload_path(image), head_fusion, discard_ratio)  # the classification's, when it just ran
        if result.geometry is None:
            return None, None, ""
        return (shown_value(panel.grid_plot, patch_grid_picture(result.seen, result.geometry)),
                shown_value(panel.rollout_plot, rollout_picture(result.seen, result.rollout)),
                pictures_caption(result.geometry, head_fusion, discard_ratio))

    # both events skip Gradio's per-component processing: they take the upload's FileData and return what the browser
    # is sent (`shown_value`, `bar_plot_value`); why, in BENCHMARKS.md, "ViT: gallery path vs raw forward"
    settings = [panel.image, panel.fusion, panel.discard]
    gr.on([panel.run.click, panel.image.upload], classify, inputs=settings, outputs=[panel.top_class, panel.top5],
          api_name="vit_classify", concurrency_id=SLUG, preprocess=False, postprocess=False).success(
        explain, inputs=settings, outputs=[panel.grid_plot, panel.rollout_plot, panel.captions],
        api_name="vit_explain", concurrency_id=SLUG, show_progress="minimal", preprocess=False, postprocess=False)


def answer_positions(panel: ClassifyPanel, source: ModelSource | ModelLoadError, service: ImageService | None) -> None:
    """Draw the position-embedding similarity on request, once per page: the page's model never changes."""

    @functools.lru_cache(maxsize=1)  # a refusal (a CNN, a model that cannot load) is an exception: not kept
    def drawn() -> np.ndarray:
        """How similar the ViT's learned position embeddings are to each other: one small map per patch position (a
        picture)."""
        if service is None:
            raise source
        return position_picture(service.position_embeddings())

    panel.show_positions.click(user_errors(drawn), outputs=panel.positions, api_name="vit_positions",
                               concurrency_id=SLUG)


def fill_on_load(page: gr.Blocks, panel: ClassifyPanel, source: ModelSource | ModelLoadError,
                 service: ImageService | None) -> None:
    """The loaded model's badge and ViT numbers, filled on the first visit rather than returned with every picture,
    and not while the gallery starts: the page is up before any model has loaded."""

    @functools.lru_cache(maxsize=1)  # the page's model never changes
    def shown() -> tuple[str, pd.DataFrame | None]:
        try:  # a model that cannot load has no numbers: its badge says why
            geometry = service.geometry() if service is not None else None
        except (ModelLoadError, ServiceUnavailable):
            geometry = None
        return loaded_badge(service, source), recipe_table(geometry) if geometry is not None else None

    page.load(shown, None, [panel.badge, panel.recipe], api_name=False, show_progress="hidden")


def answer_comparison(panel: ComparePanel, compared: Services) -> None:
    """Classify the photo with every model, each column with its badge."""

    @user_errors
    def compare(image):
        """Classify one photo with every model of the comparison (ViT and CNN): each model's badge and top classes."""
        picture = np.asarray(load_image(image))
        badges, plots = [], []
        for _, source, service in compared:
            try:
                if service is None:
                    raise source
                plots.append(top_frame(service.classify(picture).top))
                badges.append(service.describe())
            except ModelLoadError as exc:
                badges.append(model_badge(exc))
                plots.append(None)
        return [*badges, *plots]

    gr.on([panel.run.click, panel.photo.upload], compare, inputs=panel.photo, outputs=[*panel.badges, *panel.plots],
          api_name="vit_compare", concurrency_id=SLUG)


# --- the page -------------------------------------------------------------------------------------------------------


def build(ctx: PageContext) -> gr.Blocks:
    """The ViT page: classify with patches and rollout, [CLS] and positions, and the ViTs beside a CNN."""
    models = ctx.services(ImageService)
    _, source, service = models[0]
    compared = models + ctx.services(ImageService, slot="cnn")
    groups = example_groups(source)
    with gr.Blocks(title="Vision Transformer") as page:
        with gr.Tab("Patches and attention"):
            classify = classify_panel(source, groups)
        with gr.Tab("ViT vs CNN"):
            compare = compare_panel(compared)
        answer_then_draw(classify, source, service)
        answer_positions(classify, source, service)
        answer_comparison(compare, compared)
        fill_on_load(page, classify, source, service)
        named = {Path(file).stem: file for _, files in groups for file in files}
        deep_link(page, {"image": classify.image, "fusion": classify.fusion, "discard": classify.discard},
                  run=classify.run, examples={"image": named})
    return page


demo = Demo(
    slug=SLUG,
    order=50,
    title="Vision Transformer",
    description="Classify images with a ViT: see its patches, position embeddings and attention rollout, beside a CNN.",
    build=build,
    tags=("vision", "ViT", "patches", "attention rollout", "CNN"),
    topic="Vision Transformers: images as sequences of patches",
    lesson=LESSON,
    models=(ModelSlot(task=TASK, default="embedded", hub_example=HUB_VIT),
            ModelSlot(task=TASK, default=CNN_REF, name="cnn")),  # the CNN the second tab compares with
    traffic=(ApiCall("vit_classify", lambda: (handle_file(str(next(iter(fashion_mnist_examples().values())))),
                                              "mean", 0.0)),
             ApiCall("vit_classify", lambda: (handle_file(str(sample_photos()["coffee"])), "max", 0.5)),
             ApiCall("vit_explain", lambda: (handle_file(str(sample_photos()["coffee"])), "max", 0.5)),
             ApiCall("vit_compare", lambda: (handle_file(str(sample_photos()["chelsea"])),)),
             ApiCall("vit_positions")),
)


if __name__ == "__main__":  # `python demos/vit/run.py` serves this demo alone
    from txgallery.gallery import launch_one

    launch_one(demo)
