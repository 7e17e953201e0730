"""Small helpers the pages share (txgallery.ui)."""

from __future__ import annotations

import zipfile

from txgallery.ui import zip_for_download


def test_zip_for_download_keeps_the_tree_and_stores_weights_uncompressed(tmp_path):
    model = tmp_path / "variant"
    (model / "sub").mkdir(parents=True)
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 100)
    (model / "sub" / "config.json").write_text('{"a": 1}')
    archive = zip_for_download(model)
    assert archive == str(tmp_path / "variant.zip")
    with zipfile.ZipFile(archive) as zipped:
        assert sorted(zipped.namelist()) == ["model.safetensors", "sub/config.json"]
        assert zipped.read("sub/config.json") == b'{"a": 1}'
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zipped.infolist())
    assert zip_for_download(model, tmp_path / "other.zip") == str(tmp_path / "other.zip")


def test_bar_plot_value_is_what_the_bar_plot_makes_of_the_same_table():
    import gradio as gr
    import pandas as pd

    from txgallery.ui import bar_plot_value

    rows = [("Sneaker", 0.9132), ("Sandal", 0.0611), ("Ankle boot", 0.0257)]
    plot = gr.BarPlot(x="class", y="probability")
    table = pd.DataFrame({"class": [c for c, _ in rows], "probability": [p for _, p in rows]})
    assert bar_plot_value(rows, "class", "probability") == plot.postprocess(table).model_dump()


def test_upload_path_takes_a_path_or_an_unprocessed_upload():
    import pytest

    from txgallery.limits import InputError
    from txgallery.ui import upload_path

    assert upload_path("/tmp/gradio/abc/cat.png") == "/tmp/gradio/abc/cat.png"
    assert upload_path({"path": "/tmp/gradio/abc/cat.png", "meta": {"_type": "gradio.FileData"}}) == \
        "/tmp/gradio/abc/cat.png"
    assert upload_path(None) is None
    with pytest.raises(InputError, match="upload the file again"):
        upload_path({"url": "http://example.com/cat.png"})


def test_shown_value_is_the_components_own_postprocessing():
    import gradio as gr
    import numpy as np
    from PIL import Image

    from txgallery.ui import shown_value

    picture = np.zeros((24, 32, 3), np.uint8)
    shown = shown_value(gr.Image(format="jpeg"), picture)
    assert shown["path"].endswith(".jpeg") and Image.open(shown["path"]).size == (32, 24)
    assert shown_value(gr.Markdown(), "    **bold**\n    text") == "**bold**\ntext"  # dedented, as Gradio does
    assert shown_value(gr.Image(), None) is None
