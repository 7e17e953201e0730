"""Where a model comes from: an embedded name, a local directory or a hub id, and whether the hub answers."""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlparse

from txgallery.models import registry

SourceKind = Literal["embedded", "local", "hub"]
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ModelLoadError(RuntimeError):
    """A model could not be resolved or loaded; `str()` is a message meant for the user."""

    def __init__(self, message: str, ref: str = "") -> None:
        super().__init__(message)
        self.ref = ref


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from, and why it is the one in use."""

    kind: SourceKind
    ref: str  # embedded name, absolute directory, or hub id
    task: str
    reason: str = "default"

    @property
    def label(self) -> str:
        """Human-readable one-liner for badges and logs."""
        if self.kind == "embedded":
            return f"{self.ref} (embedded: {registry.get_embedded(self.ref).summary})"
        if self.kind == "local":
            return f"{self.ref} (local directory)"
        return f"{self.ref} (Hugging Face Hub)"


def _hub_is_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


_reachability: tuple[float, bool] | None = None


def hub_reachable(timeout: float = 3.0, ttl: float = 60.0) -> bool:
    """Whether the Hugging Face Hub answers a TCP connect (cached for `ttl` s; False in offline mode).

    huggingface_hub retries an unreachable hub for about 50 s per file; one quick connect spares users that wait.
    """
    global _reachability
    if _hub_is_offline():
        return False
    now = time.monotonic()
    if _reachability is None or now - _reachability[0] > ttl:
        from huggingface_hub import constants

        url = urlparse(constants.ENDPOINT)
        try:
            socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
            reachable = True
        except OSError:
            reachable = False
        _reachability = (now, reachable)
    return _reachability[1]


def unreachable(ref: str, hint: str, cached: bool = True) -> ModelLoadError:
    """The error for a hub model this machine cannot fetch (`cached`: nor found in the local cache); `hint` says what works."""
    cache = " and the model is not in the local cache" if cached else ""
    return ModelLoadError(f"Cannot load {ref!r}: the Hugging Face Hub is not reachable from this machine (offline){cache}. "
                          f"{hint}", ref=ref)
