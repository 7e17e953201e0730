"""Model store: resolution of references, loading once per process, thread safety, clear failures."""

from __future__ import annotations

import threading

import pytest
import torch

from txgallery.lib import threads
from txgallery.models import hub, registry, store
from txgallery.models.store import ModelLoadError, ModelStore, resolve

TASK = "text-classification"


@pytest.mark.parametrize("ref", ["", "embedded", "default", "embedded:minilm-rt-sentiment", "minilm-rt-sentiment"])
def test_embedded_references(ref):
    source = resolve(ref, TASK)
    assert (source.kind, source.ref) == ("embedded", "minilm-rt-sentiment")


def test_local_directory_and_hub_id(tmp_path):
    assert resolve(str(tmp_path), TASK).kind == "local"
    assert resolve(str(tmp_path), TASK).ref == str(tmp_path.resolve())
    hub = resolve("distilbert-base-uncased-finetuned-sst-2-english", TASK, reason="because")
    assert (hub.kind, hub.ref, hub.reason) == ("hub", "distilbert-base-uncased-finetuned-sst-2-english", "because")
    assert resolve("google/vit-base-patch16-224", TASK).kind == "hub"


@pytest.mark.parametrize("ref, message", [
    ("./no/such/dir", "not an existing directory"),
    ("/tmp/definitely/not/here", "not an existing directory"),
    ("a b c", "neither an embedded model"),
    ("embedded:nope", "no embedded model 'nope'"),
    ("minilm-l6", "is for feature-extraction"),
])
def test_bad_references_name_the_embedded_default(ref, message):
    with pytest.raises(ModelLoadError, match=message) as info:
        resolve(ref, TASK)
    if "embedded" not in message and "feature" not in message:
        assert "minilm-rt-sentiment" in str(info.value)


def test_unknown_task():
    with pytest.raises(ModelLoadError, match="unknown task"):
        resolve("embedded", "image-to-sound")


def test_local_directory_loads_with_from_pretrained_once(tiny_classifier_dir):
    models = ModelStore(device="cpu")
    source = resolve(str(tiny_classifier_dir), TASK)
    first = models.load(source)
    assert type(first.model).__name__ == "BertForSequenceClassification"
    assert first.model.config.id2label == {0: "NEG", 1: "POS"}
    assert first.source.kind == "local" and not first.model.training
    assert models.load(source) is first and models.load_count == 1
    assert models.load(source, attentions=True).model.config._attn_implementation == "eager"
    assert models.load_count == 2


def test_concurrent_first_use_loads_once(tiny_classifier_dir):
    models = ModelStore(device="cpu")
    source = resolve(str(tiny_classifier_dir), TASK)
    results, barrier = [], threading.Barrier(8)

    def worker():
        barrier.wait()
        results.append(models.load(source))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r is results[0] for r in results)
    assert models.load_count == 1


def test_embedded_sentiment_model_loads_with_its_metrics():
    loaded = store.get_store().load(resolve("embedded", TASK))
    assert loaded.metrics["test_accuracy"] >= 0.80
    assert loaded.model.config.id2label[1] == "positive"
    assert registry.get_embedded("minilm-rt-sentiment").task == TASK
    assert "minilm-rt-sentiment" in registry.list_embedded("minilm-*")


def test_hub_id_offline_gives_clear_message_fast(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError) as info:
        ModelStore(device="cpu").load(resolve("distilbert-base-uncased-finetuned-sst-2-english", TASK))
    message = str(info.value)
    assert "not reachable" in message and "embedded default" in message and "minilm-rt-sentiment" in message


def test_hub_unreachable_is_detected_without_offline_flag(monkeypatch):
    """In the test network namespace the hub cannot be reached; the store must say so, not hang for a minute."""
    monkeypatch.setattr(hub, "_reachability", None)
    if hub.hub_reachable():
        pytest.skip("this machine can reach the Hugging Face Hub")  # only outside the tests' network namespace
    with pytest.raises(ModelLoadError, match="not reachable"):
        ModelStore(device="cpu").load(resolve("some-org/some-model", TASK))


def test_broken_local_directory_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="Could not load the local directory"):
        ModelStore(device="cpu").load(resolve(str(tmp_path), TASK))


