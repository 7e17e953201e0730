"""Images from users and the sample pictures: safe decoding of any upload into a bounded RGB picture, or an
`InputError` that says what was wrong."""

from __future__ import annotations

import io
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from txgallery import limits
from txgallery.lib.fashion_mnist import FASHION_MNIST_LABELS
from txgallery.paths import PACKAGE_DIR

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
