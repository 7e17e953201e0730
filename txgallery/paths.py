"""Where txgallery keeps what it builds: `TXGALLERY_HOME`, else the platform cache directory."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

PACKAGE_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = PACKAGE_DIR / "weights"


def home() -> Path:
    """Return the cache directory for models the project builds (created on demand)."""
    configured = os.environ.get("TXGALLERY_HOME")
    path = Path(configured).expanduser() if configured else Path(platformdirs.user_cache_dir("txgallery"))
    path.mkdir(parents=True, exist_ok=True)
    return path
