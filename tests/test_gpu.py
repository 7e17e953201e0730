"""The demos' model services on a CUDA GPU give what they give on the CPU (skipped on a machine without one).

Each test builds the same service twice, once with the model store placing models on the CPU and once on the GPU,
and compares what the page would show. Models are the embedded ones that ship with the package and randomly
initialised hub architectures saved to local directories (no network).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from txgallery_demos.generation.decoding import SamplingSettings

from txgallery.lib.images import fashion_mnist_examples, load_image, sample_photos
from txgallery.models import clip, store

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture()
def on_device(monkeypatch):
    """`on_device("cuda", make)`: what `make()` returns while the process-wide store places models on that device."""

    def run(device: str, make):
        monkeypatch.setattr(store, "_store", store.ModelStore(device=device))
        return make()

    return run


def _pictures() -> list[np.ndarray]:
    files = list(fashion_mnist_examples().values())[:3] + list(sample_photos().values())[:2]
    return [np.asarray(load_image(path)) for path in files]


def test_the_store_places_models_on_the_gpu():
    loaded = store.ModelStore(device="cuda").load(store.resolve("embedded", "image-classification"))
    assert loaded.device == "cuda" and next(loaded.model.parameters()).is_cuda


def test_vit_page_top_classes_and_rollout_match_the_cpu(on_device):
    from txgallery_demos.vit.run import TASK, ImageService

    source = store.resolve("embedded", TASK)
    pictures = _pictures()
    on_cpu = on_device("cpu", lambda: [ImageService(source).classify(p, "mean", 0.5) for p in pictures])
    service = on_device("cuda", lambda: ImageService(source))
    assert service.classifier.device == "cuda"
    for picture, expected in zip(pictures, on_cpu):
        result = service.classify(picture, "mean", 0.5)
        assert [name for name, _ in result.top[:2]] == [name for name, _ in expected.top[:2]]
        assert np.allclose([p for _, p in result.top], [p for _, p in expected.top], atol=2e-3)
        assert np.allclose(result.rollout, expected.rollout, atol=2e-3)
    probabilities = service.predict(pictures)
    assert probabilities.shape == (len(pictures), 10) and np.allclose(probabilities.sum(-1), 1, atol=1e-4)


def _hf_vit(folder: Path) -> Path:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(image_size=64, patch_size=16, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=128, num_labels=5)
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


def test_transformers_vit_attention_explorer_on_the_gpu(on_device, tmp_path):
    from PIL import Image
    from txgallery_demos.attention.run import VitExplorer

    source = store.resolve(str(_hf_vit(tmp_path / "vit")), "image-classification")
    image = Image.fromarray(_pictures()[3])
    expected = on_device("cpu", lambda: VitExplorer(source).analyse(image))
    result = on_device("cuda", lambda: VitExplorer(source).analyse(image))
    assert len(result.attentions) == len(expected.attentions) == 2
    for ours, theirs in zip(result.attentions, expected.attentions):
        assert np.allclose(ours, theirs, atol=2e-3)


def test_clip_matcher_similarities_match_the_cpu(on_device, tmp_path):
    import open_clip
    from txgallery_demos.clip.run import ClipMatcher, apply_template

    torch.manual_seed(0)
    clip.save_clip_directory(open_clip.create_model("ViT-B-32", pretrained=None), "ViT-B-32", tmp_path / "clip")
    source = store.resolve(str(tmp_path / "clip"), clip.TASK)
    pictures = _pictures()[3:]
    prompts = apply_template("a photo of a {}", ["cat", "cup of coffee", "rocket"])
    expected = on_device("cpu", lambda: ClipMatcher(source).similarity(pictures, prompts))
    matcher = on_device("cuda", lambda: ClipMatcher(source))
    result = matcher.similarity(pictures, prompts)
    assert result.shape == (len(pictures), len(prompts))
    assert np.allclose(result, expected, atol=2e-3)
    assert len(matcher.classify(pictures[0], prompts).probabilities) == len(prompts)


def test_generation_streams_the_same_greedy_tokens_as_on_the_cpu(on_device):
    from txgallery_demos.generation.run import TextGenerator

    source = store.resolve("embedded:gpt2-shakespeare", "text-generation")
    settings = SamplingSettings(strategy="greedy", max_new_tokens=24)

    def final_text(generator: TextGenerator) -> str:
        updates = list(generator.generate("ROMEO:\nWhat light", settings))
        assert updates[-1].done and updates[-1].tokens == 24
        return updates[-1].text

    expected = on_device("cpu", lambda: final_text(TextGenerator(source)))
    generator = on_device("cuda", lambda: TextGenerator(source))
    assert generator.loaded.device == "cuda"
    assert final_text(generator) == expected


def test_seq2seq_generates_the_same_text_and_attention_shapes_as_on_the_cpu(on_device):
    from txgallery_demos.seq2seq.run import TextToText

    source = store.resolve("embedded", "text2text-generation")
    sentence = "sst2 sentence: a gorgeous, witty, seductive movie."
    expected = on_device("cpu", lambda: TextToText(source).generate(sentence))
    result = on_device("cuda", lambda: TextToText(source).generate(sentence))
    assert result.text == expected.text
    assert result.cross_attention.shape == expected.cross_attention.shape
    assert np.allclose(result.cross_attention, expected.cross_attention, atol=2e-3)


def test_text_attention_explorer_matches_the_cpu(on_device):
    from txgallery_demos.attention.run import AttentionExplorer

    source = store.resolve("embedded:gpt2-shakespeare", "text-generation")
    text = "Now is the winter of our discontent"
    expected = on_device("cpu", lambda: AttentionExplorer(source).analyse(text))
    explorer = on_device("cuda", lambda: AttentionExplorer(source))
    result = explorer.analyse(text)
    assert result.tokens == expected.tokens
    assert np.allclose(result.attentions, expected.attentions, atol=2e-3)
    assert max(explorer.recomputation_errors(text)) < 1e-3  # the hand-recomputed heads agree on the GPU too
