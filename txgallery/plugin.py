"""The plugin API: a `Demo` declares itself; entry points in the group `txgallery.demos` are the only discovery.

A distribution adds a demo with one line in its packaging metadata, as pytest plugins do with `pytest11`:

    [project.entry-points."txgallery.demos"]
    my_demo = "my_package.my_module:demo"
"""

from __future__ import annotations

import inspect
import logging
import traceback
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable

import gradio as gr

from txgallery import settings
from txgallery.models import store
from txgallery.models.hub import ModelLoadError, ModelSource
from txgallery.serving.seam import connect

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "txgallery.demos"


@dataclass(frozen=True)
class ModelSlot:
    """A model a demo needs: the task it serves and the default used when nothing is configured."""

    task: str
    default: str = "embedded"
    hub_example: str = ""  # a hub id worth trying when online, shown on the demo's page
    name: str = "model"  # `--model SLUG.NAME=…` configures this slot; the first slot also answers to `--model SLUG=…`


@dataclass(frozen=True)
class ApiCall:
    """A cheap, valid call of one of a demo's endpoints: what load tests, soak runs and deployment checks send.

    `args` may be a function returning them, for arguments that need work, e.g. files written on first use: files
    are given as `gradio_client.handle_file(path)`, which gradio_client and `txgallery.loadgen` both upload.
    """

    api_name: str  # without the leading slash, e.g. "sentiment_predict"
    args: tuple | Callable[[], tuple] = ()

    def arguments(self) -> tuple:
        """The call's arguments (computed now when `args` is a function)."""
        return tuple(self.args()) if callable(self.args) else tuple(self.args)


@dataclass(frozen=True)
class Demo:
    """One gallery demo: what it is, what it teaches, the models it needs, and `build()` for its UI."""

    slug: str
    title: str
    description: str
    build: Callable[[PageContext], gr.Blocks]  # (or a `build()` without arguments, for a demo that needs no models)
    tags: tuple[str, ...] = ()
    topic: str = ""
    lesson: str = ""
    models: tuple[ModelSlot, ...] = ()
    traffic: tuple[ApiCall, ...] = ()  # a realistic mix of cheap calls (load tests, `txgallery` deployment checks)
    order: int = 1000  # place on the path through the material (landing page, "Next" links): lower first, then slug

    def __post_init__(self) -> None:
        if not self.slug.replace("_", "").replace("-", "").isalnum() or self.slug != self.slug.lower():
            raise ValueError(f"demo slug {self.slug!r} must be lower-case letters, digits, '-' or '_'")
        names = [slot.name for slot in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"demo {self.slug!r}: its model slots need distinct names, got {names}")


Resolved = list[ModelSource | ModelLoadError]  # a slot's models, first the page's default; bad references as errors


@dataclass(frozen=True)
class PageContext:
    """What a demo's `build(ctx)` receives: its models per slot, resolved from the operator's settings."""

    slug: str
    models: dict[str, Resolved]  # slot name -> its models
    configured: frozenset[str] = frozenset()  # slots whose models the operator chose (the rest run their defaults)
    settings: settings.Settings = field(default_factory=settings.Settings, repr=False)

    def model(self, slot: str = "model") -> ModelSource | ModelLoadError:
        """The slot's first model: the one a page uses when it offers no choice."""
        return self.models[slot][0]

    def services(self, cls: type, slot: str = "model") -> list[tuple[str, ModelSource | ModelLoadError, Any]]:
        """(name, source or error, service or None) for each of the slot's models, connected through the seam."""
        return [(source.ref, source, None if isinstance(source, ModelLoadError) else connect(cls, source))
                for source in self.models[slot]]

    def typed_model(self, ref: str, task: str) -> ModelSource:
        """A model a user typed into the page: embedded names, or hub ids the operator allows (`--allow-hub`)."""
        return store.resolve_user_ref(ref, task, allowed=self.settings.hub_id_allowed)


