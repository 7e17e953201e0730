"""The model store: the one place where models are found and loaded.

A model reference resolves to a source, in this order:
  "embedded" or "embedded:NAME" or an embedded NAME  -> a model that ships with the package (works offline)
  a path to an existing directory                     -> a local `save_pretrained` directory
  anything shaped like a hub id ("gpt2", "org/name")  -> the Hugging Face Hub, when the network allows
Loading is lazy, happens once per process per (source, task, options), is thread-safe and picks the device.
`trust_remote_code` is never passed.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from txgallery.models import hub, registry
from txgallery.models.hub import HUB_ID, ModelLoadError, ModelSource
from txgallery.models.tasks import TASKS, default_hint

log = logging.getLogger(__name__)

@dataclass
class LoadedModel:
    """A loaded model with what it needs to run and what the UI should say about it."""

    source: ModelSource
    model: Any
    tokenizer: Any
    device: str
    metrics: dict = field(default_factory=dict)


def pick_device() -> str:
    """CUDA when present (or `TXGALLERY_DEVICE`), else CPU."""
    configured = os.environ.get("TXGALLERY_DEVICE")
    if configured:
        return configured
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve(ref: str, task: str, reason: str = "default") -> ModelSource:
    """Turn a user's model reference into a `ModelSource` without loading anything."""
    if task not in TASKS:
        raise ModelLoadError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    ref = (ref or "").strip()
    default_name = registry.embedded_default(task)
    if ref in ("", "embedded", "default"):
        if default_name is None:
            raise ModelLoadError(f"there is no embedded model for {task}; configure a local directory or a hub id")
        return ModelSource("embedded", default_name, task, reason)
    name = ref.removeprefix("embedded:")
    if name in registry.list_embedded():
        model = registry.get_embedded(name)
        if model.task != task:
            raise ModelLoadError(f"embedded model {name!r} is for {model.task}, not {task}")
        return ModelSource("embedded", name, task, reason)
    if ref.startswith("embedded:"):
        raise ModelLoadError(f"no embedded model {name!r}; embedded {task} models: "
                             f"{', '.join(registry.list_embedded(task=task)) or 'none'}")
    path = Path(ref).expanduser()
    if path.is_dir():
        return ModelSource("local", str(path.resolve()), task, reason)
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise ModelLoadError(f"{ref!r} is not an existing directory. {default_hint(task)}")
    if not HUB_ID.match(ref):
        raise ModelLoadError(f"{ref!r} is neither an embedded model, a local directory nor a hub id. {default_hint(task)}")
    return ModelSource("hub", ref, task, reason)


def _explain_load_failure(source: ModelSource, exc: Exception) -> str:
    """Say in one sentence why a model did not load, naming the embedded default.

    An unreachable hub is caught before loading (`hub_reachable`); what is left is a bad directory, an unknown or
    gated hub id, or a failure during the download or the load itself.
    """
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    text = f"{type(exc).__name__}: {exc}"
    first_line, hint, cause = text.splitlines()[0], default_hint(source.task, source.ref), exc.__cause__ or exc
    if source.kind == "local":
        return f"Could not load the local directory {source.ref}: {first_line}. {hint}"
    if source.kind == "embedded":
        return f"The embedded model {source.ref} failed to load: {first_line}"
    if isinstance(cause, GatedRepoError) or "gated repo" in text:
        return f"{source.ref!r} is gated on the hub: log in with a token that has access. {hint}"
    if isinstance(cause, RepositoryNotFoundError) or "is not a valid model identifier" in text:
        return f"There is no model {source.ref!r} on the Hugging Face Hub. {hint}"
    return f"Could not load {source.ref!r} from the hub: {first_line}. {hint}"


def _load_pretrained(source: ModelSource, attentions: bool) -> tuple[Any, Any]:
    """`from_pretrained` for a local directory or a hub id (never with remote code).

    When the hub is unreachable a hub id is still served from the local Hugging Face cache if it is there.
    """
    import transformers

    if source.kind == "local" and (exported := _load_exported(source)) is not None:
        return exported
    if TASKS[source.task].loader is not None:
        return TASKS[source.task].loader(source, attentions)
    auto_class = getattr(transformers, TASKS[source.task].auto_class)
    kwargs: dict[str, Any] = {"trust_remote_code": False}
    offline = source.kind == "hub" and not hub.hub_reachable()
    if offline:
        kwargs["local_files_only"] = True
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source.ref, **kwargs)
        model = auto_class.from_pretrained(source.ref, **kwargs,
                                           **({"attn_implementation": "eager"} if attentions else {}))
    except OSError as exc:
        if not offline:
            raise
        raise hub.unreachable(source.ref, default_hint(source.task, source.ref)) from exc
    return model, tokenizer


def _load_exported(source: ModelSource) -> tuple[Any, Any] | None:
    """A directory written by the efficiency lab (ONNX or PyTorch int8), or None for a regular one."""
    import transformers

    from txgallery.models import int8 as int8_model
    from txgallery.models import onnx as onnx_model

    if onnx_model.is_onnx_directory(source.ref):
        model = onnx_model.OnnxSequenceClassifier(source.ref)
    elif int8_model.is_int8_directory(source.ref):
        model = int8_model.load_int8_directory(source.ref)
    else:
        return None
    if source.task != "text-classification":
        raise ModelLoadError(f"{source.ref} holds an optimised text classifier, which cannot serve {source.task}")
    return model, transformers.AutoTokenizer.from_pretrained(source.ref, trust_remote_code=False)


