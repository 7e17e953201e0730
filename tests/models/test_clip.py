"""Image–text models: open_clip through the model store (local directories, hub references) and the offline stand-in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from txgallery.embedded import conse
from txgallery.models import clip, hub, store

TASK = clip.TASK


def _photo(name: str) -> Image.Image:
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)())


@pytest.fixture(scope="module")
def standin() -> store.LoadedModel:
    return store.get_store().load(store.resolve("embedded", TASK))


# --- open_clip ------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_random_vit_b32_saved_locally_loads_through_the_store(tmp_path):
    """A ViT-B-32 with random weights, saved as an open_clip directory, loads by path exactly as real weights would."""
    import open_clip

    torch.manual_seed(0)
    original = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    clip.save_clip_directory(original, "ViT-B-32", tmp_path / "clip")
    source = store.resolve(str(tmp_path / "clip"), TASK)
    assert source.kind == "local"
    loaded = store.ModelStore(device="cpu").load(source)
    assert isinstance(loaded.model, open_clip.CLIP)
    expected = original.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in loaded.model.state_dict().items())

    images, texts = [_photo("chelsea"), _photo("coffee")], ["a cat", "a cup of coffee", "a rocket"]
    image_embeddings = clip.embed_images(loaded, images)
    text_embeddings = clip.embed_texts(loaded, texts)
    assert image_embeddings.shape == (2, 512) and text_embeddings.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(image_embeddings, axis=1), 1.0, atol=1e-5)
    with torch.inference_mode():  # the store's model computes what the original computes
        tokens = open_clip.get_tokenizer("ViT-B-32")(texts)
        np.testing.assert_allclose(text_embeddings, original.encode_text(tokens, normalize=True).numpy(), atol=1e-5)
    assert clip.logit_scale(loaded.model) == pytest.approx(1 / 0.07, rel=1e-4)  # CLIP's initial temperature


def test_hub_references_are_checked_and_refused_offline(monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    for ref in ("ViT-B-32/laion2b_s34b_b79k", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"):
        with pytest.raises(store.ModelLoadError, match="not reachable.*offline.*works offline"):
            clip.load_clip(store.resolve(ref, TASK))
    with pytest.raises(store.ModelLoadError, match="no pretrained weights 'nope' for ViT-B-32; known tags: .*laion2b_s34b_b79k"):
        clip.load_clip(store.resolve("ViT-B-32/nope", TASK))
    with pytest.raises(store.ModelLoadError, match="not an open_clip model"):
        clip.load_clip(store.resolve("resnet50", TASK))


def test_reference_syntax():
    assert clip.open_clip_reference("ViT-B-32/laion2b_s34b_b79k") == ("ViT-B-32", "laion2b_s34b_b79k")
    assert clip.open_clip_reference("laion/CLIP-ViT-B-32-laion2B-s34B-b79K") == (
        "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", None)


def test_a_directory_that_is_not_open_clip_is_refused(tmp_path, tiny_classifier_dir):
    with pytest.raises(store.ModelLoadError, match="not an open_clip directory.*open_clip_config.json"):
        store.ModelStore(device="cpu").load(store.resolve(str(tiny_classifier_dir), TASK))


# --- maths ----------------------------------------------------------------------------------------------------------

def test_zero_shot_probabilities_are_a_softmax_of_scaled_cosines():
    cosines = np.array([[0.30, 0.25, 0.10], [0.0, 0.0, 0.5]])
    probabilities = clip.zero_shot_probabilities(cosines, scale=100.0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert probabilities[0].argmax() == 0 and probabilities[1].argmax() == 2
    assert probabilities[0, 0] / probabilities[0, 1] == pytest.approx(np.exp(5.0))  # 100 × (0.30 − 0.25)
    assert clip.zero_shot_probabilities(cosines, scale=1.0)[0, 0] < probabilities[0, 0]  # lower scale, flatter


def test_cosine_matrix_is_images_by_texts():
    rng = np.random.default_rng(0)
    images, texts = rng.normal(size=(4, 8)), rng.normal(size=(3, 8))
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    matrix = clip.cosine_matrix(images, texts)
    assert matrix.shape == (4, 3)
    assert matrix[2, 1] == pytest.approx(float(images[2] @ texts[1]))


# --- the embedded stand-in ------------------------------------------------------------------------------------------

def test_standin_is_the_embedded_default_and_says_what_it_is(standin):
    assert standin.source.kind == "embedded" and standin.source.ref == conse.CONSE_NAME
    assert "not CLIP" in standin.source.label
    assert standin.model.class_embeddings.shape == (1000, 384)


def test_shipped_class_embeddings_are_minilm_embeddings_of_the_class_prompts(standin):
    names, classes = conse.imagenet_class_names(), [0, 281, 967]
    prompts = [conse.CONSE_CLASS_TEMPLATE.format(names[i]) for i in classes]
    assert prompts[1] == "a photo of a tabby cat"
    np.testing.assert_allclose(standin.model.class_embeddings[classes].numpy(),
                               clip.embed_texts(standin, prompts), atol=1e-4)
    assert standin.metrics["command"] == "txgallery train clip"


def test_standin_ranks_a_cat_above_a_car_for_chelsea(standin):
    texts = ["a cat", "a car"]
    (similarities,) = clip.cosine_matrix(clip.embed_images(standin, [_photo("chelsea")]),
                                                clip.embed_texts(standin, texts))
    assert similarities[0] > similarities[1]


def test_standin_puts_a_cup_of_coffee_first_for_coffee(standin):
    texts = ["a cat", "a car", "a cup of coffee", "a rocket", "an astronaut", "a dog"]
    (similarities,) = clip.cosine_matrix(clip.embed_images(standin, [_photo("coffee")]),
                                                clip.embed_texts(standin, texts))
    assert texts[int(similarities.argmax())] == "a cup of coffee"


def test_standin_image_embedding_is_a_convex_combination_of_class_embeddings(standin):
    pixels = standin.tokenizer.pixels([_photo("chelsea")])
    with torch.inference_mode():
        top = standin.model.class_probabilities(pixels).topk(conse.CONSE_TOP_K)
        raw = standin.model.encode_image(pixels, normalize=False)[0]
    weights = top.values[0] / top.values[0].sum()
    expected = (weights[:, None] * standin.model.class_embeddings[top.indices[0]]).sum(0)
    torch.testing.assert_close(raw, expected)
    names = conse.imagenet_class_names()
    assert {"tabby cat", "tiger cat", "Egyptian Mau"} & {names[i] for i in top.indices[0, :3].tolist()}


@pytest.mark.slow
def test_train_clip_rebuilds_a_loadable_standin(tmp_path, standin):
    metrics = conse.train_conse(tmp_path, calibration_size=20, test_size=20, progress=False)
    assert metrics["logit_scale"] in conse.SCALE_GRID
    assert metrics["logit_scale"] == min(metrics["calibration_nll"], key=metrics["calibration_nll"].get)
    assert 0.0 <= metrics["fashion_mnist_accuracy"] <= 1.0 and metrics["fashion_mnist_size"] == 20
    model, _ = conse.conse_effnet_minilm(directory=tmp_path)
    torch.testing.assert_close(model.class_embeddings, standin.model.class_embeddings)  # deterministic
    assert clip.logit_scale(model) == pytest.approx(metrics["logit_scale"])
