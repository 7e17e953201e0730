"""ViT images/s: the gallery's path vs the raw model forward, at batch 1 and 32, in one run.

    .venv/bin/python bench/bench_vit.py [--rounds 20] [--big-rounds 5]

For each model (the embedded Fashion-MNIST ViT; a ViT-B/16 with random weights saved locally, which costs what
`google/vit-base-patch16-224` costs), interleaving the paths round by round in this process:
  raw        decoded PIL images -> the model's preprocessing -> forward -> softmax (the baseline)
  gallery    what the page does: `load_image` of the uploaded file, RGB arrays through the serving seam
             (`connect(ImageService, source)`, the model's own thread), preprocessing, forward; at batch 1 the page's
             `classify` (top-5, the picture as the model saw it and the attention rollout), at batch 32 `predict`
             of 32 files decoded side by side (`load_images`, as the CLIP page decodes uploads)
Prints images/s and the ratio gallery / raw latency (target ≤ 1.15 at batch 1).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the server does (txgallery.serving.prefer_passive_openmp)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from txgallery import store  # noqa: E402
from txgallery.serving import connect  # noqa: E402
from txgallery.vision import fashion_mnist_examples, load_image, load_images, sample_photos  # noqa: E402
from txgallery_demos.vit.run import TASK, ImageService  # noqa: E402
from timing import interleaved  # noqa: E402


def random_vit_b16(folder: Path) -> Path:
    """ViT-B/16 (224×224, 86M weights, 1,000 classes) with random weights, saved like a hub checkpoint."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    ViTForImageClassification(ViTConfig(num_labels=1000)).save_pretrained(folder)
    ViTImageProcessor(size={"height": 224, "width": 224}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return folder


def measure(name: str, source: store.ModelSource, files: list[Path], rounds: int, big_rounds: int) -> list[str]:
    """Rows of the results table for one model."""
    service = connect(ImageService, source)
    local = ImageService(source)  # the same loaded model (the store loads once), called directly
    classifier = local.classifier
    decoded = [load_image(path) for path in files]

    def raw(images):
        with torch.inference_mode():
            out = classifier.model(classifier.processor.batch(images).to(classifier.device))
            return (out.logits if hasattr(out, "logits") else out).softmax(-1).cpu()  # on a GPU: waits for it

    def gallery_one(i):
        return service.classify(np.asarray(load_image(files[i % len(files)])), "mean", 0.0)

    def gallery_many(i):
        return service.predict([np.asarray(image) for image in load_images(batch_files)])

    batch_files = (files * (32 // len(files) + 1))[:32]
    batch_images = (decoded * (32 // len(decoded) + 1))[:32]
    one = interleaved({"raw": lambda i: raw([decoded[i % len(decoded)]]), "gallery": gallery_one}, rounds)
    many = interleaved({"raw": lambda i: raw(batch_images), "gallery": gallery_many}, big_rounds, warmup=1)
    rows = []
    for batch, samples in ((1, one), (32, many)):
        raw_s, gallery_s = statistics.median(samples["raw"]), statistics.median(samples["gallery"])
        rows.append(f"| {name} | {batch} | {raw_s * 1e3:.1f} ms ({batch / raw_s:.1f} img/s) | "
                    f"{gallery_s * 1e3:.1f} ms ({batch / gallery_s:.1f} img/s) | {gallery_s / raw_s:.2f}× |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds at batch 1")
    parser.add_argument("--big-rounds", type=int, default=5, help="timed rounds at batch 32")
    parser.add_argument("--embedded-only", action="store_true", help="skip ViT-B/16 (minutes per round on 2 busy cores)")
    args = parser.parse_args()
    photos = list(sample_photos().values())
    fashion = list(fashion_mnist_examples().values())
    rows = measure("vit-fashion-mnist (embedded, 0.31M weights, 28×28)", store.resolve("embedded", TASK), fashion,
                   args.rounds, args.big_rounds)
    if not args.embedded_only:
        with tempfile.TemporaryDirectory() as folder:
            source = store.resolve(str(random_vit_b16(Path(folder))), TASK)
            rows += measure("ViT-B/16 architecture (86M weights, 224×224, random weights)", source, photos,
                            args.rounds, args.big_rounds)
    device = torch.cuda.get_device_name() if store.get_store().device == "cuda" else "CPU"
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; medians of {args.rounds} rounds (batch 1) and {args.big_rounds} (batch 32)")
    print("| model | batch | raw forward | gallery path | gallery / raw |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
