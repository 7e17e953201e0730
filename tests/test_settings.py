"""Settings precedence (CLI > environment > TOML) and clear errors for bad settings."""

from __future__ import annotations

import pytest

from txgallery import settings
from txgallery.models import hub
from txgallery.settings import SettingsError, load_settings, parse_model_flags


def test_defaults_when_nothing_is_configured(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).models_for("sentiment") is None


def test_toml_then_env_then_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "gallery.toml"
    config.write_text('[demos.sentiment]\nmodels = ["embedded", "gpt-from-toml"]\n[demos.other]\nmodels = ["x"]\n')
    from_toml = load_settings(config_file=config, environ={})
    assert from_toml.models_for("sentiment").refs == ("embedded", "gpt-from-toml")
    assert str(config) in from_toml.models_for("sentiment").reason

    env = {"TXGALLERY_MODEL_SENTIMENT": "from-env, ./local-dir"}
    from_env = load_settings(config_file=config, environ=env)
    assert from_env.models_for("sentiment").refs == ("from-env", "./local-dir")
    assert "$TXGALLERY_MODEL_SENTIMENT" in from_env.models_for("sentiment").reason
    assert from_env.models_for("other").refs == ("x",)  # untouched by the env

    from_cli = load_settings(["sentiment=from-cli"], config_file=config, environ=env)
    assert from_cli.models_for("sentiment").refs == ("from-cli",)
    assert "--model" in from_cli.models_for("sentiment").reason


def test_default_config_file_in_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "txgallery.toml").write_text('[demos.sentiment]\nmodels = "a, b"\n')
    assert load_settings(environ={}).models_for("sentiment").refs == ("a", "b")


@pytest.mark.parametrize("flag", ["sentiment", "=embedded", "sentiment=", "sentiment= , "])
def test_bad_model_flags(flag):
    with pytest.raises(SettingsError):
        parse_model_flags([flag])


def test_bad_config_files(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(config_file=tmp_path / "missing.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[demos.sentiment\nmodels = 1")
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(config_file=broken, environ={})
    no_models = tmp_path / "no_models.toml"
    no_models.write_text("[demos.sentiment]\nother = 1\n")
    with pytest.raises(SettingsError, match="models"):
        load_settings(config_file=no_models, environ={})


def test_typed_hub_ids_need_the_operators_allowlist(monkeypatch):
    from txgallery.models import store

    settings.configure(settings.Settings())
    try:
        with pytest.raises(store.ModelLoadError, match="--allow-hub"):
            store.resolve_user_ref("gpt2", "text-generation")
        settings.configure(settings.load_settings([], environ={"TXGALLERY_ALLOW_HUB": "gpt2, google/*"}))
        assert settings.current().hub_id_allowed("google/vit-base-patch16-224")
        assert not settings.current().hub_id_allowed("evil/gpt2")
        monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: True)
        assert store.resolve_user_ref("gpt2", "text-generation").kind == "hub"
        monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
        with pytest.raises(store.ModelLoadError, match="offline"):
            store.resolve_user_ref("gpt2", "text-generation")
        # embedded names are always fine
        assert store.resolve_user_ref("embedded", "text-generation").kind == "embedded"
    finally:
        settings.configure(settings.Settings())


@pytest.mark.parametrize("ref", ["/etc", "../weights", "~/models", "./x", "C:\\models", "a/b/c", "file:///etc"])
def test_pages_cannot_point_the_server_at_local_paths(tmp_path, ref):
    from txgallery.models import store

    settings.configure(settings.load_settings([], environ={"TXGALLERY_ALLOW_HUB": "*"}))
    try:
        with pytest.raises(store.ModelLoadError):
            store.resolve_user_ref(ref, "text-classification")
        with pytest.raises(store.ModelLoadError, match="local paths"):
            store.resolve_user_ref(str(tmp_path), "text-classification")  # an existing directory, still refused
    finally:
        settings.configure(settings.Settings())


def test_allow_hub_from_toml_and_flags(tmp_path):
    config = tmp_path / "txgallery.toml"
    config.write_text('[gallery]\nallow_hub = ["distilgpt2"]\n')
    assert settings.load_settings([], config_file=config, environ={}).allow_hub == ("distilgpt2",)
    assert settings.load_settings([], config_file=config, environ={}, allow_hub=["x/*"]).allow_hub == ("x/*",)
    config.write_text('[gallery]\nallow_hub = "gpt2"\n')
    with pytest.raises(settings.SettingsError, match="allow_hub"):
        settings.load_settings([], config_file=config, environ={})


def test_a_demos_models_fill_its_first_slot_and_the_others_keep_their_default(tiny_classifier_dir):
    """`--model attention=DIR` sets the attention explorer's encoders; its decoder slot stays SmolLM2, in the model
    list the page shows and in what `txgallery serve --preload` and `txgallery list --models` load."""
    from txgallery.cli import check_models
    from txgallery.gallery import models_markdown
    from txgallery.plugin import discover_demos

    settings.configure(settings.load_settings([f"attention={tiny_classifier_dir}"], environ={}))
    try:
        (entry,) = discover_demos(only=["attention"])
        shown = models_markdown(entry)
        assert shown.count(f"`{tiny_classifier_dir}`") == 1 and "`smollm2-135m`" in shown
        lines = [line for _, line in check_models([entry], load=False)]
        assert len(lines) == 2 and str(tiny_classifier_dir) in lines[0] and "smollm2-135m" in lines[1], lines
    finally:
        settings.configure(settings.Settings())
