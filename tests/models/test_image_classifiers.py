"""Shared vision code: safe image loading, preprocessing, the image-classifier loaders and the shipped models."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from txgallery import limits
from txgallery.embedded.vit import (
    VIT_FASHION_DIR,
    VitRecipe,
    make_vit,
    save_vit_directory,
    train_vit,
)
from txgallery.lib.fashion_mnist import FASHION_MNIST_LABELS, load_fashion_mnist
from txgallery.lib.images import (
    fashion_mnist_examples,
    load_image,
    load_images,
    sample_photos,
)
from txgallery.lib.vit import ImageClassifier
from txgallery.limits import InputError
from txgallery.models import hub, store
from txgallery.models.image_classifiers import ImageProcessor

TASK = "image-classification"


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width`×`height` pixels (a decompression bomb's header, without the bomb)."""
    data = bytearray(_png_bytes(Image.new("L", (1, 1))))
    ihdr = data[12:29]  # chunk type + 13 bytes of header data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def _classifier(ref: str) -> ImageClassifier:
    loaded = store.get_store().load(store.resolve(ref, TASK), attentions=True)
    return ImageClassifier(loaded.model, loaded.tokenizer, loaded.device)


# --- bad input --------------------------------------------------------------------------------------------------------


def test_non_image_files_are_refused(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture")
    with pytest.raises(InputError, match="notes.png is not an image this demo can read"):
        load_image(text)
    with pytest.raises(InputError, match="empty"):
        load_image(b"")
    with pytest.raises(InputError, match="Please upload an image"):
        load_image(None)


def test_corrupt_and_truncated_jpegs_are_refused():
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_image(data[: len(data) // 2])
    with pytest.raises(InputError, match="not an image"):
        load_image(data[:2] + b"\x00" * 200)  # a JPEG start marker and nothing readable after it


def test_huge_images_are_refused_before_decoding():
    # 7,000 × 7,000 is under PIL's own bomb guard: our limit, read from the header, refuses it
    with pytest.raises(InputError, match="7,000×7,000 pixels; the limit is 40 megapixels"):
        load_image(_png_claiming(7000, 7000))
    # 20,000 × 20,000 (400 megapixels in a 70-byte file) already trips PIL's guard inside Image.open
    with pytest.raises(InputError, match="too large to decode safely"):
        load_image(_png_claiming(20_000, 20_000))
    with pytest.raises(InputError, match="limited to 2 MB"):
        load_image(b"\x89PNG" + b"\x00" * limits.MAX_IMAGE_BYTES)


def test_every_mode_becomes_rgb():
    transparent = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.asarray(load_image(_png_bytes(transparent)))[0, 0].tolist() == [255, 255, 255]  # over white
    half = Image.new("LA", (4, 4), (0, 128))
    assert np.asarray(load_image(_png_bytes(half)))[0, 0].tolist() == [127, 127, 127]
    gray = Image.new("L", (4, 4), 200)
    assert np.asarray(load_image(_png_bytes(gray)))[0, 0].tolist() == [200, 200, 200]
    cmyk = io.BytesIO()
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(cmyk, "JPEG", quality=100)  # pure red in ink
    red = np.asarray(load_image(cmyk.getvalue()))[0, 0]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    deep = Image.fromarray(np.array([[0, 1000], [30000, 65535]], dtype=np.uint16))  # 16-bit grayscale
    assert deep.mode.startswith("I")
    pixels = np.asarray(load_image(_png_bytes(deep)))[..., 0]
    assert pixels[0, 0] == 0 and pixels[1, 1] == 255 and 0 < pixels[1, 0] < 255
    palette = Image.new("P", (4, 4), 3)
    assert load_image(_png_bytes(palette)).mode == "RGB"


def test_numpy_pictures_and_downscaling():
    assert np.asarray(load_image(np.full((5, 6), 0.5))).shape == (5, 6, 3)  # floats in [0, 1]
    assert np.asarray(load_image(np.zeros((5, 6, 1), dtype=np.uint8))).shape == (5, 6, 3)
    with pytest.raises(InputError, match="shape"):
        load_image(np.zeros(5))
    with pytest.raises(InputError, match="NaN"):
        load_image(np.full((4, 4), np.nan))
    wide = load_image(_png_bytes(Image.new("RGB", (3000, 1000))))
    assert wide.size == (limits.MAX_IMAGE_SIDE, round(1000 * limits.MAX_IMAGE_SIDE / 3000))
    callers = Image.new("RGB", (3000, 1000), (9, 8, 7))  # downscaled for us, left as it was for the caller
    assert load_image(callers).size == wide.size and callers.size == (3000, 1000)
    assert callers.getpixel((0, 0)) == (9, 8, 7)


def test_many_uploads_decode_side_by_side_in_order_and_refuse_a_bad_one(tmp_path):
    paths = []
    for shade in range(12):
        paths.append(tmp_path / f"{shade}.png")
        Image.new("L", (40 + shade, 30), shade * 20).save(paths[-1])
    images = load_images(paths)
    assert [image.size for image in images] == [(40 + shade, 30) for shade in range(12)]
    assert [np.asarray(image)[0, 0, 0] for image in images] == [shade * 20 for shade in range(12)]
    (tmp_path / "notes.png").write_bytes(b"not a picture at all")
    with pytest.raises(InputError, match="notes.png"):
        load_images(paths[:5] + [tmp_path / "notes.png"] + paths[5:])


def test_a_fitted_picture_gives_the_same_tensor_as_fitting_inside():
    picture = Image.fromarray(np.random.default_rng(2).integers(0, 255, (50, 70, 3), dtype=np.uint8))
    processor = ImageProcessor(size=24, mean=(0.4,) * 3, std=(0.2,) * 3, labels=("a",), crop_pct=0.875)
    assert torch.equal(processor(picture), processor.tensor(processor.fit(picture)))
    assert torch.equal(processor.batch([picture]), processor.batch([processor.fit(picture)], fitted=True))


# --- preprocessing ----------------------------------------------------------------------------------------------------


def test_processor_crops_squashes_and_reads_grayscale():
    picture = Image.fromarray(np.tile(np.arange(100, dtype=np.uint8), (50, 1))).convert("RGB")  # 100 wide, 50 high
    gray = ImageProcessor(size=28, mean=(0.5,), std=(0.5,), labels=("a",))
    assert gray(picture).shape == (1, 28, 28)
    rgb_crop = ImageProcessor(size=20, mean=(0.0,) * 3, std=(1.0,) * 3, labels=("a",), crop_pct=1.0)
    crop = rgb_crop.fit(picture)
    assert crop.size == (20, 20) and np.asarray(crop)[0, 0, 0] > 20  # the left edge (dark) was cropped away
    squash = ImageProcessor(size=20, mean=(0.0,) * 3, std=(1.0,) * 3, labels=("a",), crop_pct=None).fit(picture)
    assert np.asarray(squash)[0, 0, 0] < 5  # squashing keeps the whole width
    assert rgb_crop.batch([picture, picture]).shape == (2, 3, 20, 20)


def test_fashion_examples_read_back_as_the_test_images():
    images, labels = load_fashion_mnist("test")
    classifier = _classifier("embedded")
    for name, path in fashion_mnist_examples().items():
        index = int(path.name[4:9])
        assert FASHION_MNIST_LABELS[labels[index]] == name
        seen = np.asarray(classifier.processor.fit(load_image(path)))
        assert np.array_equal(seen, images[index])


# --- the shipped models -----------------------------------------------------------------------------------------------


def test_shipped_vit_held_out_accuracy():
    """The embedded ViT through the gallery's own path (PIL image -> processor -> model) on 1,000 test images."""
    images, labels = load_fashion_mnist("test")
    classifier = _classifier("embedded:vit-fashion-mnist")
    pictures = [load_image(images[i]) for i in range(1000)]
    predictions = np.concatenate([classifier.predict(pictures[i:i + 250]).argmax(-1) for i in range(0, 1000, 250)])
    accuracy = float((predictions == labels[:1000]).mean())
    assert accuracy >= 0.85
    metrics = json.loads((VIT_FASHION_DIR / "metrics.json").read_text())
    assert metrics["test_size"] == 10_000 and abs(metrics["test_accuracy"] - accuracy) < 0.03
    geometry = classifier.geometry()
    assert (geometry.image_size, geometry.patch_size, geometry.num_patches) == (28, 7, 16)


def test_efficientnet_recognises_sample_photos():
    classifier = _classifier("embedded:efficientnet-lite0")
    photos = sample_photos()
    probabilities = classifier.predict([load_image(photos["coffee"]), load_image(photos["chelsea"])])
    assert classifier.top_k(probabilities[0], 1)[0][0] == "espresso"
    assert "cat" in classifier.top_k(probabilities[1], 1)[0][0]
    assert not classifier.is_vit and classifier.geometry() is None and classifier.position_embeddings() is None
    with pytest.raises(InputError, match="CNN"):
        classifier.attentions(load_image(photos["coffee"]))


# --- loading from directories and the hub -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_hf_vit_dir(tmp_path_factory):
    """A randomly initialised transformers ViTForImageClassification saved with save_pretrained."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    out = tmp_path_factory.mktemp("tiny-hf-vit")
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=3, id2label={0: "ant", 1: "bee", 2: "cat"},
                       label2id={"ant": 0, "bee": 1, "cat": 2})
    ViTForImageClassification(config).save_pretrained(out)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(out)
    return out


def test_transformers_vit_from_a_local_directory(tiny_hf_vit_dir):
    classifier = _classifier(str(tiny_hf_vit_dir))
    assert classifier.labels == ["ant", "bee", "cat"] and classifier.is_vit
    geometry = classifier.geometry()
    assert (geometry.grid, geometry.embed_dim, geometry.depth, geometry.heads) == ((4, 4), 32, 2, 2)
    picture = load_image(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    probabilities = classifier.predict([picture, picture])
    assert probabilities.shape == (2, 3) and np.allclose(probabilities.sum(-1), 1, atol=1e-5)
    attention = classifier.attentions(picture)
    assert len(attention.attentions) == 2 and attention.attentions[0].shape == (2, 17, 17)
    assert classifier.position_embeddings().shape == (16, 32)


def test_timm_vit_from_a_local_directory(tmp_path):
    import timm
    from timm.models import save_for_hf

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                              depth=2, num_heads=2, num_classes=3)
    save_for_hf(model, tmp_path)
    classifier = _classifier(str(tmp_path))
    assert classifier.geometry().grid == (4, 4) and len(classifier.labels) == 3
    picture = load_image(np.zeros((32, 32, 3), dtype=np.uint8))
    expected = model.eval()(classifier.pixels([picture])).softmax(-1).detach().numpy()
    assert np.allclose(classifier.predict([picture]), expected, atol=1e-5)
    assert len(classifier.attentions(picture).attentions) == 2


def test_own_vit_format_round_trips(tmp_path):
    recipe = VitRecipe(embed_dim=16, depth=1, num_heads=2)
    torch.manual_seed(0)
    model = make_vit(recipe.architecture(), 10).eval()
    save_vit_directory(model, recipe.architecture(), FASHION_MNIST_LABELS, tmp_path, 0.3, 0.35)
    classifier = _classifier(str(tmp_path))
    picture = load_image(np.random.default_rng(1).integers(0, 255, (28, 28), dtype=np.uint8))
    expected = model(classifier.pixels([picture])).softmax(-1).detach().numpy()
    assert np.allclose(classifier.predict([picture]), expected, atol=1e-6)
    assert classifier.labels == FASHION_MNIST_LABELS


@pytest.mark.parametrize("ref", ["google/vit-base-patch16-224", "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"])
def test_hub_ids_offline_give_a_clear_message(ref, monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(store.ModelLoadError, match="not reachable.*offline.*embedded"):
        store.ModelStore().load(store.resolve(ref, TASK))


def test_broken_directory_gives_a_clear_message(tmp_path):
    with pytest.raises(store.ModelLoadError, match="Could not load the local directory"):
        store.ModelStore().load(store.resolve(str(tmp_path), TASK))


# --- training ---------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_vit_training_is_deterministic(tmp_path):
    recipe = VitRecipe(embed_dim=16, depth=1, num_heads=2, epochs=1, max_steps=3)
    first = train_vit(tmp_path / "a", recipe, progress=False)
    second = train_vit(tmp_path / "b", recipe, progress=False)
    assert first["history"] == second["history"] and first["steps"] == 3
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert _classifier(str(tmp_path / "a")).geometry().embed_dim == 16
