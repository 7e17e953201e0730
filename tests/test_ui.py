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
