"""`SimulatedDevice`: a model service whose forward holds a simulated accelerator for a fixed time per batch.

A batch of n items holds the device for `base_ms + per_item_ms · n`, sleeping: the GIL is free meanwhile, as it is
while a real GPU computes, so the process's other threads (Ray's, Gradio's) keep running. One batch at a time holds
a device (one per instance, as a replica has its share of a GPU). Plain Python, no torch: a replica starts in seconds.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque

# "BASE,PER_ITEM" in milliseconds; the page reads it when built, so every process of a cluster must share it
DEVICE_MS_ENV = "TXGALLERY_SIMULATED_DEVICE_MS"
DEFAULT_DEVICE_MS = (20.0, 1.0)


def device_ms_from_env(environ: dict | None = None) -> tuple[float, float]:
    """(base_ms, per_item_ms) from `TXGALLERY_SIMULATED_DEVICE_MS`, or the defaults."""
    value = (os.environ if environ is None else environ).get(DEVICE_MS_ENV, "").strip()
    if not value:
        return DEFAULT_DEVICE_MS
    base, per_item = (float(part) for part in value.split(","))
    return base, per_item


class SimulatedDevice:
    """A batched "model" that holds its device for `base_ms + per_item_ms · n` per batch of n, without the GIL."""

    batched_methods = ("predict",)

    def __init__(self, base_ms: float = DEFAULT_DEVICE_MS[0], per_item_ms: float = DEFAULT_DEVICE_MS[1]) -> None:
        self.base_ms, self.per_item_ms = float(base_ms), float(per_item_ms)
        self.device = threading.Lock()  # one batch on the device at a time
        self.holds: deque[tuple[float, float, int]] = deque(maxlen=10_000)  # (start, end, batch size), monotonic s

    def device_seconds(self, items: int) -> float:
        """How long a batch of `items` holds the device."""
        return (self.base_ms + self.per_item_ms * items) / 1e3

    def predict(self, texts: list[str]) -> list[str]:
        """Each text with the size of the batch it ran in (batchable: concurrent calls meet in one list)."""
        with self.device:
            start = time.monotonic()
            time.sleep(self.device_seconds(len(texts)))  # sleeping releases the GIL, as a GPU kernel's wait does
            self.holds.append((start, time.monotonic(), len(texts)))
        return [f"{text} · batch of {len(texts)}" for text in texts]

    def check_health(self) -> None:
        """A replica's health check: the device is free to take a batch (taken and given back, holding it no time)."""
        with self.device:
            pass

    def device_holds(self) -> list[tuple[float, float, int]]:
        """Every batch so far: (start, end, size), in `time.monotonic()` seconds (comparable across processes)."""
        return list(self.holds)
