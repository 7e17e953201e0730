"""Per-demo model settings from CLI flags, environment variables and an optional TOML file (in that precedence).

    txgallery serve --model sentiment=embedded,distilbert-base-uncased-finetuned-sst-2-english
    TXGALLERY_MODEL_SENTIMENT="./my-finetuned-bert"
    # txgallery.toml (or --config FILE, or TXGALLERY_CONFIG=FILE)
    [demos.sentiment]
    models = ["embedded", "textattack/bert-base-uncased-SST-2"]

A demo with several model slots (the attention explorer's encoder and decoder) takes `SLUG=…` for its first slot
and `SLUG.SLOT=…` for any slot: `--model attention.decoder=gpt2`, `TXGALLERY_MODEL_ATTENTION__DECODER=gpt2`, or
`[demos.attention.decoder] models = ["gpt2"]`.

Hub ids that *users* may type into a page are a separate, operator-set allowlist of glob patterns (off by default):

    txgallery serve --allow-hub "gpt2" --allow-hub "google/*"
    TXGALLERY_ALLOW_HUB="gpt2,google/*"
    [gallery]
    allow_hub = ["gpt2", "google/*"]
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_PREFIX = "TXGALLERY_MODEL_"
ALLOW_HUB_ENV = "TXGALLERY_ALLOW_HUB"
PRESENTER_KEY_ENV = "TXGALLERY_PRESENTER_KEY"
DEFAULT_CONFIG_FILE = "txgallery.toml"


class SettingsError(ValueError):
    """A setting that cannot be understood; the message says which one and how to fix it."""


@dataclass(frozen=True)
class ModelChoice:
    """The model references configured for one demo and where they were set (shown in the UI as the 'why')."""

    refs: tuple[str, ...]
    reason: str


@dataclass
class Settings:
    """Everything configurable per demo; an empty choice means the demo's own default."""

    models: dict[str, ModelChoice] = field(default_factory=dict)
    config_file: Path | None = None
    allow_hub: tuple[str, ...] = ()  # glob patterns of hub ids users may type into a page; empty: none
    presenter_key: str = ""  # whoever opens a page with ?presenter=KEY leads the followers; empty: no presenter mode

    def hub_id_allowed(self, ref: str) -> bool:
        """Whether a user may load hub id `ref` from a page (the operator's allowlist)."""
        import fnmatch

        return any(fnmatch.fnmatchcase(ref, pattern) for pattern in self.allow_hub)

    def models_for(self, slug: str, slot: str | None = None) -> ModelChoice | None:
        """The configured models for demo `slug` (or its slot `slot` only), or None for its default."""
        return self.models.get(f"{slug}.{slot}" if slot else slug)


def _split_refs(value: str | list[str], where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else value.split(",")
    refs = tuple(str(item).strip() for item in items if str(item).strip())
    if not refs:
        raise SettingsError(f"{where}: no model given")
    return refs


def parse_model_flags(flags: list[str]) -> dict[str, ModelChoice]:
    """Parse repeated `--model SLUG[.SLOT]=REF[,REF...]` flags."""
    choices: dict[str, ModelChoice] = {}
    for flag in flags:
        key, sep, value = flag.partition("=")
        if not sep or not key.strip() or key.count(".") > 1 or key.strip().startswith(".") or key.strip().endswith("."):
            raise SettingsError(f"--model {flag!r}: expected SLUG=MODEL[,MODEL...] or SLUG.SLOT=MODEL[,MODEL...], "
                                f"e.g. --model sentiment=embedded or --model attention.decoder=gpt2")
        choices[key.strip()] = ModelChoice(_split_refs(value, f"--model {flag}"), reason=f"set by --model {flag}")
    return choices


def read_config_file(path: Path) -> dict[str, ModelChoice]:
    """Read `[demos.SLUG] models = [...]` tables from a TOML file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read config file {path}: {exc}") from exc
    demos = data.get("demos", {})
    if not isinstance(demos, dict):
        raise SettingsError(f"{path}: [demos] must be a table of [demos.SLUG] tables")
    choices = {}
    for slug, table in demos.items():
        slots = {name: sub for name, sub in table.items() if isinstance(sub, dict)} if isinstance(table, dict) else {}
        if not isinstance(table, dict) or ("models" not in table and not slots):
            raise SettingsError(f"{path}: [demos.{slug}] needs `models = [\"...\"]`")
        for key, sub in ([(slug, table)] if "models" in table else []) + [(f"{slug}.{n}", t) for n, t in slots.items()]:
            if "models" not in sub:
                raise SettingsError(f"{path}: [demos.{key}] needs `models = [\"...\"]`")
            choices[key] = ModelChoice(_split_refs(sub["models"], f"{path} [demos.{key}]"), reason=f"set in {path}")
    return choices


def read_allow_hub(path: Path) -> tuple[str, ...]:
    """The `[gallery] allow_hub = [...]` patterns of a TOML file (empty when absent)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    patterns = data.get("gallery", {}).get("allow_hub", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise SettingsError(f"{path}: [gallery] allow_hub must be a list of strings (glob patterns of hub ids)")
    return tuple(p.strip() for p in patterns if p.strip())


def load_settings(model_flags: list[str] | None = None, config_file: str | Path | None = None,
                  environ: Mapping[str, str] | None = None, allow_hub: list[str] | None = None,
                  presenter_key: str | None = None) -> Settings:
    """Merge TOML file < environment < CLI flags into one `Settings`."""
    environ = os.environ if environ is None else environ
    path = Path(config_file or environ.get("TXGALLERY_CONFIG", DEFAULT_CONFIG_FILE)).expanduser()
    explicit = config_file is not None or "TXGALLERY_CONFIG" in environ
    if explicit and not path.is_file():
        raise SettingsError(f"config file {path} does not exist")
    models = read_config_file(path) if path.is_file() else {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and value.strip():
            slug = key[len(ENV_PREFIX):].lower().replace("__", ".")  # TXGALLERY_MODEL_SLUG__SLOT: one slot
            models[slug] = ModelChoice(_split_refs(value, key), reason=f"set by ${key}")
    models.update(parse_model_flags(model_flags or []))
    patterns = read_allow_hub(path) if path.is_file() else ()
    if environ.get(ALLOW_HUB_ENV, "").strip():
        patterns = tuple(p.strip() for p in environ[ALLOW_HUB_ENV].split(",") if p.strip())
    if allow_hub:
        patterns = tuple(p.strip() for p in allow_hub if p.strip())
    presenter = (presenter_key or environ.get(PRESENTER_KEY_ENV, "")).strip()
    return Settings(models=models, config_file=path if path.is_file() else None, allow_hub=patterns,
                    presenter_key=presenter)


_current = Settings()


def current() -> Settings:
    """The settings this process runs with (set once by the CLI or the app builder)."""
    return _current


def configure(settings: Settings) -> None:
    """Install `settings` for this process."""
    global _current
    _current = settings
