"""Thread policy in one place: OpenMP's wait policy, and how many OpenMP threads a thread's torch ops use.

Why each rule exists, with its measurements, is in BENCHMARKS.md ("Threads").
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any, Iterator

log = logging.getLogger(__name__)

TINY_CPU_WEIGHTS = 1_000_000  # below this, a CPU forward is mostly overhead: Python, op dispatch, thread wake-ups


def prefer_passive_openmp() -> None:
    """Ask OpenMP to put idle torch worker threads to sleep instead of spinning (unless the user chose otherwise).

    A server has several threads that may run torch (model threads, loaders); spinning pools of one starve the
    others of the few cores there are. Only effective before torch is first imported.
    """
    if "torch" in sys.modules:
        log.debug("torch is already imported; OMP_WAIT_POLICY can no longer change")
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def torch_threads() -> int:
    """The number of threads torch uses for intra-op parallelism in this process."""
    import torch

    return torch.get_num_threads()


def is_tiny_cpu_model(model: Any, device: str) -> bool:
    """Whether `model` is a torch module on the CPU with fewer than `TINY_CPU_WEIGHTS` weights."""
    import torch

    return (device == "cpu" and isinstance(model, torch.nn.Module)
            and sum(p.numel() for p in model.parameters()) < TINY_CPU_WEIGHTS)


def set_openmp_threads(count: int) -> None:
    """Run this thread's torch ops on `count` OpenMP threads from now on (other threads keep theirs)."""
    from threadpoolctl import ThreadpoolController

    ThreadpoolController().select(user_api="openmp").limit(limits=count)


@contextlib.contextmanager
def openmp_threads(count: int) -> Iterator[None]:
    """Run this thread's torch ops on `count` OpenMP threads inside the block, then restore the previous count."""
    from threadpoolctl import ThreadpoolController

    with ThreadpoolController().limit(limits=count, user_api="openmp"):
        yield


def settle_threads_for(model: Any, device: str) -> bool:
    """Use one OpenMP thread on this thread from now on if `model` is a tiny CPU model; True if so.

    Meant for a service's own long-lived thread; set once, not per call (switching back and forth cost more).
    """
    if not is_tiny_cpu_model(model, device):
        return False
    set_openmp_threads(1)
    return True
