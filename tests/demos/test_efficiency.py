"""The efficiency lab's techniques on the real embedded model: int8, ONNX (+ int8), pruning, distillation."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest
import torch
from txgallery_demos.efficiency.service import EfficiencyLab
from txgallery_demos.efficiency.variants import (
    compiled_variant,
    distil,
    int8_variant,
    measured_sparsity,
    onnx_int8_variant,
    onnx_variant,
    predictions,
    prune_model,
    pruned_variant,
)
from txgallery_demos.sentiment.service import SentimentClassifier

from txgallery.lib.datasets import rotten_tomatoes_splits
from txgallery.limits import InputError
from txgallery.models import store
from txgallery.models.onnx import OnnxExportError, export_classifier

pytestmark = pytest.mark.slow

SLICE = 400  # fixed held-out slice: the first 400 test sentences of rotten_tomatoes_splits()


@pytest.fixture(scope="module")
def base():
    return store.get_store().load(store.resolve("embedded", "text-classification"))


@pytest.fixture(scope="module")
def held_out():
    return rotten_tomatoes_splits().test.head(SLICE)


@pytest.fixture(scope="module")
def fp32_predictions(base, held_out):
    return predictions(base.model, base.tokenizer, held_out.texts)


def agreement(a, b) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(a)


def test_int8_agrees_with_fp32(base, held_out, fp32_predictions, tmp_path):
    variant = int8_variant(base.model, base.tokenizer, tmp_path / "int8")
    assert agreement(predictions(variant.model, variant.tokenizer, held_out.texts), fp32_predictions) >= 0.95
    quantized_linears = [m for m in variant.model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(quantized_linears) == 30  # 6 layers × (q, k, v, attention out, FFN in); FFN out stays fp32
    assert isinstance(base.model.bert.encoder.layer[0].attention.self.query, torch.nn.Linear)  # original untouched


@torch.inference_mode()
def test_onnx_logits_match_pytorch_and_int8_onnx_agrees(base, held_out, fp32_predictions, tmp_path):
    batch = base.tokenizer(held_out.texts[:16], padding=True, truncation=True, max_length=64, return_tensors="pt")
    before = base.model(**batch).logits.clone()
    variant = onnx_variant(base.model, base.tokenizer, tmp_path / "onnx")
    assert torch.equal(base.model(**batch).logits, before)  # exporting leaves the shared model as it was
    difference = (variant.model(**batch).logits - before).abs().max().item()
    assert difference < 1e-4
    quantized = onnx_int8_variant(tmp_path / "onnx", base.tokenizer, tmp_path / "onnx-int8", variant.parameters)
    assert agreement(predictions(quantized.model, quantized.tokenizer, held_out.texts), fp32_predictions) >= 0.95
    assert (tmp_path / "onnx-int8" / "model.onnx").stat().st_size < 0.5 * (tmp_path / "onnx" / "model.onnx").stat().st_size


@pytest.mark.parametrize("kind", ["onnx", "int8"])
def test_saved_variant_directory_serves_in_the_sentiment_demo(base, tmp_path, kind):
    if kind == "onnx":
        export_classifier(base.model, base.tokenizer, tmp_path / kind)
    else:
        int8_variant(base.model, base.tokenizer, tmp_path / kind)
    classifier = SentimentClassifier(store.resolve(str(tmp_path / kind), "text-classification"))
    assert classifier.loaded.device == "cpu"
    results = classifier.predict(["A delight from start to finish.", "Tedious and empty."])
    assert [r.label for r in results] == ["positive", "negative"]
    with pytest.raises(InputError, match="gradients"):
        classifier.attribute("A delight.")
    if kind == "int8":  # a reloaded int8 model answers exactly like the one that was saved
        batch = base.tokenizer(["A delight."], return_tensors="pt")
        with torch.inference_mode():
            saved = int8_variant(base.model, base.tokenizer, tmp_path / "again").model(**batch).logits
            assert torch.equal(classifier.model(**batch).logits, saved)


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.7])
@pytest.mark.parametrize("structured", [False, True])
def test_pruned_sparsity_equals_the_setting(base, sparsity, structured):
    pruned = prune_model(base.model, sparsity, structured)
    assert measured_sparsity(pruned, structured) == pytest.approx(sparsity, abs=0.005)
    assert measured_sparsity(base.model, structured) == 0.0  # the original is untouched


def test_pruned_variant_is_a_loadable_directory(base, tmp_path):
    variant = pruned_variant(base.model, base.tokenizer, 0.2, False, tmp_path / "pruned")
    loaded = store.ModelStore(device="cpu").load(store.resolve(str(variant.saved), "text-classification"))
    assert measured_sparsity(loaded.model) == pytest.approx(0.2, abs=0.005)


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, None])
def test_bad_sparsity_is_refused(base, sparsity):
    with pytest.raises(InputError, match="Sparsity must be"):
        prune_model(base.model, sparsity)


def test_model_that_cannot_be_exported_gets_a_message(tmp_path, base):
    class Unexportable(torch.nn.Module):
        config = base.model.config

        def forward(self, **batch):
            return {"logits": "not a tensor"}

    with pytest.raises(OnnxExportError, match="cannot be exported to ONNX"):
        export_classifier(Unexportable(), base.tokenizer, tmp_path / "bad")


def test_compiled_variant_gives_the_same_logits(tiny_classifier_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_classifier_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_classifier_dir))
    texts = ["a fine film", "dull, long and loud, with a plot that goes nowhere at all", "ok"]
    variant = compiled_variant(model, tokenizer, tmp_path / "fp32", texts)
    assert variant.name == "torch.compile (inductor)" and variant.saved == tmp_path / "fp32"
    with torch.inference_mode():
        for batch_size in (1, 3):  # other shapes than those it was compiled on
            batch = tokenizer(texts[:batch_size], padding=True, return_tensors="pt")
            torch.testing.assert_close(variant.model(**batch).logits, model(**batch).logits, atol=1e-4, rtol=1e-4)


def test_a_second_visitor_hears_at_once_that_a_run_is_in_progress():
    """Through the page and the serving seam (which would only queue the second call behind the first)."""
    from gradio_client import Client
    from gradio_client.utils import Status
    from support import free_port
    from txgallery_demos.efficiency.run import demo

    from txgallery import settings
    from txgallery.gallery import build_single, launch
    from txgallery.plugin import DemoEntry

    settings.configure(settings.Settings())
    app = launch(build_single(DemoEntry(name="efficiency", origin="test", demo=demo)), port=free_port(), block=False,
                 quiet=True)
    try:
        first = Client(app.local_url, verbose=False).submit([], 0.5, False, api_name="/efficiency_measure")
        while first.status().code not in (Status.PROCESSING, Status.PROGRESS) and not first.done():
            time.sleep(0.1)  # until the first run has started
        with pytest.raises(Exception, match="Another optimisation run is in progress"):
            Client(app.local_url, verbose=False).predict([], 0.5, False, api_name="/efficiency_measure")
        assert not first.done()  # refused while the first was still running, not queued behind it
        table, _, files = first.result(timeout=600)
        assert [row[0] for row in table["data"]] == ["fp32 (baseline)"] and len(files) == 1
        Client(app.local_url, verbose=False).predict([], 0.5, False, api_name="/efficiency_measure")  # free again
    finally:
        app.close()


def test_the_lab_zips_only_what_it_saved(base, tmp_path):
    """The page asks the lab for the zip (the lab may run on another machine); nothing outside its folder is sent."""
    from txgallery.paths import home

    lab = EfficiencyLab(store.resolve("embedded", "text-classification"))
    saved = home() / "efficiency" / "test-variant"
    saved.mkdir(parents=True, exist_ok=True)
    (saved / "config.json").write_text("{}")
    assert zipfile.ZipFile(io.BytesIO(lab.archive(str(saved)))).namelist() == ["config.json"]
    for elsewhere in (tmp_path, home() / "efficiency" / ".." / "smollm2-135m-instruct", Path("/etc")):
        with pytest.raises(InputError, match="not saved by this lab"):
            lab.archive(str(elsewhere))


def test_a_new_run_keeps_only_the_newest_earlier_runs_on_disk(tmp_path):
    """Each run saves hundreds of MB: a workshop's runs must not fill the disk. Students and other folders stay."""
    from txgallery_demos.efficiency.service import new_run_folder

    earlier = [tmp_path / f"2026120{day}-120000-x{day}" for day in range(1, 7)]
    for folder in [*earlier, tmp_path / "student-2l"]:
        (folder / "fp32").mkdir(parents=True)
    made = new_run_folder(tmp_path, keep=3)
    assert made.parent == tmp_path and made.is_dir() and not any(made.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([earlier[4].name, earlier[5].name, "student-2l",
                                                                 made.name])
    assert new_run_folder(tmp_path, keep=3) != made  # two runs in the same second get folders of their own


def test_distillation_reports_honestly(base, tmp_path):
    splits = rotten_tomatoes_splits()
    steps = 40
    result = distil(base.model, base.tokenizer, layers=1, steps=steps, train=splits.train.head(steps * 32),
                    test=splits.test.head(200), out_dir=tmp_path / "student")
    assert len(result.losses_with_teacher) == len(result.losses_without_teacher) == steps
    for losses in (result.losses_with_teacher, result.losses_without_teacher):  # both students learn
        assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10
    assert result.teacher_accuracy > 0.8
    assert result.student_parameters_m < 0.7 * sum(p.numel() for p in base.model.parameters()) / 1e6
    won = result.with_teacher_accuracy > result.without_teacher_accuracy
    assert ("beats" in result.verdict) == won and ("did not help" in result.verdict) == (not won)
    assert (tmp_path / "student" / "model.safetensors").exists()


@pytest.mark.parametrize("kwargs, message", [({"layers": 0}, "1 to 4 layers"), ({"layers": 7}, "1 to 4 layers"),
                                             ({"steps": 0}, "between 1 and"), ({"steps": 10_000}, "between 1 and"),
                                             ({"temperature": 0}, "temperature")])
def test_bad_distillation_settings(base, kwargs, message):
    with pytest.raises(InputError, match=message):
        distil(base.model, base.tokenizer, **kwargs)


@pytest.mark.parametrize("budget_s, timed", [(None, "all"), (0.0, "minimum"), (3600.0, "all")])
def test_latency_times_at_least_the_minimum_and_stops_at_its_budget(budget_s, timed):
    """The page's measurement stops after its time budget (never under LATENCY_MIN_RUNS); the bench times every run."""
    from txgallery_demos.efficiency.variants import LATENCY_MIN_RUNS, LATENCY_RUNS, latency_ms

    calls = []
    model = lambda **batch: calls.append(batch)  # noqa: E731 - counts forwards
    tokenizer = lambda texts, **kwargs: {"input_ids": texts}  # noqa: E731
    latency_ms(model, tokenizer, ["a"], 1, warmup=2, budget_s=budget_s)
    assert len(calls) == 2 + {"all": LATENCY_RUNS, "minimum": LATENCY_MIN_RUNS}[timed]


def test_the_page_says_which_model_it_starts_from_outside_any_panel():
    """Every page names its model, its source and why on the page itself (not only in the closed About panel)."""
    import gradio as gr
    from txgallery_demos.efficiency.run import demo

    from txgallery.plugin import page_context

    page = demo.build(page_context(demo))
    texts = [block.value for block in page.blocks.values() if isinstance(block, gr.Markdown)]
    assert any("minilm-rt-sentiment" in text and "why:" in text for text in texts), texts
