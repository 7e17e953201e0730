"""vit-fashion-mnist: a small ViT that txgallery trains from scratch on Fashion-MNIST (`txgallery train vit`)."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from txgallery.lib.fashion_mnist import (
    FASHION_MNIST_DIR,
    FASHION_MNIST_LABELS,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    load_fashion_mnist,
)
from txgallery.models.image_classifiers import (
    VIT_FORMAT,
    ImageProcessor,
    load_vit_directory,
    make_vit,
)
from txgallery.models.registry import register_embedded
from txgallery.paths import WEIGHTS_DIR

log = logging.getLogger(__name__)


# --- the project's ViT --------------------------------------------------------------------------------------------

VIT_FASHION_DIR = WEIGHTS_DIR / "vit-fashion-mnist"


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

    from txgallery.embedded.training import seed_everything

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


@register_embedded("vit-fashion-mnist", task="image-classification", default=True,
                   summary="ViT trained from scratch by txgallery on Fashion-MNIST: 28×28 grayscale, 7×7 patches, "
                           "4 layers (`txgallery train vit`)")
def vit_fashion_mnist() -> tuple[Any, ImageProcessor]:
    """The shipped Fashion-MNIST ViT (timm VisionTransformer) and its processor."""
    if not (VIT_FASHION_DIR / "model.safetensors").exists():
        raise FileNotFoundError(f"the ViT weights are missing from {VIT_FASHION_DIR}; run `txgallery train vit`")
    return load_vit_directory(VIT_FASHION_DIR)