def _load_embedded(source: ModelSource, attentions: bool) -> tuple[Any, Any]:
    factory = registry.get_embedded(source.ref).factory
    made = factory(attentions=attentions) if "attentions" in inspect.signature(factory).parameters else factory()
    if isinstance(made, tuple):
        return made
    # a factory that returns a directory: load it like a local one
    return _load_pretrained(ModelSource("local", str(made), source.task, source.reason), attentions)


class ModelStore:
    """Loads each model once per process and hands the same object to every caller."""

    def __init__(self, device: str | None = None) -> None:
        self._device = device
        self._models: dict[tuple, LoadedModel] = {}
        # One load at a time in the whole process. transformers builds a model through process-global state (its
        # empty-weights initialisation), so two models built at once on two threads can end up with each other's
        # meta tensors ("Cannot copy out of meta tensor"); seen under the 32-client load test. Reentrant because a
        # loader may load its parts through the store (the CLIP stand-in does).
        self._loading = threading.RLock()
        self._guard = threading.Lock()
        self.load_count = 0  # how many real loads happened (tests use it to prove "once")

    def construction(self) -> threading.RLock:
        """Hold while building a transformers model outside the store (training, probes): the one-load-at-a-time
        lock, so such a build never overlaps a load; reentrant within a thread."""
        return self._loading

    @property
    def device(self) -> str:
        """The device new models are placed on."""
        if self._device is None:
            self._device = pick_device()
        return self._device

    def load(self, source: ModelSource, attentions: bool = False) -> LoadedModel:
        """Return the loaded model for `source`, loading it on first use; raises `ModelLoadError` with a message."""
        key = (source.kind, source.ref, source.task, attentions)  # the reason is not part of the identity
        with self._guard:
            if key in self._models:
                return self._models[key]
        with self._loading:  # a caller that waited here finds the model another thread just loaded
            if key in self._models:
                return self._models[key]
            log.info("loading %s for %s (%s)", source.label, source.task, source.reason)
            try:
                loader = _load_embedded if source.kind == "embedded" else _load_pretrained
                model, tokenizer = loader(source, attentions)
                # optimised variants (ONNX Runtime sessions, int8 models) run on the CPU only
                device = "cpu" if getattr(model, "txgallery_inference_only", False) else self.device
                model = model.to(device).eval()
            except ModelLoadError:
                raise
            except Exception as exc:
                raise ModelLoadError(_explain_load_failure(source, exc)) from exc
            metrics = registry.get_embedded(source.ref).metrics() if source.kind == "embedded" else {}
            loaded = LoadedModel(source, model, tokenizer, device, metrics)
            with self._guard:
                self._models[key] = loaded
                self.load_count += 1
            return loaded


def check_forward(loaded: LoadedModel, text: str = "ok") -> None:
    """One forward pass of a text model on a few tokens: a model replica's health check (raises if it cannot)."""
    import torch

    inputs = loaded.tokenizer(text, return_tensors="pt").to(loaded.device)
    config = getattr(loaded.model, "config", None)
    if getattr(config, "is_encoder_decoder", False):  # the decoder needs its first token too
        inputs["decoder_input_ids"] = torch.full((1, 1), config.decoder_start_token_id, device=loaded.device)
    with torch.inference_mode():
        loaded.model(**inputs)


_store: ModelStore | None = None
_store_guard = threading.Lock()


def get_store() -> ModelStore:
    """The process-wide model store."""
    global _store
    with _store_guard:
        if _store is None:
            _store = ModelStore()
        return _store


def model_construction() -> threading.RLock:
    """The process-wide store's construction lock (`ModelStore.construction`)."""
    return get_store().construction()


def resolve_user_ref(ref: str, task: str, allowed: Callable[[str], bool] = lambda ref: False) -> ModelSource:
    """Resolve a model reference a *user* typed into a page: embedded names, or hub ids the operator allows.

    Pages never point the server at its own files: local directories are for the operator (`--model`, config).
    `allowed` is the operator's allowlist of hub ids (none by default).
    """
    ref = (ref or "").strip()
    if ref in ("", "embedded", "default") or ref.removeprefix("embedded:") in registry.list_embedded():
        return resolve(ref, task, reason="chosen on the page")
    if ref.startswith((".", "/", "~", "\\")) or "\\" in ref or ".." in ref or ref.count("/") > 1 or ":" in ref:
        raise ModelLoadError(f"{ref!r}: a page can only choose embedded models or hub ids; local paths are set by "
                             f"the operator (txgallery serve --model SLUG=PATH).", ref=ref)
    if not HUB_ID.match(ref):
        raise ModelLoadError(f"{ref!r} is not a hub id (expected 'name' or 'org/name'). {default_hint(task)}", ref=ref)
    if not allowed(ref):
        raise ModelLoadError(f"Loading {ref!r} from the hub is not enabled on this gallery: the operator allows typed "
                             f"hub ids with `txgallery serve --allow-hub PATTERN` (e.g. --allow-hub 'gpt2'). "
                             f"{default_hint(task, ref)}", ref=ref)
    if not hub.hub_reachable():
        raise hub.unreachable(ref, default_hint(task, ref), cached=False)
    return resolve(ref, task, reason="typed on the page (allowed by the operator)")
