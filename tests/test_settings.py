"""Settings precedence (CLI > environment > TOML) and clear errors for bad settings."""

from __future__ import annotations

import pytest

from txgallery import settings
from txgallery.models import hub
from txgallery.models.hub import ModelLoadError
from txgallery.plugin import PageContext, page_context
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


def typed(ref: str, task: str, current: settings.Settings):
    """A model typed into a page of a gallery that runs with `current`."""
    return PageContext(slug="generation", models={}, settings=current).typed_model(ref, task)


def test_typed_hub_ids_need_the_operators_allowlist(monkeypatch):
    with pytest.raises(ModelLoadError, match="--allow-hub"):
        typed("gpt2", "text-generation", settings.Settings())
    allowing = settings.load_settings([], environ={"TXGALLERY_ALLOW_HUB": "gpt2, google/*"})
    assert allowing.hub_id_allowed("google/vit-base-patch16-224")
    assert not allowing.hub_id_allowed("evil/gpt2")
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: True)
    assert typed("gpt2", "text-generation", allowing).kind == "hub"
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(ModelLoadError, match="offline"):
        typed("gpt2", "text-generation", allowing)
    assert typed("embedded", "text-generation", settings.Settings()).kind == "embedded"  # embedded names always work


@pytest.mark.parametrize("ref", ["/etc", "../weights", "~/models", "./x", "C:\\models", "a/b/c", "file:///etc"])
def test_pages_cannot_point_the_server_at_local_paths(tmp_path, ref):
    allowing_all = settings.load_settings([], environ={"TXGALLERY_ALLOW_HUB": "*"})
    with pytest.raises(ModelLoadError):
        typed(ref, "text-classification", allowing_all)
    with pytest.raises(ModelLoadError, match="local paths"):
        typed(str(tmp_path), "text-classification", allowing_all)  # an existing directory, still refused


def test_bad_references_come_back_as_errors_without_failing_good_ones():
    from txgallery_demos.sentiment.run import demo

    context = page_context(demo, load_settings(["sentiment=embedded,./nowhere"], environ={}))
    good, bad = context.models["model"]
    assert good.kind == "embedded" and "--model" in good.reason
    assert isinstance(bad, ModelLoadError) and bad.ref == "./nowhere"


def test_the_demo_flag_sets_the_first_slot_only(tmp_path):
    """`--model attention=…` is the encoder; the decoder slot keeps its own default and task."""
    from txgallery_demos.attention.run import demo

    context = page_context(demo, load_settings(["attention=bert-base-uncased"], environ={}))
    (encoder,) = context.models["encoder"]
    (decoder,) = context.models["decoder"]
    assert (encoder.ref, encoder.task) == ("bert-base-uncased", "feature-extraction")
    assert decoder.kind == "embedded" and decoder.task == "text-generation" and decoder.ref != "bert-base-uncased"
    assert context.configured == {"encoder"}


@pytest.mark.parametrize("how", ["flag", "env", "toml"])
def test_each_slot_of_a_two_slot_demo_can_be_configured(how, tmp_path):
    from txgallery_demos.attention.run import demo

    config = tmp_path / "txgallery.toml"
    config.write_text('[demos.attention]\nmodels = ["bert-base-uncased"]\n[demos.attention.decoder]\nmodels = ["gpt2"]\n')
    chosen = {"flag": lambda: load_settings(["attention=bert-base-uncased", "attention.decoder=gpt2"], environ={}),
              "env": lambda: load_settings(environ={"TXGALLERY_MODEL_ATTENTION": "bert-base-uncased",
                                                    "TXGALLERY_MODEL_ATTENTION__DECODER": "gpt2"}),
              "toml": lambda: load_settings(config_file=config, environ={})}[how]()
    context = page_context(demo, chosen)
    assert [s.ref for s in context.models["encoder"]] == ["bert-base-uncased"]
    assert [(s.ref, s.task) for s in context.models["decoder"]] == [("gpt2", "text-generation")]
    assert context.configured == {"encoder", "decoder"}


def test_the_model_list_names_each_slot_with_its_own_model():
    """The gallery's "About this model" and `txgallery list --models` list the decoder's model, not the encoder's."""
    from txgallery.cli import check_models
    from txgallery.gallery import models_markdown
    from txgallery.plugin import discover_demos

    (entry,) = discover_demos(["attention"])
    settings.configure(load_settings(["attention=bert-base-uncased"], environ={}))
    try:
        statuses = check_models([entry], load=False)
        about = models_markdown(entry)
    finally:
        settings.configure(settings.Settings())
    assert sum("bert-base-uncased" in line for _, line in statuses) == 1  # the encoder's line only
    decoder_lines = [line for line in about.splitlines() if "smollm2" in line]
    assert decoder_lines and not any("bert" in line for line in decoder_lines)
    assert "--model attention.decoder=embedded,gpt2" in about


def test_a_slot_flag_must_name_one_slot():
    with pytest.raises(SettingsError, match="SLUG.SLOT"):
        load_settings(["attention.decoder.extra=gpt2"], environ={})
