"""Image–text models in one embedding space: open_clip checkpoints, and the embedded offline stand-in (ConSE).

Both kinds look alike to callers: a torch module with `encode_image(pixels)` and `encode_text(tokens)` returning
L2-normalised embeddings, and a `logit_scale` (the log of the temperature that turns cosines into logits), plus a
`ClipProcessor` that turns PIL images into pixels and strings into tokens. The store loads them through the task
"zero-shot-image-classification" (`load_clip` for directories and hub references, the embedded factory otherwise).

open_clip references:
  "ViT-B-32/laion2b_s34b_b79k"   an open_clip architecture and one of its pretrained tags (`open_clip.list_pretrained()`)
  "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"   a Hugging Face Hub repository in open_clip's format
  a local directory               `open_clip_config.json` + `open_clip_model.safetensors` (see `save_clip_directory`)
All three end in `open_clip.create_model_and_transforms`, the same code path whatever the weights.

The embedded stand-in (ConSE) is in `txgallery.embedded.conse`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from txgallery.models import hub
from txgallery.models.hub import ModelLoadError, ModelSource

if TYPE_CHECKING:  # torch is imported where it runs: importing txgallery must leave OpenMP's policy unset
    import torch

    from txgallery.models.store import LoadedModel

log = logging.getLogger(__name__)


TASK = "zero-shot-image-classification"
HUB_DEFAULT = "ViT-B-32/laion2b_s34b_b79k"  # a good open_clip checkpoint, named in messages
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"


@dataclass(frozen=True)
class ClipProcessor:
    """Turns PIL images into the model's pixel batch and texts into its tokens."""

    preprocess: Callable[[Any], torch.Tensor]  # one RGB PIL image -> (3, H, W)
    tokenize: Callable[[list[str]], Any]  # texts -> a tensor or a BatchEncoding (both have `.to(device)`)
    description: str = ""

    def pixels(self, images: Sequence[Any]) -> torch.Tensor:
        """A (N, 3, H, W) batch from PIL images."""
        import torch

        return torch.stack([self.preprocess(image if image.mode == "RGB" else image.convert("RGB")) for image in images])


# --- embeddings and similarity (any loaded model of this task) ------------------------------------------------------


def embed_images(loaded: LoadedModel, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
    """L2-normalised embeddings (N, D) of PIL images."""
    import torch

    with torch.inference_mode():
        chunks = [loaded.model.encode_image(loaded.tokenizer.pixels(images[i:i + batch_size]).to(loaded.device),
                                            normalize=True).float().cpu()
                  for i in range(0, len(images), batch_size)]
        return torch.cat(chunks).numpy()


def embed_texts(loaded: LoadedModel, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """L2-normalised embeddings (M, D) of texts."""
    import torch

    with torch.inference_mode():
        chunks = [loaded.model.encode_text(loaded.tokenizer.tokenize(list(texts[i:i + batch_size])).to(loaded.device),
                                           normalize=True).float().cpu()
                  for i in range(0, len(texts), batch_size)]
        return torch.cat(chunks).numpy()


def logit_scale(model: torch.nn.Module) -> float:
    """The factor that turns cosine similarities into logits (CLIP learns it; ~100 for trained CLIPs)."""
    return float(model.logit_scale.detach().float().exp().reshape(-1)[0])


def cosine_matrix(image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
    """Cosine similarity of every image with every text, shape (N images, M texts)."""
    return image_embeddings @ text_embeddings.T


def zero_shot_probabilities(similarities: np.ndarray, scale: float) -> np.ndarray:
    """Softmax over the texts of `scale × cosine`, row by row: CLIP's zero-shot classifier."""
    logits = scale * np.atleast_2d(similarities)
    logits = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


# --- open_clip: the store's loader for local directories and hub references ----------------------------------------


def _create(model_name: str, pretrained: str | None = None) -> tuple[torch.nn.Module, ClipProcessor]:
    """Build an open_clip model with its eval transform and tokenizer (the one path for every kind of weights)."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
    tokenizer = open_clip.get_tokenizer(model_name)
    description = f"open_clip {model_name}" + (f" ({pretrained})" if pretrained else "")
    return model.eval(), ClipProcessor(preprocess=preprocess, tokenize=tokenizer, description=description)


def open_clip_reference(ref: str) -> tuple[str, str | None]:
    """Split a hub-shaped reference into open_clip's `(model_name, pretrained)`; validates what it can offline."""
    import open_clip

    name, _, tag = ref.partition("/")
    if name in open_clip.list_models():
        tags = open_clip.list_pretrained_tags_by_model(name)
        if tag not in tags:
            raise ModelLoadError(f"open_clip has no pretrained weights {tag!r} for {name}; "
                                       f"known tags: {', '.join(tags) or 'none'}.", ref=ref)
        return name, tag
    if not tag:
        raise ModelLoadError(f"{ref!r} is not an open_clip model; use MODEL/PRETRAINED such as "
                                   f"'{HUB_DEFAULT}', or a Hugging Face repository 'org/name' "
                                   f"in open_clip format.", ref=ref)
    return f"hf-hub:{ref}", None  # an open_clip repository on the Hugging Face Hub


def load_clip(source: ModelSource, attentions: bool = False) -> tuple[torch.nn.Module, ClipProcessor]:
    """Load an open_clip model from a local directory or a hub reference (the store's loader for this task).

    `attentions` is accepted for the store's interface; the CLIP page shows no attention maps.
    """
    if source.kind == "local":
        if not (Path(source.ref) / OPEN_CLIP_CONFIG).exists():
            raise ModelLoadError(f"{source.ref} is not an open_clip directory: it needs {OPEN_CLIP_CONFIG} and "
                                       f"{OPEN_CLIP_WEIGHTS} (txgallery.models.clip.save_clip_directory writes them).",
                                       ref=source.ref)
        return _create(f"local-dir:{source.ref}")
    model_name, pretrained = open_clip_reference(source.ref)
    if not hub.hub_reachable():
        raise hub.unreachable(source.ref, "The embedded stand-in ('embedded') works offline.", cached=False)
    return _create(model_name, pretrained)


def save_clip_directory(model: torch.nn.Module, model_name: str, out_dir: str | Path) -> Path:
    """Write an open_clip model as a directory `load_clip` reads: its config (architecture, preprocessing) + weights."""
    import open_clip
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config_for_hf(model, out_dir / OPEN_CLIP_CONFIG, model_config=open_clip.get_model_config(model_name))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / OPEN_CLIP_WEIGHTS))
    return out_dir
