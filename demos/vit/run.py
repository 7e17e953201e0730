"""Vision Transformer: an image becomes a sequence of patch tokens, and a plain transformer encoder classifies it.

Reads top to bottom: the lesson, the pictures and numbers as plain functions and one service class (testable
without Gradio), then `build()` that wires the UI. Run alone: `txgallery serve --demo vit` or
`python -m txgallery_demos.vit`.
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
from txgallery_demos.vit.service import ImageClassifier, VitGeometry

from txgallery.lib.attention import (
    HEAD_FUSIONS,
    check_rollout_settings,
    cls_patch_map,
    rollout_row,
)
from txgallery.lib.attention_views import (
    OVERLAY_FORMAT,
    enlarged_picture,
    figure_picture,
    patch_map_overlay,
)
from txgallery.lib.fashion_mnist import FASHION_MNIST_LABELS
from txgallery.lib.images import fashion_mnist_examples, load_image, sample_photos
from txgallery.lib.threads import settle_threads_for
from txgallery.limits import MAX_DISCARD_RATIO, VIT_TOP_K, InputError
from txgallery.models import store
from txgallery.plugin import ApiCall, Demo, ModelSlot, PageContext
from txgallery.serving.seam import ServiceUnavailable, connect
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
                         "ViT-B/16 (the seed's numbers)": [fmt.format(*seed) for _, fmt in rows]})


SHOWN_SIDE = 336  # pixels of the pictures the page draws per request (drawn with PIL: a few ms, not a figure's ~0.2 s)
GRID_COLOUR = (255, 214, 0)


def patch_grid_title(geometry: VitGeometry) -> str:
    """What the patch grid shows, in the seed's words."""
    return (f"{geometry.num_patches} patches of {geometry.patch_size}×{geometry.patch_size} → "
            f"{geometry.num_patches} tokens of size {geometry.embed_dim}")


def patch_grid_picture(picture: np.ndarray, geometry: VitGeometry) -> np.ndarray:
    """The picture as the model sees it, cut into its patches, each numbered in token order (an RGB array)."""
    image = enlarged_picture(picture, SHOWN_SIDE).convert("RGBA")
    return np.asarray(Image.alpha_composite(image, _patch_grid_lines(geometry.grid, image.size)).convert("RGB"))


@functools.lru_cache(maxsize=8)  # the same for every picture of a model: drawn once (the numbers took 2 ms a request)
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


def held_out_note(metrics: dict) -> str:
    """The badge's accuracy part for a model with shipped metrics."""
    if "test_accuracy" not in metrics:
        return ""
    return f" · **held-out accuracy:** {metrics['test_accuracy']:.3f} on {metrics['test_size']:,} Fashion-MNIST test images"


# --- the model service ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VitResult:
    """One image through one classifier: top classes, the picture it saw and, for a ViT, the rollout per patch."""

    top: list[tuple[str, float]]
    seen: np.ndarray  # the picture after resizing/cropping, as the model saw it (uint8)
    geometry: VitGeometry | None
    rollout: np.ndarray | None  # (rows, cols), sums to 1


