"""Small helpers the pages share (txgallery.ui)."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest

from txgallery.ui import offer_download, zipped


def test_zipped_keeps_the_tree_and_stores_weights_uncompressed(tmp_path):
    model = tmp_path / "variant"
    (model / "sub").mkdir(parents=True)
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 100)
    (model / "sub" / "config.json").write_text('{"a": 1}')
    with zipfile.ZipFile(io.BytesIO(zipped(model))) as archive:
        assert sorted(archive.namelist()) == ["model.safetensors", "sub/config.json"]
        assert archive.read("sub/config.json") == b'{"a": 1}'
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())


def test_offered_downloads_live_in_the_temp_dir_and_old_ones_are_removed(monkeypatch):
    from txgallery import limits

    first = Path(offer_download("variant.zip", b"one"))
    assert first.name == "variant.zip" and first.read_bytes() == b"one"
    assert first.parent.parent == Path(tempfile.gettempdir()) / "txgallery-downloads"
    os.utime(first.parent, (0, 0))  # an offer made long ago
    monkeypatch.setattr(limits, "DOWNLOAD_RETENTION_S", 60)
    second = Path(offer_download("../../escape.zip", b"two"))
    assert second.parent.parent == first.parent.parent and second.name == "escape.zip"
    assert not first.exists() and second.exists()


def test_a_model_saved_outside_the_temp_and_working_directories_downloads(tmp_path, monkeypatch):
    """What a page returns must download wherever TXGALLERY_HOME is: Gradio refuses files outside its temp dir, upload
    folder and working directory, so a model saved under the user's cache must still come back as a file."""
    import gradio as gr
    from gradio_client import Client
    from support import free_port

    outside = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="txgallery-test-home-"))
    try:
        model = outside / "efficiency" / "fp32"
        model.mkdir(parents=True)
        (model / "config.json").write_text('{"a": 1}')
        monkeypatch.chdir(tmp_path)
        with gr.Blocks() as app:
            button, files = gr.Button(), gr.File(file_count="multiple")
            button.click(lambda: [offer_download("fp32.zip", zipped(model))], None, files, api_name="download")
        app.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True)
        try:
            (downloaded,) = Client(app.local_url, verbose=False).predict(api_name="/download")
            with zipfile.ZipFile(downloaded) as archive:
                assert archive.read("config.json") == b'{"a": 1}'
        finally:
            app.close()
    finally:
        shutil.rmtree(outside)


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


def test_a_link_may_name_an_index_beyond_the_choices_the_page_opens_with():
    import gradio as gr

    from txgallery.limits import MAX_LINK_INDEX, InputError
    from txgallery.ui import _index_from_link

    def layers(count: int) -> list:
        return [(f"layer {i}", i) for i in range(count)]

    with gr.Blocks():
        layer = gr.Dropdown(layers(6), value=0)
        heads = gr.CheckboxGroup(layers(12), value=[])
    grown = _index_from_link(layer, "20", layers)
    assert grown.value == 20 and len(grown.choices) == 21
    assert _index_from_link(heads, "1,14", layers).value == [1, 14]
    for bad in ("-1", "two", str(MAX_LINK_INDEX + 1), ""):
        with pytest.raises(InputError, match="whole numbers"):
            _index_from_link(layer, bad, layers)
