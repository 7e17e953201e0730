"""The registry of embedded models: names, tasks and factories, in the manner of timm's registry (no entries here).

A model declares itself with `@register_embedded` over a small factory that returns a directory (or a loaded model and
its processor); the model store does the rest. The shipped models live in `txgallery.embedded`.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Any, Callable

from txgallery.paths import WEIGHTS_DIR


@dataclass(frozen=True)
class EmbeddedModel:
    """One embedded model: its name, the task it serves, a one-line summary and its factory."""

    name: str
    task: str
    summary: str
    factory: Callable[..., Any]
    first_use: Callable[[], str | None] | None = None  # what the first load will do and take, while it is still due

    def metrics(self) -> dict:
        """Measured figures shipped beside the weights (empty when the model has none)."""
        path = WEIGHTS_DIR / self.name / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else {}


_REGISTRY: dict[str, EmbeddedModel] = {}
_DEFAULT_FOR_TASK: dict[str, str] = {}



def _load_providers() -> None:
    # the shipped models register themselves when `txgallery.embedded` is imported; imported here, on first use,
    # because they build on the store, which reads this registry
    import txgallery.embedded  # noqa: F401


def register_embedded(name: str, task: str, summary: str, default: bool = False,
                      first_use: Callable[[], str | None] | None = None) -> Callable:
    """Declare the decorated factory as the embedded model `name` for `task` (`first_use`: see `EmbeddedModel`)."""

    def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[name] = EmbeddedModel(name=name, task=task, summary=summary, factory=factory, first_use=first_use)
        if default:
            _DEFAULT_FOR_TASK[task] = name
        return factory

    return decorator


def list_embedded(pattern: str = "*", task: str | None = None) -> list[str]:
    """Names of embedded models matching a glob `pattern` (and `task`, when given)."""
    _load_providers()
    return sorted(n for n, m in _REGISTRY.items() if fnmatch.fnmatch(n, pattern) and (task is None or m.task == task))


def get_embedded(name: str) -> EmbeddedModel:
    """Return the embedded model `name` (KeyError when there is none)."""
    _load_providers()
    return _REGISTRY[name]


def embedded_default(task: str) -> str | None:
    """The embedded model a task uses when nothing else is configured."""
    _load_providers()
    return _DEFAULT_FOR_TASK.get(task)