class ImageService:
    """An image classifier from the model store (ViT or CNN), answering with plain data."""

    batched_methods = ("predict",)  # on Ray Serve, concurrent calls share one forward pass

    def __init__(self, source: store.ModelSource) -> None:
        self.source = source
        self.loaded = store.get_store().load(source, attentions=True)
        self.classifier = ImageClassifier(self.loaded.model, self.loaded.tokenizer, self.loaded.device)
        settle_threads_for(self.loaded.model, self.loaded.device)  # the embedded ViT: one OpenMP thread on this service's thread

    def describe(self) -> str:
        """The model badge: which model, where from, why, and its held-out accuracy when it has one."""
        kind = "ViT" if self.classifier.is_vit else "CNN"
        return (model_badge(self.source) + f" · **{kind}**, {self.classifier.parameters / 1e6:.2f}M weights"
                + held_out_note(self.loaded.metrics))

    def predict(self, pictures: list[np.ndarray]) -> np.ndarray:
        """Class probabilities (N, classes) for RGB pictures (uint8 arrays)."""
        return self.classifier.predict([Image.fromarray(p) for p in pictures])

    def classify(self, picture: np.ndarray, head_fusion: str = "mean", discard_ratio: float = 0.0) -> VitResult:
        """Top classes of one RGB picture and, for a ViT, its attention rollout over the patches."""
        fitted = self.classifier.processor.fit(Image.fromarray(picture))  # resized once: shown and classified
        seen = np.asarray(fitted)
        geometry = self.classifier.geometry()
        if geometry is None:
            return VitResult(top=self.classifier.top_k(self.classifier.predict([fitted], fitted=True)[0], VIT_TOP_K),
                             seen=seen, geometry=None, rollout=None)
        # one forward gives the logits and every layer's attention, heads already fused on the model's device
        attention = self.classifier.attentions(fitted, fitted=True, head_fusion=head_fusion)
        logits = attention.logits.astype(np.float64)
        probabilities = np.exp(logits - logits.max())
        cls_row = rollout_row(attention.attentions, head_fusion, discard_ratio)  # only [CLS]'s row is drawn
        return VitResult(top=self.classifier.top_k(probabilities / probabilities.sum(), VIT_TOP_K), seen=seen,
                         geometry=geometry, rollout=cls_patch_map(cls_row, attention.grid, attention.prefix_tokens))

    def geometry(self) -> VitGeometry | None:
        """The model's patch and token numbers; None for a CNN."""
        return self.classifier.geometry()

    def position_embeddings(self) -> np.ndarray | None:
        """The learned position embedding of each patch, (patches, embed_dim); None for a CNN."""
        return self.classifier.position_embeddings()


# --- the UI ---------------------------------------------------------------------------------------------------------


def _services(refs: list[store.ModelSource | store.ModelLoadError]) -> list[tuple[str, object, object]]:
    """(name, source or error, service or None) per model reference."""
    return [(s.ref, s, None) if isinstance(s, store.ModelLoadError) else (s.ref, s, connect(ImageService, s))
            for s in refs]


def _example_groups(source) -> list[tuple[str, list[str]]]:
    """(label, files) per group of examples: the embedded ViT's own task first, then photos outside it."""
    fashion = [str(p) for p in fashion_mnist_examples().values()]
    photos = [str(p) for p in sample_photos().values()]
    if getattr(source, "kind", None) == "embedded":
        return [("Fashion-MNIST test images: the model's own task (10 clothing classes)", fashion),
                ("Outside its training data: natural photos. The model only knows clothing, so it still answers "
                 "with a clothing class, often confidently", photos)]
    return [("Natural photos", photos), ("Fashion-MNIST test images (small grey clothing pictures)", fashion)]


