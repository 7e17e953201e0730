"""txgallery: a pip-installable gallery of interactive transformer demos. This module is the whole plugin surface."""

from txgallery.limits import InputError
from txgallery.plugin import ApiCall, Demo, ModelSlot, PageContext, page_context
from txgallery.serving.seam import ServiceUnavailable, connect

__all__ = ["ApiCall", "Demo", "InputError", "ModelSlot", "PageContext", "ServiceUnavailable", "connect", "page_context"]
__version__ = "0.1.0"
