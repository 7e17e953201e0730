"""The ViT demo's logic, without Gradio: the recipe's numbers, the patch grid, rollout, positions, ViT vs CNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from txgallery_demos.vit.run import (
    CNN_REF,
    GRID_COLOUR,
    SEED_RECIPE,
    SHOWN_SIDE,
    TASK,
    ImageService,
    demo,
    patch_grid_picture,
    patch_grid_title,
    position_figure,
    position_similarity,
    recipe_table,
    rollout_picture,
    top_frame,
)

from txgallery.lib.attention import check_rollout_settings
from txgallery.lib.attention_views import figure_picture
from txgallery.lib.fashion_mnist import FASHION_MNIST_LABELS
from txgallery.lib.images import fashion_mnist_examples, load_image, sample_photos
from txgallery.lib.vit import VitGeometry
from txgallery.limits import VIT_TOP_K, InputError
from txgallery.models import store
from txgallery.plugin import page_context


@pytest.fixture(scope="module")
def vit() -> ImageService:
    return ImageService(store.resolve("embedded", TASK))


@pytest.fixture(scope="module")
def cnn() -> ImageService:
    return ImageService(store.resolve(CNN_REF, TASK))


def test_recipe_table_has_this_models_and_the_seeds_numbers(vit):
    geometry = vit.geometry()
    table = recipe_table(geometry).set_index("step")
    assert table.loc["patches (tokens)", "this model"] == "4×4 = 16"
    assert table.loc["numbers per patch", "this model"] == "7·7·1 = 49"
    assert table.loc["sequence length with [CLS]", "this model"] == "17"
    assert table.loc["patches (tokens)", "ViT-B/16 (the paper's base model)"] == "14×14 = 196"
    assert table.loc["numbers per patch", "ViT-B/16 (the paper's base model)"] == "16·16·3 = 768"
    assert SEED_RECIPE.num_patches == 196


def test_patch_grid_draws_one_cell_and_number_per_patch():
    geometry = VitGeometry(image_size=28, patch_size=7, grid=(4, 4), channels=1, embed_dim=96, depth=4, heads=4,
                           prefix_tokens=1)
    picture = patch_grid_picture(np.zeros((28, 28), dtype=np.uint8), geometry)
    assert picture.shape == (SHOWN_SIDE, SHOWN_SIDE, 3)
    drawn = np.all(picture == GRID_COLOUR, axis=-1)
    cell = SHOWN_SIDE // 4
    for i in (1, 2, 3):  # the three inner lines each way run the whole picture
        assert drawn[:, i * cell].all() and drawn[i * cell, :].all()
    inside = drawn.reshape(4, cell, 4, cell)[:, 2:-2, :, 2:-2]  # each cell without its border lines
    assert (inside.sum(axis=(1, 3)) > 0).all()  # every one of the 16 cells carries its number
    assert patch_grid_title(geometry) == "16 patches of 7×7 → 16 tokens of size 96"


def test_rollout_picture_is_brightest_where_the_rollout_is_highest():
    patch_map = np.zeros((4, 4))
    patch_map[1, 2] = 1.0
    picture = rollout_picture(np.full((28, 28), 128, dtype=np.uint8), patch_map)
    cell = SHOWN_SIDE // 4
    brightness = picture.astype(float).sum(-1).reshape(4, cell, 4, cell).mean(axis=(1, 3))
    assert np.unravel_index(brightness.argmax(), brightness.shape) == (1, 2)
    assert picture.shape == (SHOWN_SIDE, SHOWN_SIDE, 3)


def test_fashion_examples_are_classified_with_rollout(vit):
    examples = fashion_mnist_examples()
    correct = 0
    for name, path in examples.items():
        result = vit.classify(np.asarray(load_image(path)), "mean", 0.0)
        assert len(result.top) == VIT_TOP_K and result.top[0][1] >= result.top[-1][1]
        assert result.seen.shape == (28, 28) and result.rollout.shape == (4, 4)
        assert np.isclose(result.rollout.sum(), 1.0)
        correct += result.top[0][0] == name
    assert correct >= 8  # one test image per class; the model's held-out accuracy is above 0.85
    picture = np.asarray(load_image(examples["Sneaker"]))
    assert not np.allclose(vit.classify(picture, "max", 0.9).rollout, vit.classify(picture, "mean", 0.0).rollout)


def test_position_embeddings_and_their_similarity(vit):
    embeddings = vit.position_embeddings()
    assert embeddings.shape == (16, 96)
    similarity = position_similarity(embeddings, (4, 4))
    picture = figure_picture(position_figure(similarity))
    assert picture.ndim == 3 and picture.shape[-1] == 3 and picture.std() > 0
    assert similarity.shape == (4, 4, 4, 4)
    assert np.allclose([similarity[r, c, r, c] for r in range(4) for c in range(4)], 1.0, atol=1e-5)
    assert np.allclose(similarity.reshape(16, 16), similarity.reshape(16, 16).T, atol=1e-6)


def test_badges_say_which_model_and_how_good(vit, cnn):
    assert "vit-fashion-mnist" in vit.describe() and "held-out accuracy" in vit.describe()
    assert "ViT" in vit.describe() and "CNN" in cnn.describe()


def test_vit_and_cnn_on_the_same_photo(vit, cnn):
    photo = np.asarray(load_image(sample_photos()["coffee"]))
    cnn_result, vit_result = cnn.classify(photo), vit.classify(photo)
    assert cnn_result.top[0][0] == "espresso" and cnn_result.rollout is None and cnn_result.geometry is None
    assert vit_result.top[0][0] in FASHION_MNIST_LABELS  # the embedded ViT only knows clothes
    assert vit.predict([photo, photo]).shape == (2, 10)
    assert list(top_frame(cnn_result.top).columns) == ["class", "probability"]


def test_bad_settings_are_refused():
    with pytest.raises(InputError, match="Head fusion"):
        check_rollout_settings("median", 0.0)
    with pytest.raises(InputError, match="discard ratio"):
        check_rollout_settings("mean", 1.0)
    with pytest.raises(InputError, match="between 0 and 0.95"):  # the slider's end, for an API call that skips it
        check_rollout_settings("mean", 0.96)
    with pytest.raises(InputError, match="a number"):
        check_rollout_settings("mean", "half")
    with pytest.raises(InputError, match="Head fusion"):
        check_rollout_settings(["mean"], 0.0)


def test_the_page_answers_first_and_draws_its_pictures_from_the_same_forward(monkeypatch, tmp_path):
    from PIL import Image
    from txgallery_demos.vit.run import build

    forwards = []
    original = ImageService.classify

    def counted(self, *args, **kwargs):
        forwards.append(args[1:])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ImageService, "classify", counted)
    page = build(page_context(demo))
    handler = {fn.api_name: fn.fn for fn in page.fns.values()}
    path = tmp_path / "sneaker.png"
    Image.open(fashion_mnist_examples()["Sneaker"]).save(path)

    # the answer's event skips Gradio's processing: it takes the upload's FileData and returns the plot's value
    summary, top = handler["vit_classify"]({"path": str(path), "meta": {"_type": "gradio.FileData"}}, "mean", 0.0)
    assert summary.startswith("### Sneaker") and top["columns"] == ["class", "probability"]
    assert top["data"][0][0] == "Sneaker" and len(top["data"]) == VIT_TOP_K and top["mark"] == "bar"
    grid, rollout, captions = handler["vit_explain"](str(path), "mean", 0.0)
    for shown in (grid, rollout):  # the pictures as the browser gets them: files in Gradio's cache
        assert Image.open(shown["path"]).size == (SHOWN_SIDE, SHOWN_SIDE)
    assert "16 patches" in captions
    assert len(forwards) == 1  # the pictures came from the classification's result
    handler["vit_explain"](str(path), "max", 0.5)  # other settings: another forward, another rollout
    assert forwards == [("mean", 0.0), ("max", 0.5)]


def test_the_examples_show_the_models_own_task_without_the_dataset_installed(tmp_path, monkeypatch):
    """Fashion-MNIST test images ship with the package: the page shows them first even where Debian's dataset is
    absent, and the photos come second, labelled as outside the model's training data."""
    from txgallery_demos.vit.run import example_groups

    from txgallery.lib.fashion_mnist import FASHION_MNIST_ENV

    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))  # an empty folder: no dataset
    (own, fashion), (outside, photos) = example_groups(store.resolve("embedded", TASK))
    assert "Fashion-MNIST" in own and len(fashion) == len(FASHION_MNIST_LABELS)
    assert all(Path(path).stat().st_size < 2_000 for path in fashion)
    assert "Outside its training data" in outside and any("chelsea" in path for path in photos)


def test_the_cnn_compared_is_a_model_slot_of_its_own():
    """The second tab's CNN is the page's `cnn` slot: listed with the page's models, and configurable."""
    from txgallery.settings import load_settings

    assert [source.task for source in page_context(demo).models["cnn"]] == [TASK]
    assert page_context(demo).models["cnn"][0].ref == store.resolve(CNN_REF, TASK).ref
    chosen = page_context(demo, load_settings(["vit.cnn=./nowhere"], environ={}))
    assert isinstance(chosen.models["cnn"][0], store.ModelLoadError) and chosen.configured == {"cnn"}
    assert chosen.models["model"][0].kind == "embedded"  # `vit.cnn` leaves the page's own model alone