def build(ctx: PageContext) -> gr.Blocks:
    """The ViT page: classify with patches and rollout, [CLS] and positions, and a ViT beside a CNN."""
    models = _services(ctx.models["model"])
    _, main_source, main = models[0]
    compared = models + _services([store.resolve(CNN_REF, TASK, "the CNN to compare with")])
    example_groups = _example_groups(main_source)
    bar = dict(x="class", y="probability", y_lim=[0, 1], sort="-y", height=260)

    # The page's model never changes, so neither do its badge and numbers: they are filled when the page loads, not
    # returned with every picture (each output of an event costs Gradio a postprocessing pass and thread hops).
    @functools.lru_cache(maxsize=1)  # a failure is not cached: the next page load tries again
    def page_badge() -> str:
        """Which model runs, where from, why and how good; or why it cannot run."""
        return loaded_badge(main, main_source)

    @functools.lru_cache(maxsize=1)
    def page_recipe() -> pd.DataFrame | None:
        """The page's ViT numbers beside the seed's; nothing for a CNN or a model that cannot load (its badge says
        why)."""
        try:
            geometry = main.geometry() if main is not None else None
        except (store.ModelLoadError, ServiceUnavailable):
            return None
        return recipe_table(geometry) if geometry is not None else None

    # One picture with one setting is classified once: the answer goes out first, and the pictures drawn from the
    # same result follow in a chained event. A Gradio upload's path names its content, so the path is a fair key.
    @functools.lru_cache(maxsize=32)
    def classified(path: str, head_fusion: str, discard_ratio: float) -> VitResult:
        if main is None:
            raise main_source
        return main.classify(np.asarray(load_image(path)), head_fusion, discard_ratio)

    with gr.Blocks(title="Vision Transformer") as page:
        with gr.Tab("Patches and attention"):
            with gr.Row():
                with gr.Column():
                    # image_mode=None: Gradio hands over the uploaded file untouched; load_image converts any mode
                    image = image_input(label="Image (upload, webcam or paste)",
                                     sources=["upload", "webcam", "clipboard"], height=300, elem_id="vit-image")
                    run = gr.Button("Classify", variant="primary", elem_id="vit-run")
                    for label, files in example_groups:
                        examples_that_run(files, image, run, label=label, examples_per_page=len(files))
                    with gr.Row():  # the rollout's settings, after the picture, the button and the examples
                        fusion = gr.Radio(list(HEAD_FUSIONS), value="mean", label="Head fusion")
                        discard = gr.Slider(0.0, MAX_DISCARD_RATIO, value=0.0, step=0.05, label="Discard ratio")
                with gr.Column():
                    # the loaded model's figures follow
                    badge = gr.Markdown(model_badge(main_source), label="About the model")
                    top_class = gr.Markdown(label="Top class", elem_id="vit-top-class")
                    top5 = gr.BarPlot(label=f"Top {VIT_TOP_K} classes", elem_id="vit-top5", **bar)
            with gr.Row():
                grid_plot = gr.Image(label="The patch grid", type="numpy", format=OVERLAY_FORMAT, interactive=False,
                                     elem_id="vit-patch-grid")
                rollout_plot = gr.Image(label="Attention rollout of [CLS]", type="numpy", format=OVERLAY_FORMAT,
                                        interactive=False, elem_id="vit-rollout")
            # text, not new labels: a component update costs ~10 ms
            captions = gr.Markdown(label="About the pictures", elem_id="vit-captions")
            # the page's model never changes, so neither do its numbers: filled when the page loads, not per picture
            recipe = gr.Dataframe(label="The recipe, in numbers", interactive=False)
            with gr.Accordion("The [CLS] token and position embeddings", open=False):
                gr.Markdown(
                    "The **[CLS] token** is a learned vector placed before the patch tokens. It is no patch: it "
                    "starts the same for every image and, layer by layer, gathers what the classifier needs by "
                    "attending to the patches; the head reads only its final state. **Position embeddings** are "
                    "learned vectors added to the tokens so that the encoder, which treats its input as a set, "
                    "knows where each patch was. After training, neighbouring positions end up with similar "
                    "embeddings: each small map below shows one position's similarity to all the others.")
                positions = gr.Button("Show the position embeddings")
                position_plot = gr.Image(label="Position-embedding similarity", type="numpy", format="png",
                                         interactive=False)
        with gr.Tab("ViT vs CNN"):
            gr.Markdown("The same photo through every configured ViT and the ImageNet CNN EfficientNet-Lite0. The "
                        "embedded ViT only knows Fashion-MNIST's 10 clothing classes; add "
                        f"`--model vit=embedded,{HUB_VIT}` when online for an ImageNet ViT.")
            with gr.Row():
                photo = image_input(label="Photo",
                                 sources=["upload", "webcam", "clipboard"], height=260, elem_id="vit-compare-image")
                compare = gr.Button("Compare", variant="primary", elem_id="vit-compare-run")
            examples_that_run([str(p) for p in sample_photos().values()], photo, compare, label="Natural photos")
            badges, plots = [], []
            with gr.Row():
                for i, (name, source, _) in enumerate(compared):
                    with gr.Column():
                        badges.append(gr.Markdown(model_badge(source), label=f"Model — {name}"))
                        plots.append(gr.BarPlot(label=name, elem_id=f"vit-compare-{i}", **bar))

        @user_errors
        def classify(image: dict | str | None, head_fusion: str, discard_ratio: float):
            head_fusion, discard_ratio = check_rollout_settings(head_fusion, discard_ratio)
            result = classified(upload_path(image), head_fusion, discard_ratio)
            name, probability = result.top[0]
            top5_value = bar_plot_value(top_rows(result.top), bar["x"], bar["y"])
            return f"### {name} · {probability:.1%}", top5_value

        @user_errors
        def explain(image: dict | str | None, head_fusion: str, discard_ratio: float):
            head_fusion, discard_ratio = check_rollout_settings(head_fusion, discard_ratio)
            # the classification's result, when it ran just now
            result = classified(upload_path(image), head_fusion, discard_ratio)
            if result.geometry is None:
                return None, None, ""
            captions_text = (f"**The patch grid:** {patch_grid_title(result.geometry)}. **Attention rollout of [CLS]:** "
                             f"{head_fusion} over heads, discard ratio {discard_ratio:.0%}.")
            return (shown_value(grid_plot, patch_grid_picture(result.seen, result.geometry)),
                    shown_value(rollout_plot, rollout_picture(result.seen, result.rollout)), captions_text)

        @functools.lru_cache(maxsize=1)  # the page's model never changes: drawn once (a refusal is not cached)
        def position_picture() -> np.ndarray:
            embeddings = main.position_embeddings()
            if embeddings is None:
                raise InputError("This model is a CNN: it has no position embeddings.")
            side = int(round(len(embeddings) ** 0.5))
            return figure_picture(position_figure(position_similarity(embeddings, (side, len(embeddings) // side))))

        @user_errors
        def show_positions():
            if main is None:
                raise main_source
            return position_picture()

        @user_errors
        def compare_models(image):
            picture = np.asarray(load_image(image))
            outputs_badges, outputs_plots = [], []
            for _, source, service in compared:
                try:
                    if service is None:
                        raise source
                    outputs_plots.append(top_frame(service.classify(picture).top))
                    outputs_badges.append(service.describe())
                except store.ModelLoadError as exc:
                    outputs_badges.append(model_badge(exc))
                    outputs_plots.append(None)
            return [*outputs_badges, *outputs_plots]

        # Both events skip Gradio's per-component processing (a worker-thread hop per input and output, together as
        # long as the embedded ViT's forward): they take the upload's FileData and return what the browser is sent.
        gr.on([run.click, image.upload], classify, inputs=[image, fusion, discard], outputs=[top_class, top5],
              api_name="vit_classify", concurrency_id="vit", preprocess=False, postprocess=False).success(
            explain, inputs=[image, fusion, discard], outputs=[grid_plot, rollout_plot, captions],
            api_name="vit_explain", concurrency_id="vit", show_progress="minimal", preprocess=False, postprocess=False)
        positions.click(show_positions, outputs=position_plot, api_name="vit_positions", concurrency_id="vit")
        gr.on([compare.click, photo.upload], compare_models, inputs=photo, outputs=[*badges, *plots],
              api_name="vit_compare", concurrency_id="vit")
        # on the first visit, not while the gallery starts: the page is up before any model has loaded
        page.load(lambda: (page_badge(), page_recipe()), None, [badge, recipe], api_name=False, show_progress="hidden")
        named = {Path(file).stem: file for _, files in example_groups for file in files}
        deep_link(page, {"image": image, "fusion": fusion, "discard": discard}, run=run, examples={"image": named})
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
    models=(ModelSlot(task=TASK, default="embedded", hub_example=HUB_VIT),),
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
