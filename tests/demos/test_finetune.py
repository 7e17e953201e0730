"""The fine-tuning playground without Gradio: CSV uploads, settings, the playground service, charts, cleanup."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch
from txgallery_demos.finetune import methods as finetune
from txgallery_demos.finetune.run import (
    comparison_figure,
    comparison_table,
    curves_figure,
    make_config,
    method_settings,
    progress_text,
    read_labelled_csv,
)
from txgallery_demos.finetune.service import FinetunePlayground

from txgallery.limits import MAX_CSV_ROWS, MAX_UPLOAD_BYTES, InputError
from txgallery.models import store
from txgallery.serving.jobs import CANCELLING, JobStatus

# --- bad input: uploads and settings ----------------------------------------------------------------------------------


def _csv(tmp_path, content: str | bytes, name: str = "data.csv"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_good_csv_with_named_labels(tmp_path):
    rows = "".join(f'"review {i}, fine",{"good" if i % 2 else "bad"}\n' for i in range(20))
    data, notice = read_labelled_csv(_csv(tmp_path, "Text,Label\n" + rows))
    assert notice == "" and data.labels == ("bad", "good")
    assert len(data.train) == 16 and len(data.evaluation) == 4
    assert set(data.train.texts) | set(data.evaluation.texts) == {f"review {i}, fine" for i in range(20)}
    assert all(label == (1 if int(text.split()[1].rstrip(",")) % 2 else 0)
               for text, label in zip(data.train.texts, data.train.labels))


def test_integer_labels_and_the_row_cap(tmp_path):
    rows = "".join(f"text {i},{i % 3}\n" for i in range(MAX_CSV_ROWS + 500))
    data, notice = read_labelled_csv(_csv(tmp_path, "text,label\n" + rows))
    assert data.labels == ("0", "1", "2") and len(data.train) + len(data.evaluation) == MAX_CSV_ROWS
    assert f"{MAX_CSV_ROWS + 500:,} rows" in notice and f"first {MAX_CSV_ROWS:,}" in notice


@pytest.mark.parametrize("content, message", [
    ("id,body\n1,hello\n", "needs a text column.*found: id, body"),
    ("text,label\n" + "same,1\n" * 20, "a classifier needs at least 2 classes"),
    ("text,label\nonly row,1\n", "1 labelled rows; at least 10"),
    ("text,label\n" + "".join(f"t{i},{'x' if i == 5 else i % 2}\n" for i in range(20)), "all integers or all class names"),
    ("text,label\n" + "".join(f"t{i},{i % 2 * 3}\n" for i in range(20)), "0, 1, … with none missing"),
    ("text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(20)) + "no label,\n", "Row 22 has a text but no label"),
    ("text,label\n" + "".join(f"t{i},c{i}\n" for i in range(30)), "30 distinct labels"),
])
def test_bad_csvs_get_clear_messages(tmp_path, content, message):
    with pytest.raises(InputError, match=message):
        read_labelled_csv(_csv(tmp_path, content))


def test_binary_non_utf8_and_huge_uploads(tmp_path):
    with pytest.raises(InputError, match="binary"):
        read_labelled_csv(_csv(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256))))
    with pytest.raises(InputError, match="not UTF-8"):
        read_labelled_csv(_csv(tmp_path, "text,label\ncaf\xe9,1\n".encode("latin-1")))
    with pytest.raises(InputError, match="upload limit"):
        read_labelled_csv(_csv(tmp_path, b"text,label\n" + b"a,1\n" * (MAX_UPLOAD_BYTES // 4 + 1)))  # a million rows


def test_form_values_become_a_config():
    config = make_config("lora", 40.0, 0.002, 16.0, 8.0, 16.0, 0.1, ["attention.self.query"], 4.0, 16.0)
    assert config.steps == 40 and config.rank == 8 and config.target_modules == ("attention.self.query",)
    with pytest.raises(InputError, match="whole number"):
        make_config("lora", 40.5, 0.002, 16, 8, 16, 0.1, [], 4, 16)
    with pytest.raises(InputError, match="learning rate"):
        make_config("lora", 40, None, 16, 8, 16, 0.1, [], 4, 16)


# --- what the page shows ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(finetune.METHODS))
def test_the_settings_a_method_hides_change_nothing_for_it(tiny_classifier_dir, method):
    note, lora, freeze, adapter = method_settings(method)
    form = {"rank": 8, "alpha": 16, "dropout": 0.1, "targets": [], "freeze": 1, "adapter": 16}
    moved = dict(form)
    if not lora:
        moved.update(rank=2, alpha=4, dropout=0.3, targets=["attention.self.key"])
    if not freeze:
        moved.update(freeze=2)
    if not adapter:
        moved.update(adapter=4)

    def built(values: dict):
        config = make_config(method, 10, 1e-3, 4, values["rank"], values["alpha"], values["dropout"],
                             values["targets"], values["freeze"], values["adapter"])
        model, _, _ = finetune.build(str(tiny_classifier_dir), config)
        trainable = {name: tuple(p.shape) for name, p in model.named_parameters() if p.requires_grad}
        with torch.no_grad():
            logits = model.eval()(input_ids=torch.tensor([[101, 2023, 2003, 102]])).logits
        return trainable, logits

    (trainable, logits), (trainable_moved, logits_moved) = built(form), built(moved)
    assert trainable == trainable_moved and torch.equal(logits, logits_moved)
    assert (lora, freeze, adapter) == (method == "lora", method == "freeze", method == "adapter")
    assert finetune.METHODS[method].split(":")[0] in note


def test_progress_text_and_curves():
    status = JobStatus(job_id="job-1", name="lora", owner="", state="running", step=5, total=10, eta=12.0,
                       losses=[(i, 1 / i) for i in range(1, 6)], metrics=[(5, 0.7)])
    text = progress_text(status)
    assert "50%" in text and "step 5/10" in text and "loss 0.200" in text and "held-out 0.700" in text
    assert "ETA 12 s" in text
    assert "position 2" in progress_text(JobStatus("job-2", "x", "", "queued", queue_position=2))
    # asked to stop: the status says so until the run stops, instead of flipping back to a progress bar
    cancelling = JobStatus("job-3", "x", "", "running", message=CANCELLING, step=3, total=10)
    assert progress_text(cancelling).startswith("⏹️ Cancelling") and "step 3 of 10" in progress_text(cancelling)
    figure = curves_figure(status)
    loss_axis, metric_axis = figure.axes
    assert list(loss_axis.lines[0].get_xdata()) == [1, 2, 3, 4, 5] and list(metric_axis.lines[0].get_ydata()) == [0.7]


# --- the playground service -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playground(tiny_classifier_dir, tiny_llama_dir):
    return FinetunePlayground(store.resolve(str(tiny_classifier_dir), "feature-extraction"),
                              store.resolve(str(tiny_llama_dir), "text-generation"))


def test_playground_trains_compares_downloads_and_cleans_up(playground, tmp_path):
    assert "attention.self.query" in playground.module_names()
    assert "self_attn.q_proj" in playground.module_names(decoder=True)
    with pytest.raises(InputError, match="rank must be between 1 and 32"):
        playground.start("rotten_tomatoes", finetune.FinetuneConfig(rank=33), owner="a")
    config = finetune.FinetuneConfig(method="lora", steps=4, batch_size=4, learning_rate=0.05, eval_every=2)
    status = playground.runner.wait(playground.start("rotten_tomatoes", config, owner="a"), timeout=300)
    assert status.state == "done", status.message
    record = status.result
    assert record.steps == 4 and [s for s, _ in status.losses] == [1, 2, 3, 4] and status.metrics[-1][0] == 4
    assert record.trainable == playground.runs[record.run_id].count.expected  # the formula holds here too

    prediction = playground.predict(record.run_id, "a lovely film")
    assert set(prediction.base) == set(prediction.tuned) == {"negative", "positive"}
    assert prediction.base != prediction.tuned  # the adapter changed the answer

    # the downloaded adapter, unzipped elsewhere, reloads to the same predictions
    archive = playground.adapter_archive(record.run_id)  # bytes: the page may run on another machine
    zipfile.ZipFile(io.BytesIO(archive)).extractall(tmp_path / "download")
    reloaded, _, _ = finetune.load_run(tmp_path / "download")
    run = playground.runs[record.run_id]
    batch = run.tokenizer(["a lovely film"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits.softmax(-1)[0],
                              torch.tensor([prediction.tuned["negative"], prediction.tuned["positive"]]), atol=1e-5)

    merged = playground.export_merged(record.run_id)
    assert "config.json" in zipfile.ZipFile(io.BytesIO(merged)).namelist()
    records = playground.records_for([record.run_id])
    assert comparison_table(records).loc[0, "method"] == "lora" and len(comparison_figure(records).axes) == 4

    playground.forget([record.run_id])
    assert not run.out_dir.exists() and playground.records_for([record.run_id]) == []
    with pytest.raises(InputError, match="no trained run"):
        playground.predict(record.run_id, "a lovely film")


def test_style_tuning_generates_from_base_and_tuned(playground):
    config = finetune.FinetuneConfig(method="lora", steps=2, batch_size=2, max_length=32, learning_rate=0.05)
    status = playground.runner.wait(playground.start("shakespeare", config, owner="b"), timeout=300)
    assert status.state == "done", status.message
    assert status.result.metric_name == "next-token accuracy"
    prediction = playground.predict(status.result.run_id, "Hamlet:", max_new_tokens=5)
    assert isinstance(prediction.base, str) and isinstance(prediction.tuned, str)
    with pytest.raises(InputError, match="Unknown method 'full'"):
        playground.start("shakespeare", finetune.FinetuneConfig(method="full"), owner="b")


def test_the_server_keeps_a_bounded_number_of_runs_over_all_sessions(playground, monkeypatch):
    # a session Gradio drops for capacity never runs its delete callback; the playground's own bound still holds
    import txgallery_demos.finetune.service as service_module

    monkeypatch.setattr(service_module, "MAX_FINETUNE_RUNS_KEPT", 1)
    config = finetune.FinetuneConfig(method="lora", steps=1, batch_size=2, eval_every=1)
    first = playground.runner.wait(playground.start("rotten_tomatoes", config, owner="c"), timeout=300).result
    first_dir = playground.runs[first.run_id].out_dir
    second = playground.runner.wait(playground.start("rotten_tomatoes", config, owner="d"), timeout=300).result
    assert list(playground.runs) == [second.run_id]
    assert playground.records_for([first.run_id, second.run_id]) == [second]
    assert not first_dir.exists()


def test_the_playground_leaves_where_a_run_happens_to_the_serving_layer(playground, monkeypatch):
    """On Ray the same start goes to Ray Train (stood in for here by a run in this process); the demo never asks."""
    import txgallery.serving.jobs as jobs

    placed = []

    def on_ray_train(job, workers, context):
        placed.append(workers)
        return jobs.train_here(job, context.report, context.should_stop)

    monkeypatch.setattr(jobs, "ray_is_running", lambda: True)
    monkeypatch.setattr(jobs, "train_on_ray", on_ray_train)
    config = finetune.FinetuneConfig(method="lora", steps=2, batch_size=2, eval_every=1)
    status = playground.runner.wait(playground.start("rotten_tomatoes", config, owner="e"), timeout=300)
    assert status.state == "done", status.message
    assert placed == [playground.workers] and [s for s, _ in status.losses] == [1, 2]
    for name in ("run.py", "service.py", "methods.py"):  # no runtime named in the demo's code
        source = (Path(finetune.__file__).parent / name).read_text()
        assert "ray_is_running" not in source and "import ray" not in source and "from ray" not in source
