"""Fashion-MNIST, read from Debian's `dataset-fashion-mnist` (or `$TXGALLERY_FASHION_MNIST_DIR`)."""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


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
