"""txgallery: a pip-installable gallery of interactive transformer demos."""

from txgallery.plugin import ApiCall, Demo, ModelSlot
from txgallery.serving.seam import connect

__all__ = ["ApiCall", "Demo", "ModelSlot", "connect"]
__version__ = "0.1.0"