def test_device_choice(monkeypatch):
    monkeypatch.delenv("TXGALLERY_DEVICE", raising=False)
    assert store.pick_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("TXGALLERY_DEVICE", "cpu")
    assert store.pick_device() == "cpu"


@pytest.mark.parametrize("error, message", [("RepositoryNotFoundError", "There is no model 'org/x'"),
                                            ("GatedRepoError", "is gated on the hub")])
def test_hub_failures_are_explained(error, message):
    """What transformers raises when the hub answers but the id is unknown or gated, turned into a message."""
    import httpx
    from huggingface_hub import errors

    cause = getattr(errors, error)("404", response=httpx.Response(404, request=httpx.Request("GET", "https://hub")))
    wrapped = OSError("org/x is not a local folder")
    wrapped.__cause__ = cause
    text = store._explain_load_failure(store.ModelSource("hub", "org/x", TASK), wrapped)
    assert message in text and "minilm-rt-sentiment" in text


def test_different_models_loaded_at_once_on_many_threads_all_load(tiny_classifier_dir, tiny_llama_dir):
    # transformers builds models through process-global state; two loads at once once gave "Cannot copy out of meta
    # tensor" under the load test. The CLIP stand-in also loads its two parts through the store (nested loads).
    sources = [resolve(str(tiny_classifier_dir), TASK), resolve(str(tiny_llama_dir), "text-generation"),
               resolve("embedded:t5-rt-text2text", "text2text-generation"),
               resolve("embedded:gpt2-shakespeare", "text-generation"),
               resolve("embedded", "zero-shot-image-classification"),
               resolve("embedded:efficientnet-lite0", "image-classification")]
    for _ in range(2):
        models = ModelStore(device="cpu")
        results, errors, barrier = {}, [], threading.Barrier(len(sources))

        def worker(source):
            barrier.wait()
            try:
                results[source.ref] = models.load(source)
            except Exception as exc:  # collected, so the assertion shows every failure
                errors.append(f"{source.ref}: {exc}")

        threads = [threading.Thread(target=worker, args=(source,)) for source in sources]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors and len(results) == len(sources)
        for loaded in results.values():
            parameters = getattr(loaded.model, "parameters", None)
            assert parameters is None or not any(p.is_meta for p in parameters())


def test_a_tiny_cpu_models_service_thread_runs_on_one_openmp_thread_and_no_other_thread_changes():
    from concurrent.futures import ThreadPoolExecutor

    import torch

    models = store.ModelStore(device="cpu")
    tiny = models.load(store.resolve("embedded", "image-classification"))  # 0.31M weights
    larger = models.load(store.resolve("embedded:efficientnet-lite0", "image-classification"))  # 4.7M
    before = torch.get_num_threads()

    def settle_then_count(loaded):
        return threads.settle_threads_for(loaded.model, loaded.device), torch.get_num_threads()

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(settle_then_count, tiny).result() == (True, 1)
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(settle_then_count, larger).result() == (False, before)
    assert torch.get_num_threads() == before  # the calling thread, and the default new threads start from
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(torch.get_num_threads).result() == before


def test_smollm2_says_what_its_first_load_does_until_it_is_converted(tmp_path, monkeypatch):
    from txgallery.ui import first_use_note

    monkeypatch.setenv("TXGALLERY_HOME", str(tmp_path))  # a cold cache
    smollm2 = store.resolve("embedded:smollm2-135m", "text-generation")
    assert "first time" in first_use_note(smollm2) and "--preload" in first_use_note(smollm2)
    (tmp_path / "smollm2-135m-instruct").mkdir()
    (tmp_path / "smollm2-135m-instruct" / "config.json").write_text("{}")
    assert first_use_note(smollm2) is None
    assert first_use_note(store.resolve("embedded", "text-classification")) is None  # nothing to do once


def test_the_hint_after_a_failed_hub_model_never_suggests_that_same_model():
    from txgallery.models.tasks import default_hint

    suggested = "distilbert/distilbert-base-uncased-finetuned-sst-2-english"
    assert f"try a hub id such as '{suggested}'" in default_hint(TASK, "textattack/roberta-base-SST-2")
    for same in (suggested, "distilbert-base-uncased-finetuned-sst-2-english"):  # its old id is the same model
        hint = default_hint(TASK, same)
        assert "embedded" in hint and "try a hub id" not in hint