def resolve_slot(slug: str, slot: ModelSlot, first: bool, current: settings.Settings) -> tuple[Resolved, bool]:
    """The models configured for one slot (or its default), and whether the operator configured them."""
    choice = current.models_for(slug, slot.name) or (current.models_for(slug) if first else None)
    refs, reason = (choice.refs, choice.reason) if choice else ((slot.default,), "the demo's default")
    resolved: Resolved = []
    for ref in refs:
        try:
            resolved.append(store.resolve(ref, slot.task, reason))
        except ModelLoadError as exc:
            resolved.append(ModelLoadError(f"{ref!r}: {exc}", ref=ref))
    return resolved, choice is not None


def page_context(demo: Demo, current: settings.Settings | None = None) -> PageContext:
    """The `PageContext` of `demo` under the process's settings (or `current`)."""
    current = current or settings.current()
    models, configured = {}, set()
    for index, slot in enumerate(demo.models):
        models[slot.name], chosen = resolve_slot(demo.slug, slot, index == 0, current)
        if chosen:
            configured.add(slot.name)
    return PageContext(slug=demo.slug, models=models, configured=frozenset(configured), settings=current)


@dataclass
class DemoEntry:
    """A discovered plugin: the `Demo` when it loaded, otherwise the reason it did not."""

    name: str
    origin: str  # "module:attr (distribution version)"
    demo: Demo | None = None
    error: str | None = None
    details: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        return self.demo is not None

    @property
    def slug(self) -> str:
        return self.demo.slug if self.demo else self.name


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f" ({dist.name} {dist.version})" if dist is not None else ""
    return f"{ep.value}{where}"


def load_entry(ep: EntryPoint) -> DemoEntry:
    """Import one entry point; any failure becomes an error entry instead of an exception."""
    entry = DemoEntry(name=ep.name, origin=_origin(ep))
    try:
        obj = ep.load()
        demo = obj() if callable(obj) and not isinstance(obj, Demo) else obj
        if not isinstance(demo, Demo):
            raise TypeError(f"entry point must name a txgallery.Demo (or a function returning one), got {type(demo).__name__}")
        entry.demo = demo
    except Exception as exc:  # a broken plugin must never take the gallery down
        entry.error = f"{type(exc).__name__}: {exc}"
        entry.details = traceback.format_exc()
        log.warning("demo plugin %r failed to load: %s", ep.name, entry.error)
    return entry


def discover_demos(only: list[str] | None = None) -> list[DemoEntry]:
    """Load every demo registered in the `txgallery.demos` entry-point group (optionally only some names)."""
    entries: list[DemoEntry] = []
    by_slug: dict[str, DemoEntry] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if only and ep.name not in only:
            continue
        entry = load_entry(ep)
        if entry.ok and entry.slug in by_slug:  # two plugins cannot share a page
            entry = DemoEntry(name=ep.name, origin=entry.origin,
                              error=f"slug {entry.slug!r} is already used by {by_slug[entry.slug].origin}")
            log.warning("demo plugin %r skipped: %s", ep.name, entry.error)
        by_slug.setdefault(entry.slug, entry)
        entries.append(entry)
    for name in sorted(set(only or ()) - {e.name for e in entries}):
        entries.append(DemoEntry(name=name, origin="-", error=f"no demo named {name!r} is installed"))
    return entries


def build_entry(entry: DemoEntry) -> gr.Blocks | None:
    """Call the demo's `build(ctx)`; a failure is recorded on the entry and None is returned."""
    if entry.demo is None:
        return None
    try:
        build = entry.demo.build
        blocks = build(page_context(entry.demo)) if inspect.signature(build).parameters else build()
        if not isinstance(blocks, gr.Blocks):
            raise TypeError(f"build() must return gr.Blocks, got {type(blocks).__name__}")
        return blocks
    except Exception as exc:
        entry.error = f"build() failed: {type(exc).__name__}: {exc}"
        entry.details = traceback.format_exc()
        log.warning("demo %r failed to build: %s", entry.slug, entry.error)
        return None
