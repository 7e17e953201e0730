"""Property-based tests (hypothesis) of the pure input functions: any input gives a result or a clear InputError."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from txgallery import limits
from txgallery.limits import InputError, truncate_text

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.text(), st.integers(min_value=1, max_value=50))
def test_truncate_text_keeps_a_prefix_within_the_limit_and_says_so(text, limit):
    cut, notice = truncate_text(text, limit)
    assert len(cut) <= limit and text.startswith(cut)
    assert (notice is None) == (len(text) <= limit)
    if notice:
        assert f"{len(text):,}" in notice


@FAST
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=3000))
def test_clean_text_returns_clean_text_or_a_message(text):
    import unicodedata

    from txgallery.lib.text import clean_text

    visible = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co"))
    try:
        cleaned, notice = clean_text(text)
    except InputError as exc:
        assert ("empty" in str(exc) and not text.strip()) or ("only control" in str(exc) and not visible.strip())
        return
    assert cleaned and cleaned == cleaned.strip() and len(cleaned) <= limits.MAX_INPUT_CHARS
    assert (notice is None) == (visible == text), notice  # a notice exactly when something was removed


@FAST
@given(st.lists(st.text(alphabet="ab#Ġ▁ ", min_size=1, max_size=6), min_size=1, max_size=30),
       st.data())
def test_merging_word_pieces_keeps_the_total_score(tokens, data):
    from txgallery_demos.sentiment.service import merge_word_pieces

    scores = data.draw(st.lists(st.floats(-1, 1), min_size=len(tokens), max_size=len(tokens)))
    merged = merge_word_pieces(tokens, scores)
    assert 1 <= len(merged) <= len(tokens)
    assert sum(s for _, s in merged) == pytest.approx(sum(scores), abs=1e-9)


@FAST
@given(st.binary(max_size=4096))
def test_load_image_on_arbitrary_bytes_gives_an_image_or_a_message(blob):
    from txgallery.lib.images import load_image

    try:
        image = load_image(blob)
    except InputError as exc:
        assert str(exc)
        return
    assert image.mode == "RGB" and max(image.size) <= limits.MAX_IMAGE_SIDE


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@FAST
@given(st.binary(min_size=1, max_size=400), st.integers(min_value=0, max_value=399))
def test_load_image_on_corrupted_png_gives_an_image_or_a_message(noise, position):
    from txgallery.lib.images import load_image

    blob = bytearray(_png_bytes(np.full((16, 16, 3), 128, dtype=np.uint8)))
    position %= len(blob)
    blob[position:position + len(noise)] = noise  # overwrite a stretch of a valid file
    try:
        image = load_image(bytes(blob))
    except InputError:
        return
    assert image.mode == "RGB"


@FAST
@given(hnp.arrays(dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int32]),
                  shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=12)))
def test_load_image_on_arbitrary_arrays_gives_an_rgb_picture_or_a_message(array):
    from txgallery.lib.images import load_image

    try:
        image = load_image(array)
    except InputError as exc:
        assert str(exc)
        return
    assert image.mode == "RGB" and image.size == (array.shape[1], array.shape[0])
